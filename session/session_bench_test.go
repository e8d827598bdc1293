package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// benchUpstream runs every job with script and serves every file as file.
type benchUpstream struct {
	script func(ctx context.Context, emit func(upstream.Event) error) error
	file   []byte
}

func (u *benchUpstream) Open(http.Header) session.Visitor { return benchVisitor{u} }

type benchVisitor struct{ u *benchUpstream }

func (v benchVisitor) Download(_ context.Context, f upstream.FileData, _ int64) (*upstream.Download, error) {
	return &upstream.Download{Body: io.NopCloser(bytes.NewReader(v.u.file)), Name: f.Name(), MIME: "image/png", Size: int64(len(v.u.file))}, nil
}

func (benchVisitor) Upload(context.Context, upstream.Upload, int64) (map[string]any, error) {
	panic("not called in benchmarks")
}

func (benchVisitor) SetHeader(http.Header) {}

func (v benchVisitor) Submit(ctx context.Context, _ upstream.Call) (session.Job, error) {
	return benchJob{v.u, ctx}, nil
}

// benchJob calls fn straight from its script: no mailbox, so every event
// reaches the session.
type benchJob struct {
	u   *benchUpstream
	ctx context.Context
}

func (j benchJob) Follow(fn func(upstream.Event) error) error {
	if err := fn(&upstream.Accepted{EventID: "ev"}); err != nil {
		return err
	}
	return j.u.script(j.ctx, fn)
}

func (benchVisitor) Close() error { return nil }

// benchConns returns the two ends of a WebSocket over net.Pipe.
func benchConns(b *testing.B) (browser *websocket.Conn, relay *relayConn) {
	b.Helper()
	browser, relay = wsPipe(b)
	browser.SetReadLimit(1 << 20)
	return browser, relay
}

var benchAPI = &upstream.API{Endpoints: []*upstream.Endpoint{{
	Name:    "/generate",
	Inputs:  []upstream.Param{{Name: "prompt", Type: "string", Required: true}, {Name: "steps", Type: "integer", Default: json.Number("8")}},
	Outputs: []upstream.Output{{Name: "image", Component: "Image"}, {Name: "info", Component: "Textbox"}},
}}}

// benchSession runs a session for up, and returns its browser end after
// hello. The session ends with the benchmark.
func benchSession(b *testing.B, up session.Upstream) *websocket.Conn {
	browser, relay := benchConns(b)
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	s := session.New(session.Config{API: benchAPI, PingInterval: -1}, relay, up)
	go func() { ended <- s.Run(ctx) }()
	b.Cleanup(func() {
		browser.CloseNow() // first: the session then ends at once, with no close handshake to wait for
		cancel()
		<-ended
	})
	if _, _, err := browser.Read(ctx); err != nil {
		b.Fatalf("hello: %v", err)
	}
	return browser
}

// readUntil reads messages until one of type want; it returns how many
// text messages it read and the bytes of the last.
func readUntil(b *testing.B, c *websocket.Conn, want string) int {
	prefix := []byte(`{"type":"` + want + `"`)
	for n := 1; ; n++ {
		typ, p, err := c.Read(context.Background())
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if typ == websocket.MessageText && bytes.HasPrefix(p, prefix) {
			return n
		}
	}
}

const benchSubmit = `{"type":"submit","id":"j1","endpoint":"/generate","data":["a red fox"]}`

