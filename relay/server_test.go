package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/upstream"
)

func TestRoutes(t *testing.T) {
	t.Parallel()
	withStatic := start(t, &relay.Server{Static: testStatic})
	without := start(t, &relay.Server{})
	public := start(t, &relay.Server{MetricsPublic: true})
	tests := []struct {
		url         string
		status      int
		contentType string // prefix
		body        string // substring
	}{
		{withStatic + "/", 200, "text/html", "<title>demo</title>"},
		{withStatic + "/spacerelay.js", 200, "text/javascript", "export function connect"},
		{withStatic + "/spacerelay.d.ts", 200, "text/plain; charset=utf-8", "declare function connect"}, // not what the machine's MIME table says
		{withStatic + "/index.html", 404, "", ""},
		{withStatic + "/nothing", 404, "", ""},
		{without + "/", 404, "", ""},
		{without + "/spacerelay.js", 404, "", ""},
		{without + "/healthz", 200, "text/plain", "ok"},
		{without + "/metrics", 404, "", ""}, // Issue 9: not on the public port unless asked
		{public + "/metrics", 200, "text/plain", "spacerelay_sessions_open 0"},
	}
	for _, tt := range tests {
		r := get(t, tt.url)
		if r.StatusCode != tt.status {
			t.Errorf("GET %s = %d, want %d", tt.url, r.StatusCode, tt.status)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
			t.Errorf("GET %s: Content-Type = %q, want %q…", tt.url, ct, tt.contentType)
		}
		if !strings.Contains(string(r.body), tt.body) {
			t.Errorf("GET %s = %q, want it to contain %q", tt.url, r.body, tt.body)
		}
	}
	if got := metric(t, without, "spacerelay_sessions_open"); got != 0 {
		t.Errorf("MetricsHandler: sessions_open = %v, want 0", got)
	}
}

// The default grace covers a session's upstream Close with a third of it
// to spare, for the HTTP server's shutdown before the sessions' and each
// session's teardown after its Close: else a shutdown would end at its
// deadline with sessions unlogged and their cancels cut.
func TestShutdownGraceCoversUpstreamClose(t *testing.T) {
	if upstream.CloseBound > relay.DefaultShutdownGrace*2/3 {
		t.Errorf("upstream.CloseBound = %v, want at most 2/3 of DefaultShutdownGrace (%v)", upstream.CloseBound, relay.DefaultShutdownGrace)
	}
}

// TestShutdown checks that Shutdown closes every socket with 1001, waits
// for the sessions, and that the Server then refuses and is not ready.
func TestShutdown(t *testing.T) {
	t.Parallel()
	s := &relay.Server{}
	base := start(t, s)
	waitReady(t, base)
	conns := []*websocket.Conn{dial(t, base, "a", nil), dial(t, base, "b", nil)}

	var wg sync.WaitGroup
	codes := make([]websocket.StatusCode, len(conns))
	for i, c := range conns {
		wg.Go(func() {
			_, _, err := c.Read(context.Background())
			codes[i] = websocket.CloseStatus(err)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v, want nil", err)
	}
	wg.Wait()
	for i, code := range codes {
		if code != websocket.StatusGoingAway {
			t.Errorf("socket %d: close code %v, want %v", i, code, websocket.StatusGoingAway)
		}
	}
	if got := metric(t, base, "spacerelay_sessions_open"); got != 0 {
		t.Errorf("sessions_open after Shutdown = %v, want 0", got)
	}
	if r := get(t, base+"/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", r.StatusCode)
	}
	if r := get(t, base+"/healthz"); r.StatusCode != http.StatusOK {
		t.Errorf("/healthz while draining = %d, want 200", r.StatusCode)
	}
	wantClosed(t, base, "c", nil, 4503, "shutting_down retry_after=5")
}

func TestShutdownTimesOut(t *testing.T) {
	t.Parallel()
	s := &relay.Server{}
	base := start(t, s)
	waitReady(t, base)
	dial(t, base, "a", nil) // never reads: the close handshake cannot finish
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(done ctx) = %v, want context.Canceled", err)
	}
}

