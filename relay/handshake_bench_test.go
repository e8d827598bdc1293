package relay_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/demospace"
)

// BenchmarkHandshake measures one session's set-up end to end, as a
// browser sees it: a WebSocket upgrade to an httptest relay in front of
// the demo Space's API (its real hello), until hello arrives, then the
// browser drops the socket. The client's cost is in the figures too: both
// ends share the machine, as in spacerelay-load --mode handshake.
func BenchmarkHandshake(b *testing.B) {
	space := demospace.New(demospace.Config{})
	demo := httptest.NewServer(space)
	b.Cleanup(func() { demo.Close(); space.Close() })
	up, err := upstream.New(upstream.Config{Target: demo.URL})
	if err != nil {
		b.Fatal(err)
	}
	api, err := up.API(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	srv := &relay.Server{
		Upstream:      session.ClientUpstream(up),
		API:           func(context.Context) (*upstream.API, error) { return api, nil },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		TokenOptional: true,
		MaxSessions:   1 << 20,
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(func() {
		ts.Close()
		srv.Shutdown(context.Background())
		up.CloseIdleConnections()
	})
	for ready := false; !ready; { // discovery runs in the background
		resp, err := http.Get(ts.URL + "/readyz")
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if ready = resp.StatusCode == http.StatusOK; !ready {
			time.Sleep(10 * time.Millisecond)
		}
	}
	url := "ws" + ts.URL[len("http"):] + "/v1/ws"
	ctx := context.Background()
	hello := []byte(`{"type":"hello"`)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
			HTTPHeader: http.Header{"X-IP-Token": {"bench-" + strconv.Itoa(i)}},
		})
		if err != nil {
			b.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		_, p, err := c.Read(ctx)
		if err != nil || !bytes.HasPrefix(p, hello) {
			b.Fatalf("first message %s, %v; want hello", p, err)
		}
		c.CloseNow()
	}
}

// BenchmarkRefusedSocket measures a socket refused by its close (4401
// missing_token), as a browser sees it: the upgrade, the close frame, the
// close reply. No session starts, so it costs less than a handshake.
func BenchmarkRefusedSocket(b *testing.B) {
	srv := &relay.Server{
		Upstream: &fakeUpstream{},
		API:      readyAPI,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(func() {
		ts.Close()
		srv.Shutdown(context.Background())
	})
	srv.Start()
	url := "ws" + ts.URL[len("http"):] + "/v1/ws"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != 4401 {
			b.Fatalf("read = %v, want close 4401", err)
		}
		c.CloseNow()
	}
}
