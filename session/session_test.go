package session_test

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testAPI has one endpoint, /generate(prompt, steps=8) -> image, info.
var testAPI = &upstream.API{Endpoints: []*upstream.Endpoint{{
	Name:    "/generate",
	Inputs:  []upstream.Param{{Name: "prompt", Type: "string", Required: true}, {Name: "steps", Type: "integer", Default: json.Number("8")}},
	Outputs: []upstream.Output{{Name: "image", Component: "Image"}, {Name: "info", Component: "Textbox"}},
}}}

// harness runs one session against a browser end in a synctest bubble.
type harness struct {
	t       *testing.T
	browser *websocket.Conn
	up      *fakeUpstream
	cancel  context.CancelFunc
	ended   chan error
	stats   chan session.JobStats
	sess    *session.Session
	inbox   chan frame       // set by readAhead
	pending []map[string]any // read ahead of their turn (see upload), for recv
}

// frame is one message the browser read.
type frame struct {
	typ websocket.MessageType
	b   []byte
	err error
}

// readAhead makes the browser read all the time, as a browser does, into
// inbox, where recv takes from: the test may send while the relay writes.
func (h *harness) readAhead() {
	h.inbox = make(chan frame, 1024)
	go func() {
		for {
			typ, b, err := h.browser.Read(context.Background())
			h.inbox <- frame{typ, b, err}
			if err != nil {
				return
			}
		}
	}()
}

func start(t *testing.T, up *fakeUpstream, cfg session.Config) *harness {
	t.Helper()
	return startWith(t, up, cfg, nil)
}

// startWith is start with the relay's end of the socket wrapped by wrap.
func startWith(t *testing.T, up *fakeUpstream, cfg session.Config, wrap func(session.Conn) session.Conn) *harness {
	t.Helper()
	browser, relay := wsPipe(t)
	// The relay's read limit: the larger of the message and chunk limits,
	// as the relay sets it (1024 when the test sets neither).
	relay.SetReadLimit(max(cmp.Or(cfg.MaxMessageBytes, 1024), cfg.UploadChunkBytes))
	if cfg.API == nil {
		cfg.API = testAPI
	}
	h := &harness{t: t, browser: browser, up: up, ended: make(chan error, 1), stats: make(chan session.JobStats, 16)}
	cfg.Hooks.JobEnded = func(st session.JobStats) { h.stats <- st }
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	var conn session.Conn = relay
	if wrap != nil {
		conn = wrap(conn)
	}
	s := session.New(cfg, conn, up)
	h.sess = s
	go func() { h.ended <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		browser.CloseNow()
		<-h.ended
	})
	return h
}

func (h *harness) send(msg string) {
	h.t.Helper()
	if err := h.browser.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		h.t.Fatalf("send %s: %v", msg, err)
	}
}

// recv reads the next text message as a map; binary frames come back as
// {"binary": length}.
func (h *harness) recv() map[string]any {
	h.t.Helper()
	if len(h.pending) > 0 {
		m := h.pending[0]
		h.pending = h.pending[1:]
		return m
	}
	return h.recvNew()
}

// recvNew is recv without what was read ahead of its turn.
func (h *harness) recvNew() map[string]any {
	h.t.Helper()
	var f frame
	if h.inbox != nil {
		f = <-h.inbox
	} else {
		f.typ, f.b, f.err = h.browser.Read(context.Background())
	}
	typ, b, err := f.typ, f.b, f.err
	if err != nil {
		h.t.Fatalf("read: %v", err)
	}
	if typ == websocket.MessageBinary {
		return map[string]any{"binary": float64(len(b))}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		h.t.Fatalf("message %s: %v", b, err)
	}
	return m
}

// expect reads messages and checks their types in order.
func (h *harness) expect(types ...string) []map[string]any {
	h.t.Helper()
	var got []map[string]any
	for _, want := range types {
		m := h.recv()
		typ, _ := m["type"].(string)
		if _, bin := m["binary"]; bin {
			typ = "binary"
		}
		if typ != want {
			h.t.Fatalf("message %v, want type %s", m, want)
		}
		got = append(got, m)
	}
	return got
}