// TestMetrics runs one session with one job and checks the counts.
func TestMetrics(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := &relay.Server{Logger: slog.New(slog.NewTextHandler(logs, nil))}
	base := start(t, s)
	waitReady(t, base)
	wantClosed(t, base, "", nil, 4401, "missing_token")

	c := dial(t, base, "secret-token", nil)
	if got := metric(t, base, "spacerelay_sessions_open"); got != 1 {
		t.Errorf("sessions_open = %v, want 1", got)
	}
	write(t, c, `{"type":"submit","id":"j1","endpoint":"/predict","data":["a fox"]}`)
	for m := read(t, c); m["type"] != "result"; m = read(t, c) {
		if m["type"] == "error" {
			t.Fatalf("job failed: %v", m)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	eventually(t, "sessions_open 0", func() bool { return metric(t, base, "spacerelay_sessions_open") == 0 })

	for series, want := range map[string]float64{
		"spacerelay_sessions_opened_total":                                1,
		`spacerelay_handshakes_refused_total{reason="missing_token"}`:     1,
		`spacerelay_handshakes_refused_total{reason="too_many_sessions"}`: 0,
		`spacerelay_jobs_total{code="",outcome="completed"}`:              1,
		"spacerelay_job_duration_seconds_count":                           1,
		"spacerelay_job_queue_wait_seconds_count":                         1,
		"spacerelay_files_sent_total":                                     0,
		"spacerelay_slow_consumer_disconnects_total":                      0,
		"spacerelay_upstream_ready":                                       1,
		`spacerelay_bytes_sent_total{kind="file"}`:                        0,
	} {
		if got := metric(t, base, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := metric(t, base, `spacerelay_bytes_sent_total{kind="text"}`); got <= 0 {
		t.Errorf(`bytes_sent_total{kind="text"} = %v, want > 0`, got)
	}
	if got := metric(t, base, "spacerelay_message_relay_seconds_count"); got < 3 {
		t.Errorf("message_relay_seconds_count = %v, want the job's messages timed (accepted, started, result at least)", got)
	}
	if body := string(get(t, base+"/metrics").body); strings.Contains(body, "secret-token") {
		t.Error("the metrics hold the token")
	}
	eventually(t, "the session's log line", func() bool { return strings.Contains(logs.String(), "session ended") })
	line := logs.String()
	for _, want := range []string{"level=INFO", "jobs=1", "close_code=1000", "outcome=client_gone", "session="} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "err=") {
		t.Errorf("log %q: a normal close with an error", line)
	}
	if strings.Contains(line, "secret-token") {
		t.Errorf("log %q holds the token", line)
	}
}

// TestMessageTooBig checks that the socket's read limit is
// MaxMessageBytes: a larger message closes it with 1009.
func TestMessageTooBig(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{MaxMessageBytes: 100})
	waitReady(t, base)
	c := dial(t, base, "t", nil)
	write(t, c, `{"type":"ping","pad":"`+strings.Repeat("x", 100)+`"}`)
	_, _, err := c.Read(context.Background())
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Errorf("close code %v, want %v (err %v)", got, websocket.StatusMessageTooBig, err)
	}
}

// TestSlowConsumer checks that a browser that does not read is
// disconnected and counted.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := &relay.Server{
		Upstream:     &fakeUpstream{pad: 16 << 20}, // more than the socket buffers hold
		WriteTimeout: 100 * time.Millisecond,
		MaxJobs:      4,
		Logger:       slog.New(slog.NewTextHandler(logs, nil)),
	}
	base := start(t, s)
	waitReady(t, base)
	c := dial(t, base, "t", nil)
	write(t, c, `{"type":"submit","id":"j1","data":["a fox"]}`)
	eventually(t, "slow consumer counted", func() bool {
		return metric(t, base, "spacerelay_slow_consumer_disconnects_total") == 1
	})
	if got := metric(t, base, "spacerelay_sessions_open"); got != 0 {
		t.Errorf("sessions_open = %v, want 0", got)
	}
	eventually(t, "the session's log line", func() bool { return strings.Contains(logs.String(), "outcome=slow_consumer") })
	if line := logs.String(); !strings.Contains(line, "level=WARN") || !strings.Contains(line, "close_code=1008") {
		t.Errorf("log %q, want a warning with close code 1008", line)
	}
}

// TestSessionEndLogs checks the level of each way a session ends (issue
// 9): a browser that leaves is no error.
func TestSessionEndLogs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		leave func(c *websocket.Conn)
		want  []string
	}{
		{"tab closed", func(c *websocket.Conn) { c.Close(websocket.StatusNormalClosure, "") },
			[]string{"level=INFO", "close_code=1000", "outcome=client_gone"}},
		{"page left", func(c *websocket.Conn) { c.Close(websocket.StatusGoingAway, "") },
			[]string{"level=INFO", "close_code=1000", "outcome=client_gone"}},
		{"network gone", func(c *websocket.Conn) { c.CloseNow() },
			[]string{"level=INFO", "close_code=1000", "outcome=client_gone"}},
		{"flood of bad messages", func(c *websocket.Conn) {
			for range 100 {
				if c.Write(context.Background(), websocket.MessageText, []byte("{")) != nil {
					break
				}
			}
			c.Read(context.Background())
		}, []string{"level=WARN", "close_code=1008", "outcome=bad_messages", "err="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logBuffer{}
			base := start(t, &relay.Server{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			waitReady(t, base)
			tt.leave(dial(t, base, "t", nil))
			eventually(t, "the session's log line", func() bool { return strings.Contains(logs.String(), "session ended") })
			line := logs.String()
			for _, want := range tt.want {
				if !strings.Contains(line, want) {
					t.Errorf("log %q lacks %q", line, want)
				}
			}
			if !slices.Contains(tt.want, "err=") && strings.Contains(line, "err=") {
				t.Errorf("log %q: a browser that left, logged with an error", line)
			}
		})
	}
}
