package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testStatic stands for web.FS.
var testStatic = fstest.MapFS{
	"index.html":      {Data: []byte("<!doctype html><title>demo</title>")},
	"spacerelay.js":   {Data: []byte("export function connect() {}")},
	"spacerelay.d.ts": {Data: []byte("export declare function connect(): void;")},
}

// testAPI is the fake upstream's API: one endpoint, /predict.
var testAPI = &upstream.API{
	BaseURL: "http://fake.invalid", Version: "6.31.0", Protocol: "sse_v3",
	Endpoints: []*upstream.Endpoint{{
		Name:    "/predict",
		Inputs:  []upstream.Param{{Name: "prompt", Type: "string", Required: true}},
		Outputs: []upstream.Output{{Name: "text", Component: "Textbox"}},
	}},
}

func readyAPI(context.Context) (*upstream.API, error) { return testAPI, nil }

// fakeUpstream is a session.Upstream whose jobs complete at once with the
// prompt as their result, followed by pad bytes. It records the headers of
// every Open.
type fakeUpstream struct {
	pad int

	mu      sync.Mutex
	headers []http.Header
	set     []http.Header // each SetHeader's
}

func (f *fakeUpstream) Open(h http.Header) session.Visitor {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, h.Clone())
	return fakeVisitor{pad: f.pad, f: f}
}

func (f *fakeUpstream) setHeaders() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.set...)
}

func (f *fakeUpstream) opened() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.headers...)
}

type fakeVisitor struct {
	pad int
	f   *fakeUpstream
}

func (v fakeVisitor) Submit(ctx context.Context, call upstream.Call) (session.Job, error) {
	return fakeJob{v, call}, nil
}

func (fakeVisitor) Download(context.Context, upstream.FileData, int64) (*upstream.Download, error) {
	panic("not called in tests")
}

func (fakeVisitor) Upload(context.Context, upstream.Upload, int64) (map[string]any, error) {
	panic("not called in tests")
}

func (v fakeVisitor) SetHeader(h http.Header) {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	v.f.set = append(v.f.set, h.Clone())
}
func (fakeVisitor) Close() error { return nil }

type fakeJob struct {
	v    fakeVisitor
	call upstream.Call
}

func (j fakeJob) Follow(fn func(upstream.Event) error) error {
	if len(j.call.Data) > 0 && j.call.Data[0] == lostSession {
		return &upstream.Error{Code: upstream.CodeUnavailable, Message: "lost", Err: upstream.ErrSessionLost}
	}
	if len(j.call.Data) > 0 && j.call.Data[0] == unreachable {
		return &upstream.Error{Code: upstream.CodeUnavailable, Message: "The Space cannot be reached right now.",
			Err: errors.New("dial tcp 127.0.0.1:9: connect: connection refused")}
	}
	data := j.call.Data
	if j.v.pad > 0 {
		data = append(data, strings.Repeat("x", j.v.pad))
	}
	for _, ev := range []upstream.Event{&upstream.Accepted{EventID: "e1"}, &upstream.Started{}, &upstream.Completed{Data: data}} {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// logBuffer collects log output from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// metricsURLs maps a test server's URL to its metrics listener's.
var metricsURLs sync.Map

// start fills the unset required fields of s with fakes, serves it (and
// its MetricsHandler on a server of its own, as cmd/spacerelay does with
// --metrics-listen), and shuts it down at the end of the test. It returns
// the server's URL.
func start(t *testing.T, s *relay.Server) string {
	t.Helper()
	if s.Upstream == nil {
		s.Upstream = &fakeUpstream{}
	}
	if s.API == nil {
		s.API = readyAPI
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hs := httptest.NewServer(s)
	ms := httptest.NewServer(s.MetricsHandler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		hs.Close()
		ms.Close()
		metricsURLs.Delete(hs.URL)
	})
	metricsURLs.Store(hs.URL, ms.URL)
	s.Start()
	return hs.URL
}

// waitReady waits until GET /readyz answers 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	eventually(t, "/readyz 200", func() bool { return get(t, base+"/readyz").StatusCode == http.StatusOK })
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// get GETs url and returns the response, its body read into Body.
func get(t *testing.T, url string) *response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return readResponse(t, resp)
}

type response struct {
	*http.Response
	body []byte
}

func readResponse(t *testing.T, resp *http.Response) *response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return &response{resp, b}
}