// BenchmarkSessionEvents measures one upstream event's way through a
// session to the browser over an in-memory WebSocket: one job streams b.N
// events, which the browser reads as fast as it can. Log events must all
// be delivered; progress events may be coalesced under backpressure
// (delivered/op says how many reached the browser).
func BenchmarkSessionEvents(b *testing.B) {
	for _, bc := range []struct {
		name string
		ev   upstream.Event
	}{
		{"log", &upstream.Log{Level: "info", Title: "ZeroGPU queue", Message: "Waiting for a GPU to become available"}},
		{"progress", &upstream.Progress{Steps: []upstream.ProgressStep{{Index: new(float64), Length: new(float64)}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := b.N
			up := &benchUpstream{script: func(ctx context.Context, emit func(upstream.Event) error) error {
				for range n {
					if err := emit(bc.ev); err != nil {
						return err
					}
				}
				return emit(&upstream.Completed{Data: []any{nil, "done"}})
			}}
			browser := benchSession(b, up)
			b.ReportAllocs()
			b.ResetTimer()
			if err := browser.Write(context.Background(), websocket.MessageText, []byte(benchSubmit)); err != nil {
				b.Fatal(err)
			}
			got := readUntil(b, browser, "result")
			b.StopTimer()
			b.ReportMetric(float64(got-2)/float64(n), "delivered/op") // less accepted and result
		})
	}
}

// BenchmarkSessionJob measures one whole job of the demo Space's shape
// through a session: accepted, started, two logs, 8 progress events and a
// result with a 48 KiB image (a file message and a binary frame).
func BenchmarkSessionJob(b *testing.B) {
	steps := make([]upstream.Event, 8)
	for i := range steps {
		idx, n := float64(i), 8.0
		steps[i] = &upstream.Progress{Steps: []upstream.ProgressStep{{Index: &idx, Length: &n}}}
	}
	file := map[string]any{"path": "/tmp/gradio/x/image.png", "orig_name": "image.png", "meta": map[string]any{"_type": "gradio.FileData"}}
	up := &benchUpstream{file: make([]byte, 48<<10), script: func(ctx context.Context, emit func(upstream.Event) error) error {
		evs := append([]upstream.Event{&upstream.Started{},
			&upstream.Log{Level: "info", Title: "ZeroGPU queue", Message: "Waiting for a GPU to become available"},
			&upstream.Log{Level: "success", Title: "ZeroGPU queue", Message: "Successfully acquired a GPU"}}, steps...)
		for _, ev := range append(evs, &upstream.Completed{Data: []any{file, "seed: 42"}, Duration: 0.8}) {
			if err := emit(ev); err != nil {
				return err
			}
		}
		return nil
	}}
	browser := benchSession(b, up)
	b.ReportAllocs()
	for b.Loop() {
		if err := browser.Write(context.Background(), websocket.MessageText, []byte(benchSubmit)); err != nil {
			b.Fatal(err)
		}
		readUntil(b, browser, "result")
	}
}

// BenchmarkIdleSession measures what an idle session holds: each op opens
// one session (accepted with websocket.Accept over net.Pipe, Run on a
// goroutine of its own rather than on net/http's, hello written) over a
// real upstream client's session, and leaves it idle. The browser ends are raw pipes read by a
// goroutine with a stack buffer; their cost is measured first, without
// sessions, and taken off. "small-buffers" hijacks with a 1 KiB reader and
// a 2 KiB writer instead of net/http's 4 KiB each. Run with a fixed count:
// -benchtime=5000x.
func BenchmarkIdleSession(b *testing.B) {
	client, err := upstream.New(upstream.Config{Target: "http://127.0.0.1:9"}) // makes no request
	if err != nil {
		b.Fatal(err)
	}
	up := session.ClientUpstream(client)
	pings := session.NewTicker(time.Hour) // shared, as the relay shares one; no tick while measuring
	defer pings.Stop()
	for _, bc := range []struct {
		name       string
		cfg        session.Config
		rbuf, wbuf int
	}{
		{"pings", session.Config{Pings: pings}, 0, 0},
		{"no-pings", session.Config{PingInterval: -1}, 0, 0},
		{"small-buffers", session.Config{Pings: pings}, 1024, 2048},
	} {
		b.Run(bc.name, func(b *testing.B) { benchIdle(b, up, bc.cfg, bc.rbuf, bc.wbuf) })
	}
}

func benchIdle(b *testing.B, up session.Upstream, cfg session.Config, rbuf, wbuf int) {
	n := b.N
	ctx, cancel := context.WithCancel(context.Background())
	pipes := make([]net.Conn, n)
	relays := make([]net.Conn, n)
	for i := range n {
		near, far := net.Pipe()
		pipes[i], relays[i] = near, far
		go drain(near)
	}
	before := benchMem()
	ended := make(chan struct{}, n)
	b.ResetTimer()
	for i := range n {
		w := hijackable{ResponseRecorder: httptest.NewRecorder(), conn: relays[i], rbuf: rbuf, wbuf: wbuf}
		r := httptest.NewRequest(http.MethodGet, "/v1/ws", nil)
		r.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "X-Ip-Token": {"visitor-" + strconv.Itoa(i)}}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			b.Fatal(err)
		}
		cfg.API, cfg.Token = benchAPI, "visitor-"+strconv.Itoa(i)
		s := session.New(cfg, c, up)
		go func() {
			s.Run(ctx)
			ended <- struct{}{}
		}()
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond) // every hello written
	after := benchMem()
	b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/session")
	b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/session")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/session")
	for _, p := range pipes {
		p.Close() // first: the sessions then end at once, with no close handshake to wait for
	}
	cancel()
	for range n {
		<-ended
	}
}

// drain reads c to its end with a buffer on its stack.
func drain(c net.Conn) {
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

type memFigures struct{ heap, stack, goroutines int64 }

func benchMem() memFigures {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memFigures{int64(m.HeapInuse), int64(m.StackInuse), int64(runtime.NumGoroutine())}
}
