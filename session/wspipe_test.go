package session_test

import (
	"bufio"
	"cmp"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"
)

// wsPipe returns the two ends of a WebSocket connection over net.Pipe:
// no socket, so it works inside a testing/synctest bubble.
func wsPipe(t testing.TB) (browser *websocket.Conn, relay *relayConn) {
	t.Helper()
	return wsPipeWith(t, &websocket.DialOptions{})
}

// relayConn is the relay's end: as the relay's own, its CloseNow cuts the
// connection even while a Close waits.
type relayConn struct {
	*websocket.Conn
	raw net.Conn
}

func (c *relayConn) CloseNow() error { return c.raw.Close() }

// wsPipeWith is wsPipe with the browser's dial options.
func wsPipeWith(t testing.TB, opts *websocket.DialOptions) (browser *websocket.Conn, relay *relayConn) {
	t.Helper()
	client := &http.Client{Transport: pipeTransport(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		relay = &relayConn{Conn: c, raw: w.(hijackable).conn}
	})}
	opts.HTTPClient = client
	browser, _, err := websocket.Dial(context.Background(), "ws://relay.test/v1/ws", opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return browser, relay
}

type pipeTransport http.HandlerFunc

func (h pipeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	near, far := net.Pipe()
	w := hijackable{ResponseRecorder: httptest.NewRecorder(), conn: far}
	h(w, r)
	resp := w.Result()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = near
	}
	return resp, nil
}

// hijackable hijacks to conn, with buffers of net/http's size (4 KiB) or
// of the sizes given.
type hijackable struct {
	*httptest.ResponseRecorder
	conn       net.Conn
	rbuf, wbuf int
}

func (h hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r, w := cmp.Or(h.rbuf, 4096), cmp.Or(h.wbuf, 4096)
	return h.conn, bufio.NewReadWriter(bufio.NewReaderSize(h.conn, r), bufio.NewWriterSize(h.conn, w)), nil
}
