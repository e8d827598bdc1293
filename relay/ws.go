package relay

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// serveWS makes the checks of PROTOCOL.md section 1, in its order, then
// accepts the socket and runs its session until it ends.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimSpace(r.Header.Get(s.tokenHeader()))
	if ref := s.checkRequest(r, token); ref != nil {
		s.refuse(w, ref)
		return
	}
	api, key, ref := s.reserve(token)
	if ref != nil {
		s.refuse(w, ref)
		return
	}

	var raw net.Conn
	c, err := websocket.Accept(smallBuffers{w, &raw}, r, &websocket.AcceptOptions{
		Subprotocols:   []string{Subprotocol},
		OriginPatterns: s.OriginPatterns,
	})
	if err != nil { // Accept has answered
		s.release(key, token != "")
		s.metrics.refused.WithLabelValues("accept_failed").Inc()
		s.logger().Warn("websocket accept failed", "err", err)
		return
	}
	c.SetReadLimit(s.maxMessageBytes())
	// The session gets a goroutine of its own, and net/http's goroutine
	// ends here with the request and its buffers: an idle session keeps
	// only what it needs (a smaller stack, no request).
	sock := &socket{Conn: c, raw: raw}
	go func() {
		defer s.release(key, token != "")
		defer sock.CloseNow() // the safety net; Run closes it with its code
		s.run(sock, api, token)
	}()
}

// socket is an accepted WebSocket as a session uses it. Its CloseNow cuts
// the connection at once, even while a Close waits for the close
// handshake (which the WebSocket library's own CloseNow does not do): a
// browser that cannot take the close frame, or never answers it, is cut
// within the session's bound.
type socket struct {
	*websocket.Conn
	raw net.Conn
}

func (s *socket) CloseNow() error {
	_ = s.Conn.CloseNow() // a no-op once Close has begun
	return s.raw.Close()
}

// smallBuffers hands the WebSocket smaller buffers than net/http's 4 KiB
// ones when the connection is hijacked: a session is mostly idle, and
// every idle session keeps them. Frames larger than a buffer just take
// more than one read or write.
type smallBuffers struct {
	http.ResponseWriter
	conn *net.Conn // set to the hijacked connection
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	*w.conn = conn
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

// run runs one session on c and logs its end.
func (s *Server) run(c *socket, api *upstream.API, token string) {
	id := uuid.NewString()
	start := time.Now()
	s.metrics.sessionsOpen.Inc()
	s.metrics.sessionsOpened.Inc()
	sess := session.New(s.sessionConfig(id, api, token), c, s.Upstream)
	err := sess.Run(s.base) // not r.Context(): Shutdown cancels s.base
	s.metrics.sessionsOpen.Dec()
	if errors.Is(err, session.ErrSlowConsumer) {
		s.metrics.slowConsumers.Inc()
	}
	s.logEnd(id, time.Since(start), sess.Jobs(), err)
}

func (s *Server) sessionConfig(id string, api *upstream.API, token string) session.Config {
	return session.Config{
		ID:              id,
		API:             api,
		DefaultEndpoint: s.DefaultEndpoint,
		Token:           token,
		MaxJobs:         s.MaxJobs,
		MaxMessageBytes: s.maxMessageBytes(),
		MaxFileBytes:    s.MaxFileBytes,
		MaxJobBytes:     s.MaxJobBytes,
		WriteTimeout:    s.WriteTimeout,
		Pings:           s.pings,
		PingInterval:    s.PingInterval, // negative: no pings
		Hooks:           s.hooks,
	}
}

// logEnd logs a session's end: at info when it closed normally (1000,
// 1001), at warn when the browser broke a policy (1008, 1009), at error
// for an internal failure (1011).
func (s *Server) logEnd(id string, d time.Duration, jobs int, err error) {
	code := session.CloseCode(err)
	level := slog.LevelError
	switch code {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		level = slog.LevelInfo
	case websocket.StatusPolicyViolation, websocket.StatusMessageTooBig:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("session", id),
		slog.Duration("duration", d.Round(time.Millisecond)),
		slog.Int("jobs", jobs),
		slog.Int("close_code", int(code)),
		slog.String("outcome", outcome(err)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.logger().LogAttrs(context.Background(), level, "session ended", attrs...)
}

// outcome names the reason a session ended, for logs.
func outcome(err error) string {
	for _, o := range []struct {
		err  error
		name string
	}{
		{session.ErrClientGone, "client_gone"},
		{session.ErrShutdown, "shutdown"},
		{session.ErrSlowConsumer, "slow_consumer"},
		{session.ErrProtocol, "bad_messages"},
		{session.ErrTooBig, "message_too_big"},
		{session.ErrPingTimeout, "ping_timeout"},
	} {
		if errors.Is(err, o.err) {
			return o.name
		}
	}
	if err == nil {
		return "client_gone"
	}
	return "internal"
}