// upgrade sends a WebSocket upgrade request to base+/v1/ws with the
// headers h on top of a valid handshake's, for a refusal. An accepted
// upgrade fails the test.
func upgrade(t *testing.T, base string, h http.Header) *response {
	t.Helper()
	return upgradeURL(t, base+"/v1/ws", h)
}

func upgradeURL(t *testing.T, url string, h http.Header) *response {
	t.Helper()
	return upgradeMethod(t, http.MethodGet, url, h)
}

func upgradeMethod(t *testing.T, method, url string, h http.Header) *response {
	t.Helper()
	req := upgradeRequest(t, url, h)
	req.Method = method
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		t.Fatalf("upgrade: accepted, want a refusal")
	}
	return readResponse(t, resp)
}

// upgradeRequest is a valid WebSocket upgrade request for url, with the
// headers h on top.
func upgradeRequest(t *testing.T, url string, h http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for k, v := range h {
		req.Header[k] = v
	}
	return req
}

// request sends a request with the headers h and returns the response,
// its body read.
func request(t *testing.T, method, url string, h http.Header) *response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return readResponse(t, resp)
}

// errorBody decodes a refusal's JSON body.
func errorBody(t *testing.T, r *response) (code, message string) {
	t.Helper()
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return b.Error.Code, b.Error.Message
}

// wantRefusal checks an HTTP refusal's status, code and Retry-After.
func wantRefusal(t *testing.T, r *response, status int, code, retryAfter string) {
	t.Helper()
	if r.StatusCode != status {
		t.Errorf("status = %d, want %d (body %s)", r.StatusCode, status, r.body)
	}
	if got, _ := errorBody(t, r); got != code {
		t.Errorf("error code = %q, want %q", got, code)
	}
	if got := r.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
}

// wantClosed dials base with the token (if not "") and the extra headers,
// and checks that the socket is refused by its close (PROTOCOL.md section
// 1): accepted, then closed with code and reason, with nothing before.
func wantClosed(t *testing.T, base, token string, opts *websocket.DialOptions, code websocket.StatusCode, reason string) {
	t.Helper()
	c, err := tryDial(t, base, token, opts)
	if err != nil {
		t.Fatalf("dial: %v, want a socket closed with %d", err, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("first read = %v %q, %v; want close %d %q and nothing before", typ, b, err, code, reason)
	}
	if websocket.CloseStatus(err) != code || ce.Reason != reason {
		t.Errorf("closed with %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
	}
}

// dial opens a socket with the token (if not "") and the extra headers,
// reads hello, and closes the socket at the end of the test.
func dial(t *testing.T, base, token string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, err := tryDial(t, base, token, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if m := read(t, c); m["type"] != "hello" {
		t.Fatalf("first message = %v, want hello", m)
	}
	return c
}

func tryDial(t *testing.T, base, token string, opts *websocket.DialOptions) (*websocket.Conn, error) {
	t.Helper()
	if opts == nil {
		opts = &websocket.DialOptions{}
	}
	if opts.HTTPHeader == nil {
		opts.HTTPHeader = http.Header{}
	}
	if token != "" {
		opts.HTTPHeader.Set("X-IP-Token", token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws", opts)
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, nil
}

// read reads one text message as a JSON object.
func read(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("read %q: %v", b, err)
	}
	return m
}

func write(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// metric returns the value of the sample named series (with its labels,
// as exposed) in the metrics of the server at base, or -1 when there is
// none.
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	u, ok := metricsURLs.Load(base)
	if !ok {
		t.Fatalf("no metrics listener for %s", base)
	}
	body := get(t, u.(string)+"/metrics").body
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			var v float64
			if err := json.Unmarshal([]byte(value), &v); err != nil {
				t.Fatalf("metric %s = %q: %v", series, value, err)
			}
			return v
		}
	}
	return -1
}

// runJob submits a job on c and reads until its result.
func runJob(t *testing.T, c *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"submit","id":"j","data":["x"]}`)); err != nil {
		t.Fatalf("submit: %v", err)
	}
	for {
		m := read(t, c)
		switch m["type"] {
		case "result":
			return
		case "error":
			t.Fatalf("job: %v", m)
		}
	}
}

// lostSession is the prompt whose job fails as a job does when the
// upstream no longer knows the visitor's session (a sign of a redeploy).
const lostSession = "lost-session"

// unreachable is the prompt whose job fails as a job does when the Space
// cannot be reached.
const unreachable = "unreachable"