// script plays events, then waits for ctx if block is set.
func script(block bool, evs ...upstream.Event) func(context.Context, upstream.Call, func(upstream.Event) error) error {
	return func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
		for _, ev := range evs {
			if err := emit(ev); err != nil {
				return err
			}
		}
		if block {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
}

func eta(f float64) *float64 { return &f }

func TestHello(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC)
		claims := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d,"user":"x"}`, exp.Unix()))
		h := start(t, &fakeUpstream{}, session.Config{ID: "s1", Token: "eyJhbGciOiJub25lIn0." + claims + ".sig", MaxJobs: 3})
		m := h.expect("hello")[0]
		b, _ := json.Marshal(m)
		for _, want := range []string{`"protocol":1`, `"session":"s1"`, `"name":"/generate"`, `"name":"prompt","required":true,"type":"string"`,
			`"default":8`, `"max_jobs":3`, `"max_message_bytes":65536`, `"max_file_bytes":20971520`, `"expires_at":"2026-11-27T10:15:00Z"`, `"present":true`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("hello %s lacks %s", b, want)
			}
		}
		if strings.Contains(string(b), "eyJ") {
			t.Errorf("hello shows the token: %s", b)
		}
	})
}

func TestJobLifecycleWithFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		png := []byte("\x89PNG fake bytes")
		up := &fakeUpstream{files: map[string][]byte{"/tmp/a.png": png}, script: script(false,
			&upstream.Queued{Rank: 1, QueueSize: 2, ETA: eta(3)},
			&upstream.Started{},
			&upstream.Log{Level: "info", Title: "ZeroGPU queue", Message: "Waiting for a GPU to become available"},
			&upstream.Completed{Data: []any{file("/tmp/a.png"), "seed: 42"}, Duration: 1.5},
		)}
		h := start(t, up, session.Config{Token: "tok-a"})
		h.expect("hello")
		h.send(`{"type":"submit","id":"j1","endpoint":"/generate","inputs":{"prompt":"a fox"}}`)
		msgs := h.expect("accepted", "queued", "started", "log", "file", "binary", "result")
		if msgs[1]["position"] != 1.0 || msgs[1]["queue_size"] != 2.0 || msgs[1]["eta"] != 3.0 {
			t.Errorf("queued = %v", msgs[1])
		}
		f, res := msgs[4], msgs[6]
		if f["size"] != float64(len(png)) || f["mime"] != "image/png" || f["name"] != "image.png" || msgs[5]["binary"] != float64(len(png)) {
			t.Errorf("file = %v, frame %v; want %d bytes of image/png", f, msgs[5], len(png))
		}
		ref := res["data"].([]any)[0].(map[string]any)["file"]
		if ref != f["file"] || res["data"].([]any)[1] != "seed: 42" || res["duration"] != 1.5 {
			t.Errorf("result = %v, want data [{file: %v}, seed: 42]", res, f["file"])
		}
		if got := up.headers[0].Get("X-IP-Token"); got != "tok-a" {
			t.Errorf("upstream got token %q, want tok-a", got)
		}
		if st := <-h.stats; st.Outcome != "completed" {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestGalleryCaptionKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{files: map[string][]byte{"/a": {1}, "/b": {2, 2}}, script: script(false,
			&upstream.Completed{Data: []any{[]any{
				map[string]any{"image": file("/a"), "caption": "first"},
				map[string]any{"image": file("/b"), "caption": nil},
			}}},
		)}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"g","data":["x"]}`)
		msgs := h.expect("accepted", "file", "binary", "file", "binary", "result")
		b, _ := json.Marshal(msgs[5]["data"])
		want := fmt.Sprintf(`[[{"caption":"first","file":%q},{"caption":null,"file":%q}]]`, msgs[1]["file"], msgs[3]["file"])
		if string(b) != want {
			t.Errorf("result data = %s, want %s", b, want)
		}
	})
}

func TestErrorsMapToCodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: func(ctx context.Context, call upstream.Call, emit func(upstream.Event) error) error {
			return &upstream.Error{Code: upstream.CodeQuotaExceeded, Title: "ZeroGPU quota exceeded", Message: "You have exceeded your free ZeroGPU quota.", RetryAfter: 2830 * time.Second}
		}}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"q","data":["x"]}`)
		e := h.expect("accepted", "error")[1]
		if e["id"] != "q" || e["code"] != "quota_exceeded" || e["title"] != "ZeroGPU quota exceeded" || e["retry_after"] != 2830.0 {
			t.Errorf("error = %v", e)
		}
		if st := <-h.stats; st.Outcome != "error" || st.Code != "quota_exceeded" {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{script: script(true)}, session.Config{MaxJobs: 1})
		h.expect("hello")
		for _, tc := range []struct{ send, id, code, text string }{
			{`not json`, "", "bad_request", "JSON"},
			{`{"id":"x"}`, "", "bad_request", "type"},
			{`{"type":"dance"}`, "", "bad_request", "dance"},
			{`{"type":"submit","id":"bad id!","data":[]}`, "", "bad_request", "bad id!"},
			{`{"type":"submit","id":"j","endpoint":"/nope","data":[]}`, "j", "unknown_endpoint", "/nope"},
			{`{"type":"submit","id":"j","data":["a"],"inputs":{"prompt":"a"}}`, "j", "bad_request", "exactly one"},
			{`{"type":"submit","id":"j","data":{"a":1}}`, "j", "bad_request", "array"},
			{`{"type":"cancel","id":"zz"}`, "zz", "unknown_job", "zz"},
		} {
			h.send(tc.send)
			e := h.expect("error")[0]
			id, _ := e["id"].(string)
			if id != tc.id || e["code"] != tc.code || !strings.Contains(e["message"].(string), tc.text) {
				t.Errorf("%s: error %v, want id %q code %s mentioning %q", tc.send, e, tc.id, tc.code, tc.text)
			}
		}
		h.send(`{"type":"submit","id":"j1","data":["a"]}`)
		h.expect("accepted")
		h.send(`{"type":"submit","id":"j1","data":["a"]}`)
		if e := h.expect("error")[0]; e["id"] != nil || !strings.Contains(e["message"].(string), `"j1"`) {
			t.Errorf("duplicate id: %v, want an error without id naming j1", e)
		}
		h.send(`{"type":"submit","id":"j2","data":["a"]}`)
		if e := h.expect("error")[0]; e["id"] != "j2" || e["code"] != "too_many_jobs" {
			t.Errorf("over max_jobs: %v", e)
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong")
	})
}

func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{script: script(true, &upstream.Started{})}, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"c","data":["x"]}`)
		h.expect("accepted", "started")
		h.send(`{"type":"cancel","id":"c"}`)
		if m := h.expect("cancelled")[0]; m["id"] != "c" {
			t.Errorf("cancelled = %v", m)
		}
		if st := <-h.stats; st.Outcome != "cancelled" {
			t.Errorf("stats = %+v", st)
		}
		h.send(`{"type":"cancel","id":"c"}`)
		h.expect("error")
	})
}

func TestTokenExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		claims := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, time.Now().Add(-time.Minute).Unix()))
		h := start(t, &fakeUpstream{script: script(false)}, session.Config{Token: "h." + claims + ".s"})
		h.expect("hello")
		h.expect("token_expiring") // at once: less than the margin is left
		h.send(`{"type":"submit","id":"t","data":["x"]}`)
		if e := h.expect("error")[0]; e["code"] != "token_expired" || e["id"] != "t" {
			t.Errorf("error = %v, want token_expired", e)
		}
	})
}

func TestFloodOfBadMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{})
		h.expect("hello")
		for range 16 {
			h.send(`nope`)
			h.expect("error")
		}
		h.send(`nope`)
		if _, _, err := h.browser.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Errorf("read = %v, want close 1008", err)
		}
		if err := <-h.ended; !errors.Is(err, session.ErrProtocol) {
			t.Errorf("Run() = %v, want ErrProtocol", err)
		}
		h.ended <- nil
	})
}

func TestMessageTooBig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{})
		h.expect("hello")
		h.send(`{"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`)
		if _, _, err := h.browser.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Errorf("read = %v, want close 1009", err)
		}
		if err := <-h.ended; !errors.Is(err, session.ErrTooBig) {
			t.Errorf("Run() = %v, want ErrTooBig", err)
		}
		h.ended <- nil
	})
}

func TestShutdownClosesWith1001AndCancelsJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stopped := make(chan struct{})
		up := &fakeUpstream{script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			emit(&upstream.Started{})
			<-ctx.Done()
			close(stopped)
			return ctx.Err()
		}}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"s","data":["x"]}`)
		h.expect("accepted", "started")
		h.cancel()
		if _, _, err := h.browser.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("read = %v, want close 1001", err)
		}
		<-stopped
		if err := <-h.ended; !errors.Is(err, session.ErrShutdown) {
			t.Errorf("Run() = %v, want ErrShutdown", err)
		}
		h.ended <- nil
		if up.closes() != 1 {
			t.Errorf("upstream session closed %d times, want 1", up.closes())
		}
	})
}

func TestBrowserGoneTearsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(true, &upstream.Started{})}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"g","data":["x"]}`)
		h.expect("accepted", "started")
		h.browser.CloseNow()
		if err := <-h.ended; !errors.Is(err, session.ErrClientGone) {
			t.Errorf("Run() = %v, want ErrClientGone", err)
		}
		h.ended <- nil
		if up.closes() != 1 {
			t.Errorf("upstream session closed %d times, want 1", up.closes())
		}
	})
}

// Jobs join the upstream queue in the order the page submitted them.
func TestJobsJoinInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false, &upstream.Completed{Data: []any{"ok"}}),
			joinDelay: map[any]time.Duration{"slow": time.Second}}
		h := start(t, up, session.Config{MaxJobs: 3})
		h.expect("hello")
		h.send(`{"type":"submit","id":"a","data":["slow"]}`)
		h.send(`{"type":"submit","id":"b","data":["fast"]}`)
		var ids []string
		for len(ids) < 4 {
			m := h.recv()
			ids = append(ids, m["type"].(string)+":"+m["id"].(string))
		}
		if got := strings.Join(ids, " "); !strings.HasPrefix(got, "accepted:a") || strings.Index(got, "accepted:b") < 0 {
			t.Errorf("messages %s, want a accepted before b", got)
		}
		if fmt.Sprint(up.joins) != "[slow fast]" {
			t.Errorf("joined upstream in the order %v, want [slow fast]", up.joins)
		}
	})
}

// Hooks.Relayed times each job message from its event's arrival to the
// end of its write; a message with files is not timed.
func TestRelayedTimesEachMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{files: map[string][]byte{"/a.png": {1, 2, 3}}, script: script(false,
			&upstream.Started{},
			&upstream.Progress{Steps: []upstream.ProgressStep{{Index: eta(1), Length: eta(2)}}},
			&upstream.Completed{Data: []any{file("/a.png"), "ok"}},
		)}
		relayed := make(chan time.Duration, 16)
		h := start(t, up, session.Config{Hooks: session.Hooks{Relayed: func(d time.Duration) { relayed <- d }}})
		h.expect("hello")
		h.send(`{"type":"submit","id":"j1","inputs":{"prompt":"a fox"}}`)
		h.expect("accepted")
		time.Sleep(3 * time.Second) // a browser slow to read: the relay's next writes wait
		h.expect("started", "progress", "file", "binary", "result")
		<-h.stats
		close(relayed)
		var got []time.Duration
		for d := range relayed {
			got = append(got, d)
		}
		if want := []time.Duration{0, 3 * time.Second, 3 * time.Second}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("relayed = %v, want %v (accepted, started, progress; not the result with a file)", got, want)
		}
	})
}

