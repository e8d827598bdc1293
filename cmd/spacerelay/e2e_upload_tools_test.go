package main

// The tools of the upload tests (e2e_upload_test.go): a page that uploads
// (uploader), a proxy that records what reaches the Space's upload route
// (uploadTap), a Space outside the relay's process, and the relay's memory.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream/demospace"
)

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// mustProcStatus reads a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func mustProcStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// resetPeak resets the process's VmHWM to its VmRSS (Linux 4.0+).
func resetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// spaceOutside returns the URL of a Space in another process than the
// relays': the real Gradio, or for the demo a demo Space served by this
// test, taking uploads of up to maxUpload bytes (0: its default).
func (e *upstreamEnv) spaceOutside(t *testing.T, maxUpload int64) string {
	t.Helper()
	if e.space != "" {
		return e.space
	}
	space := demospace.New(demospace.Config{StepDelay: 10 * time.Millisecond, MaxUploadBytes: maxUpload})
	srv := httptest.NewServer(space)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		space.Close()
	})
	return srv.URL
}

// uploadLimits is what hello says about uploads.
type uploadLimits struct {
	Max, Session, Chunk int64
	Window              int64 // chunks a page may have in flight past upload_progress (PROTOCOL.md 9)
	Feature             bool  // "upload" is in features
}

func mustUploadLimits(t *testing.T, c *wsClient) uploadLimits {
	t.Helper()
	var h struct {
		Limits struct {
			Max     int64 `json:"max_upload_bytes"`
			Session int64 `json:"max_session_upload_bytes"`
			Chunk   int64 `json:"upload_chunk_bytes"`
			Window  int64 `json:"upload_window"`
		}
		Features []string
	}
	if err := json.Unmarshal(c.hello.raw, &h); err != nil || h.Limits.Chunk <= 0 || h.Limits.Window <= 0 {
		t.Fatalf("hello %s: no upload limits (%v)", c.hello.raw, err)
	}
	return uploadLimits{h.Limits.Max, h.Limits.Session, h.Limits.Chunk, h.Limits.Window, slices.Contains(h.Features, "upload")}
}

// uploader is a page sending one file (PROTOCOL.md section 9): frames of
// the hello's upload_chunk_bytes, never more than its upload_window
// chunks in flight past the last upload_progress.
type uploader struct {
	c          *wsClient
	id         string
	data       []byte
	chunk      int64
	window     int64 // chunks
	sent       int64 // bytes sent
	received   int64 // the last upload_progress's
	frames     int
	progress   []int64    // each upload_progress's received
	seen       []relayMsg // every message read while uploading, in order
	end        *relayMsg  // uploaded, cancelled, or an error with the id
	onProgress func()     // called after each upload_progress, if set
	onFull     func()     // called once, the first time the window is full, if set
	frame      int64      // the size of each frame; 0: the chunk's
}

