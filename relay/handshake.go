package relay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// Retry-After of the refusals that have one, in seconds.
const (
	retryShuttingDown = 5  // a new instance should be up by then
	retryUnavailable  = 5  // discovery retries at most every 30 s, but is often quicker
	retryOverCapacity = 10 // sessions come and go
	retryPerToken     = 10 // the visitor's other tabs
)

// refusalCloseWait bounds a refused socket's close: the write of its close
// frame and the wait for the browser's reply. A browser replies at once;
// a client that stays silent is cut off then, not after the library's 5 s.
const refusalCloseWait = time.Second

// A refusal is an upgrade the relay does not take (PROTOCOL.md section 1).
// websocket.Accept refuses a malformed upgrade and a forbidden Origin with
// an HTTP status; the relay refuses the rest by accepting the socket and
// closing it at once with close code 4000 + status.
type refusal struct {
	status     int    // HTTP status; as a close code, 4000 + status
	code       string // the error code, or the close frame's reason
	message    string // for people: the HTTP body's; for a close, the log's only
	retryAfter int    // seconds; 0 means none
}

// refusalCodes lists every code a refusal may carry, for the metrics.
var refusalCodes = []string{
	"upgrade_required", "bad_request", "method_not_allowed", "forbidden_origin", "internal",
	"missing_token", "shutting_down", "upstream_unavailable", "over_capacity", "too_many_sessions",
}

// acceptOptions are the options of every websocket.Accept: the library
// alone decides whether an upgrade is well formed and its Origin allowed.
func (s *Server) acceptOptions() *websocket.AcceptOptions {
	return &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}, OriginPatterns: s.OriginPatterns}
}

// accept runs websocket.Accept. When the library refuses the upgrade, its
// answer carries our JSON body (see acceptWriter) and accept returns nil.
// Otherwise it returns the socket and its connection.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) (*websocket.Conn, net.Conn) {
	aw := &acceptWriter{ResponseWriter: w, origin: r.Header.Get("Origin")}
	c, err := websocket.Accept(aw, r, s.acceptOptions())
	if err != nil {
		ref := aw.refusal
		if ref == nil { // the library failed without a status of its own
			ref = httpRefusal(http.StatusInternalServerError, "")
		}
		s.countRefusal(ref, "detail", err.Error())
		return nil, nil
	}
	return c, aw.conn
}

// acceptWriter is the ResponseWriter websocket.Accept answers on. It
// decides nothing: when the library refuses with a status (its http.Error
// calls), it writes that status with our JSON body in place of the
// library's plain text. When the library accepts, Hijack hands the
// socket smaller buffers than net/http's and keeps the connection.
type acceptWriter struct {
	http.ResponseWriter
	origin  string   // the request's Origin header, for a message
	refusal *refusal // set once the library wrote an error status
	conn    net.Conn // set by Hijack
}

func (w *acceptWriter) WriteHeader(status int) {
	if status == http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	if w.refusal != nil {
		return
	}
	w.refusal = httpRefusal(status, w.origin)
	writeRefusal(w.ResponseWriter, w.refusal)
}

// Write drops the library's plain-text body of a refusal: ours is written.
func (w *acceptWriter) Write(p []byte) (int, error) {
	if w.refusal != nil {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Hijack hands the WebSocket smaller buffers than net/http's 4 KiB ones:
// a session is mostly idle, and every idle session keeps them. Frames
// larger than a buffer just take more than one read or write.
func (w *acceptWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = conn
	r := brw.Reader
	if r.Buffered() == 0 { // else keep what the browser already sent
		r = bufio.NewReaderSize(conn, 512)
	}
	bw := brw.Writer
	if bw.Buffered() == 0 {
		bw = bufio.NewWriterSize(conn, 1<<10)
	}
	return conn, bufio.NewReadWriter(r, bw), nil
}

// httpRefusal names the library's refusal with status, in our words.
func httpRefusal(status int, origin string) *refusal {
	ref := &refusal{status: status}
	switch status {
	case http.StatusUpgradeRequired:
		ref.code, ref.message = "upgrade_required", "this address takes a WebSocket upgrade"
	case http.StatusBadRequest:
		ref.code, ref.message = "bad_request", "the WebSocket upgrade is malformed: it needs WebSocket version 13 and one valid Sec-WebSocket-Key"
	case http.StatusMethodNotAllowed:
		ref.code, ref.message = "method_not_allowed", "a WebSocket upgrade is a GET request"
	case http.StatusForbidden:
		ref.code, ref.message = "forbidden_origin", fmt.Sprintf("pages of origin %q may not open a socket on this relay", origin)
	default:
		ref.code, ref.message = "internal", "the relay could not open the socket"
	}
	return ref
}

// writeRefusal writes ref as the response, with the body
// {"error":{"code":…,"message":…}}.
func writeRefusal(w http.ResponseWriter, ref *refusal) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if ref.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(ref.retryAfter))
	}
	w.WriteHeader(ref.status)
	w.Write(errorBody(ref.code, ref.message))
}

// errorBody is the JSON body of an HTTP error: {"error":{"code","message"}}.
func errorBody(code, message string) []byte {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(map[string]body{"error": {code, message}}) // cannot fail
	return append(b, '\n')
}

// closeReason is the reason of a refused socket's close frame: the code,
// then " retry_after=N" where a Retry-After applies.
func (ref *refusal) closeReason() string {
	if ref.retryAfter > 0 {
		return ref.code + " retry_after=" + strconv.Itoa(ref.retryAfter)
	}
	return ref.code
}

// refuseSocket refuses an accepted socket: it closes it at once with
// 4000 + ref.status and ref's reason, and sends nothing else. conn's
// deadline bounds the close (the library's own waits 5 s for the reply).
func (s *Server) refuseSocket(c *websocket.Conn, conn net.Conn, ref *refusal) {
	s.countRefusal(ref, "close_code", 4000+ref.status)
	conn.SetDeadline(time.Now().Add(refusalCloseWait))
	if err := c.Close(websocket.StatusCode(4000+ref.status), ref.closeReason()); err != nil {
		s.logger().Debug("refused socket closed without the browser's reply", "code", ref.code, "err", err)
	}
}

func (s *Server) countRefusal(ref *refusal, attrs ...any) {
	s.metrics.refused.WithLabelValues(ref.code).Inc()
	s.logger().Debug("upgrade refused", append([]any{"status", ref.status, "code", ref.code, "message", ref.message}, attrs...)...)
}

// checkToken refuses a socket without a token unless TokenOptional.
func (s *Server) checkToken(token string) *refusal {
	if token != "" || s.TokenOptional {
		return nil
	}
	msg := fmt.Sprintf("the upgrade request has no %s header", s.tokenHeader())
	return &refusal{status: http.StatusUnauthorized, code: "missing_token", message: msg}
}