// When the browser leaves, events still arriving for its jobs are dropped
// without failing the jobs: an error from the event callback would cancel
// a running job upstream before the visitor's Close takes the queued ones
// out of the queue, and Gradio would start a queued job in between.
func TestTeardownLeavesCancelsToClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{}
		var failedEarly atomic.Bool
		up.script = func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			for { // logs are never dropped: emit waits for Run
				if err := emit(&upstream.Log{Level: "info", Message: "working"}); err != nil {
					if ctx.Err() == nil { // only the job's end may fail it
						failedEarly.Store(true)
					}
					return err
				}
			}
		}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"g","data":["x"]}`)
		h.expect("accepted", "log")
		h.browser.CloseNow()
		<-h.ended
		h.ended <- nil
		if failedEarly.Load() {
			t.Error("a job's event callback failed while its job was still wanted: the job would be cancelled before Close")
		}
		if up.closes() != 1 {
			t.Errorf("upstream session closed %d times, want 1", up.closes())
		}
	})
}

// hello is one JSON object, its fields in the documented order.
func TestHelloBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{ID: "s1"})
		_, b, err := h.browser.Read(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) || !strings.HasPrefix(string(b), `{"type":"hello","protocol":1,"session":"s1","endpoints":[{"name":"/generate",`) ||
			!strings.Contains(string(b), `}]}],"limits":{"max_jobs":2,`) || !strings.HasSuffix(string(b), `"token":{"present":false,"expires_at":null,"expires_in":null},"features":["upload","token_refresh"]}`) {
			t.Errorf("hello = %s", b)
		}
	})
}

// stallingFiles is an upstream whose downloads send their headers, then
// nothing, until their context ends.
type stallingFiles struct{ *fakeUpstream }

func (u stallingFiles) Download(ctx context.Context, fd upstream.FileData, limit int64) (*upstream.Download, error) {
	return &upstream.Download{Body: ctxBody{ctx}, Name: fd.Name(), MIME: "image/png", Size: 10}, nil
}

type ctxBody struct{ ctx context.Context }

func (b ctxBody) Read([]byte) (int, error) { <-b.ctx.Done(); return 0, b.ctx.Err() }
func (b ctxBody) Close() error             { return nil }

// A browser that leaves while a result's file downloads ends its session at
// once: the download runs on the job's own goroutine (in its Follow
// callback) under the job's context, and teardown ends that context.
func TestTeardownStopsDownloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeUpstream{script: script(false, &upstream.Completed{Data: []any{file("/a.png")}})}
		browser, relay := wsPipe(t)
		s := session.New(session.Config{API: testAPI}, relay, stallingFiles{fake})
		ended := make(chan error, 1)
		go func() { ended <- s.Run(context.Background()) }()
		if _, _, err := browser.Read(context.Background()); err != nil { // hello
			t.Fatal(err)
		}
		if err := browser.Write(context.Background(), websocket.MessageText, []byte(`{"type":"submit","id":"j","data":["x"]}`)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := browser.Read(context.Background()); err != nil { // accepted
			t.Fatal(err)
		}
		synctest.Wait() // the download has begun, and stalls
		start := time.Now()
		browser.CloseNow()
		if err := <-ended; !errors.Is(err, session.ErrClientGone) {
			t.Errorf("Run() = %v, want ErrClientGone", err)
		}
		if d := time.Since(start); d > 0 {
			t.Errorf("Run took %v to end after the browser left", d)
		}
		if fake.closes() != 1 {
			t.Errorf("upstream closed %d times, want 1", fake.closes())
		}
	})
}
