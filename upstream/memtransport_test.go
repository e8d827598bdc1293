package upstream_test

import (
	"io"
	"net/http"
	"sync"
)

// inMemory returns a client that serves every request with h in memory,
// streaming the response as h writes it. Unlike httptest.Server it opens
// no socket, so it works inside a testing/synctest bubble.
func inMemory(h http.Handler) *http.Client {
	return &http.Client{Transport: memTransport{h}}
}

type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &memWriter{header: http.Header{}, body: pw, ready: make(chan *http.Response, 1), req: req}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		m.h.ServeHTTP(w, req)
		w.send()
		pw.CloseWithError(req.Context().Err()) // nil: a plain EOF
	}()
	go func() { // the client going away ends the handler's writes
		select {
		case <-req.Context().Done():
			pr.CloseWithError(req.Context().Err())
		case <-finished:
		}
	}()
	resp := <-w.ready
	resp.Body = pr
	return resp, nil
}

type memWriter struct {
	header http.Header
	body   *io.PipeWriter
	ready  chan *http.Response
	req    *http.Request
	once   sync.Once
	status int
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *memWriter) send() {
	w.once.Do(func() {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		w.ready <- &http.Response{StatusCode: w.status, Header: w.header, Request: w.req, ContentLength: -1}
	})
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.send()
	return w.body.Write(p)
}

func (w *memWriter) Flush() { w.send() }