func mustStartUpload(t *testing.T, c *wsClient, id, name, mime string, data []byte) *uploader {
	t.Helper()
	lim := mustUploadLimits(t, c)
	u := &uploader{c: c, id: id, data: data, chunk: lim.Chunk, window: lim.Window}
	err := c.send(map[string]any{"type": "upload", "id": id, "name": name, "mime": mime, "size": len(data)})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// mustSendUntil sends frames until n bytes are sent, waiting for
// upload_progress when the window is full.
func (u *uploader) mustSendUntil(t *testing.T, n int64) {
	t.Helper()
	for u.sent < min(n, int64(len(u.data))) && u.end == nil {
		next := min(cmp.Or(u.frame, u.chunk), int64(len(u.data))-u.sent)
		if u.sent+next-u.received > u.window*u.chunk {
			if u.onFull != nil {
				u.onFull()
				u.onFull = nil
			}
			u.mustProgress(t)
			continue
		}
		if err := u.c.conn.Write(u.c.ctx, websocket.MessageBinary, u.data[u.sent:u.sent+next]); err != nil {
			t.Fatalf("upload %s: frame at %d: %v", u.id, u.sent, err)
		}
		u.sent += next
		u.frames++
	}
}

// mustFinish sends the rest and reads until the upload ends.
func (u *uploader) mustFinish(t *testing.T) relayMsg {
	t.Helper()
	u.mustSendUntil(t, int64(len(u.data)))
	for u.end == nil {
		u.mustProgress(t)
	}
	return *u.end
}

// mustProgress reads until the next upload_progress or the upload's end.
// Messages of other ids go to the client's backlog.
func (u *uploader) mustProgress(t *testing.T) {
	t.Helper()
	for {
		m, err := u.next()
		if err != nil {
			t.Fatalf("upload %s after %d of %d bytes: %v", u.id, u.sent, len(u.data), err)
		}
		if m.id() != u.id {
			continue
		}
		switch m.Type {
		case "upload_progress":
			var p struct{ Received, Size int64 }
			json.Unmarshal(m.raw, &p)
			if p.Size != int64(len(u.data)) || p.Received <= u.received || p.Received > u.sent {
				t.Fatalf("upload %s: %s after progress %d with %d of %d bytes sent: want received rising, at most what was sent", u.id, m, u.received, u.sent, len(u.data))
			}
			u.received = p.Received
			u.progress = append(u.progress, p.Received)
			if u.onProgress != nil {
				u.onProgress()
			}
		case "uploaded", "cancelled", "error":
			u.end = &m
		default:
			t.Fatalf("upload %s: unexpected %s", u.id, m)
		}
		return
	}
}

// next reads the next message: the upload's own from the backlog first,
// else from the socket; others are kept in the backlog, in order.
func (u *uploader) next() (relayMsg, error) {
	for i, m := range u.c.backlog {
		if m.id() == u.id {
			u.c.backlog = slices.Delete(u.c.backlog, i, i+1)
			return m, nil
		}
	}
	m, err := u.c.read()
	if err != nil {
		return m, err
	}
	u.seen = append(u.seen, m)
	if m.id() != u.id {
		u.c.backlog = append(u.c.backlog, m)
	}
	return m, nil
}

// uploadTap is a reverse proxy in front of a Space that records each
// request to its upload route: how many bytes of the body it passed,
// whether the body came whole (to its end), and the Space's status.
type uploadTap struct {
	url   string
	proxy *httputil.ReverseProxy

	mu   sync.Mutex
	seen []*tapped     // guarded by mu, and so is each one's content
	hold chan struct{} // guarded by mu: if set, uploads wait until it closes
}

type tapped struct {
	bytes  int64
	whole  bool
	status int  // 0 until answered; 502 if the request broke
	ended  bool // the proxy is done with it
}

func newUploadTap(t *testing.T, space string) *uploadTap {
	target, err := url.Parse(space)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	p := &uploadTap{proxy: &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     tr,
		FlushInterval: -1,                         // the Space's event streams as they come
		ErrorLog:      log.New(io.Discard, "", 0), // a cut upload is expected
	}}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		tr.CloseIdleConnections()
	})
	p.url = srv.URL
	return p
}

func (p *uploadTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/upload") {
		p.proxy.ServeHTTP(w, r)
		return
	}
	rec := &tapped{}
	p.mu.Lock()
	p.seen = append(p.seen, rec)
	hold := p.hold
	p.mu.Unlock()
	if hold != nil { // the Space takes no byte until then
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}
	r.Body = &tapBody{r: r.Body, p: p, rec: rec}
	sw := &statusWriter{ResponseWriter: w}
	p.proxy.ServeHTTP(sw, r)
	p.mu.Lock()
	rec.status, rec.ended = sw.status, true
	p.mu.Unlock()
}

// stall has the Space take no upload's byte until the returned function
// is called (once).
func (p *uploadTap) stall() (release func()) {
	hold := make(chan struct{})
	p.mu.Lock()
	p.hold = hold
	p.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(hold) }) }
}

// requests returns a copy of what the tap recorded so far.
func (p *uploadTap) requests() []tapped {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]tapped, len(p.seen))
	for i, r := range p.seen {
		out[i] = *r
	}
	return out
}

// waitEnded waits until the tap has seen n upload requests and is done
// with all of them: a cut request ends once the proxy notices.
func (p *uploadTap) waitEnded(t *testing.T, ctx context.Context, n int) []tapped {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := p.requests()
		if len(got) == n && !slices.ContainsFunc(got, func(r tapped) bool { return !r.ended }) {
			return got
		}
		if len(got) > n || time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the Space saw upload requests %+v, want %d, all ended", got, n)
		}
		time.Sleep(pollEvery)
	}
}

type tapBody struct {
	r   io.ReadCloser
	p   *uploadTap
	rec *tapped
}

func (b *tapBody) Read(q []byte) (int, error) {
	n, err := b.r.Read(q)
	b.p.mu.Lock()
	b.rec.bytes += int64(n)
	b.rec.whole = b.rec.whole || errors.Is(err, io.EOF)
	b.p.mu.Unlock()
	return n, err
}

func (b *tapBody) Close() error { return b.r.Close() }

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
