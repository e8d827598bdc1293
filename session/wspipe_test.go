package session_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"
)

// wsPipe returns the two ends of a WebSocket connection over net.Pipe:
// no socket, so it works inside a testing/synctest bubble.
func wsPipe(t *testing.T) (browser, relay *websocket.Conn) {
	t.Helper()
	client := &http.Client{Transport: pipeTransport(func(w http.ResponseWriter, r *http.Request) {
		var err error
		relay, err = websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("Accept: %v", err)
		}
	})}
	browser, _, err := websocket.Dial(context.Background(), "ws://relay.test/v1/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return browser, relay
}

type pipeTransport http.HandlerFunc

func (h pipeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	near, far := net.Pipe()
	w := hijackable{httptest.NewRecorder(), far}
	h(w, r)
	resp := w.Result()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = near
	}
	return resp, nil
}

type hijackable struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h hijackable) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}
