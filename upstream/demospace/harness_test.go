package demospace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// pipeListener is a net.Listener whose connections are in-memory pipes,
// so that a real HTTP server and client can run inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "space" }

// harness is a Space behind an HTTP server, and a client for it.
type harness struct {
	t     *testing.T
	space *Space
	url   string
	http  *http.Client
}

// newHarness serves a new Space over in-memory pipes; use it inside
// synctest bubbles. Everything is closed at the end of the test.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	sp := New(cfg)
	l := newPipeListener()
	srv := &http.Server{Handler: sp}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	tr := &http.Transport{DialContext: l.dial}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		sp.Close()
		_ = srv.Close()
		<-served
	})
	return &harness{t: t, space: sp, url: "http://space", http: &http.Client{Transport: tr}}
}

// newTCPHarness serves a new Space with httptest over loopback TCP.
func newTCPHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	sp := New(cfg)
	srv := httptest.NewServer(sp)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		sp.Close()
		srv.Close()
	})
	return &harness{t: t, space: sp, url: srv.URL, http: srv.Client()}
}

// do sends a request and returns the status and body.
func (h *harness) do(method, path, contentType string, body []byte, header ...string) (int, http.Header, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

func (h *harness) getJSON(path string, v any) {
	h.t.Helper()
	code, _, b := h.do("GET", path, "", nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET %s = %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// join enqueues a job and returns its event id; header is name, value, ...
func (h *harness) join(session string, fn int, data []any, header ...string) string {
	h.t.Helper()
	return h.joinBody(map[string]any{"data": data, "fn_index": fn, "session_hash": session}, header...)
}

func (h *harness) joinBody(body map[string]any, header ...string) string {
	h.t.Helper()
	b, _ := json.Marshal(body)
	code, _, resp := h.do("POST", "/gradio_api/queue/join", "application/json", b, header...)
	var out struct {
		EventID string `json:"event_id"`
	}
	if code != http.StatusOK || json.Unmarshal(resp, &out) != nil || len(out.EventID) != 32 {
		h.t.Fatalf("join %s = %d %s", b, code, resp)
	}
	return out.EventID
}

func (h *harness) cancel(session string, fn int, id string) {
	h.t.Helper()
	b, _ := json.Marshal(map[string]any{"session_hash": session, "fn_index": fn, "event_id": id})
	code, _, resp := h.do("POST", "/gradio_api/cancel", "application/json", b)
	if code != http.StatusOK || string(resp) != `{"success":true}` {
		h.t.Fatalf("cancel = %d %s", code, resp)
	}
}

// journalOf returns the journal events of prompt, in order.
func (h *harness) journalOf(prompt string) string {
	h.t.Helper()
	var entries []struct{ Event, Prompt string }
	h.getJSON("/fixture/journal", &entries)
	var evs []string
	for _, e := range entries {
		if e.Prompt == prompt {
			evs = append(evs, e.Event)
		}
	}
	return strings.Join(evs, " ")
}

// sse is an open /queue/data stream.
type sse struct {
	t      *testing.T
	resp   *http.Response
	lines  *bufio.Reader
	cancel context.CancelFunc
}

// msg is one decoded message, with its raw JSON.
type msg struct {
	raw    string
	fields map[string]any
}

func (m msg) kind() string    { s, _ := m.fields["msg"].(string); return s }
func (m msg) eventID() string { s, _ := m.fields["event_id"].(string); return s }

func (m msg) output() map[string]any {
	o, _ := m.fields["output"].(map[string]any)
	return o
}

// open starts reading the stream of session.
func (h *harness) open(session string) *sse {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/gradio_api/queue/data?session_hash="+session, nil)
	resp, err := h.http.Do(req)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream; charset=utf-8" {
		h.t.Fatalf("stream: %d %q", resp.StatusCode, ct)
	}
	s := &sse{t: h.t, resp: resp, lines: bufio.NewReader(resp.Body), cancel: cancel}
	h.t.Cleanup(s.close)
	return s
}

// next returns the next message, or ok=false at the end of the stream.
func (s *sse) next() (msg, bool) {
	s.t.Helper()
	line, err := s.lines.ReadString('\n')
	if err != nil {
		return msg{}, false
	}
	blank, err := s.lines.ReadString('\n')
	if !strings.HasPrefix(line, "data: ") || blank != "\n" || err != nil {
		s.t.Fatalf("bad SSE frame %q %q %v", line, blank, err)
	}
	m := msg{raw: strings.TrimSuffix(strings.TrimPrefix(line, "data: "), "\n")}
	if err := json.Unmarshal([]byte(m.raw), &m.fields); err != nil {
		s.t.Fatalf("SSE data %q: %v", m.raw, err)
	}
	return m, true
}

// must returns the next message, failing at the end of the stream.
func (s *sse) must() msg {
	s.t.Helper()
	m, ok := s.next()
	if !ok {
		s.t.Fatal("stream ended early")
	}
	return m
}

// until reads messages up to and including the first of kind for id.
func (s *sse) until(kind, id string) []msg {
	s.t.Helper()
	var got []msg
	for {
		m := s.must()
		got = append(got, m)
		if m.kind() == kind && (id == "" || m.eventID() == id) {
			return got
		}
	}
}

// rest reads to the end of the stream.
func (s *sse) rest() []msg {
	var got []msg
	for {
		m, ok := s.next()
		if !ok {
			return got
		}
		got = append(got, m)
	}
}

// close drops the connection, as a client that goes away.
func (s *sse) close() {
	s.cancel()
	s.resp.Body.Close()
}

func kinds(ms []msg) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.kind())
	}
	return strings.Join(out, " ")
}
