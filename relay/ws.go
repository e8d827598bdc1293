package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// serveWS answers an upgrade (PROTOCOL.md section 1): websocket.Accept
// refuses a malformed one and a forbidden Origin with an HTTP status; a
// socket without a token, or for which the Server has no place, is accepted
// and closed at once with its refusal's close code; any other runs its
// session until it ends.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimSpace(r.Header.Get(s.tokenHeader()))
	c, conn := s.accept(w, r)
	if c == nil { // refused, and answered
		return
	}
	if ref := s.checkToken(token); ref != nil {
		s.refuseSocket(c, conn, ref)
		return
	}
	api, sl, refreshKey, ref := s.reserve(token)
	if ref != nil {
		s.refuseSocket(c, conn, ref)
		return
	}
	// Upload chunks may be larger than a text message (PROTOCOL.md 9).
	c.SetReadLimit(max(s.maxMessageBytes(), s.uploadChunkBytes()))
	sock := &socket{Conn: c, raw: conn}
	// The refresh key goes to the session, which puts it in hello and
	// forgets it: the relay keeps only its hash (PROTOCOL.md section 6).
	sess := s.newSession(sock, api, sl, token, refreshKey)
	// The session gets a goroutine of its own, and net/http's goroutine
	// ends here with the request and its buffers: an idle session keeps
	// only what it needs (a smaller stack, no request).
	go func() {
		defer s.release(sl)
		defer sock.CloseNow() // the safety net; Run closes it with its code
		s.run(sess, api, sl)
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

// run runs session sess, of API api, and logs its end.
func (s *Server) run(sess *session.Session, api *upstream.API, sl *slot) {
	start := time.Now()
	s.metrics.sessionsOpen.Inc()
	s.metrics.sessionsOpened.Inc()
	// Not r.Context(): Shutdown cancels s.base; a redeploy, this one.
	ctx, end := context.WithCancelCause(s.base)
	defer end(nil)
	s.mu.Lock()
	sl.sess, sl.end = sess, end // the refresh route and a redeploy may find it now
	if cur := s.api.Load(); cur != api {
		end(session.ErrUpstreamChanged) // a redeploy came between its upgrade and now
	}
	s.mu.Unlock()
	err := sess.Run(ctx)
	s.metrics.sessionsOpen.Dec()
	if errors.Is(err, session.ErrSlowConsumer) {
		s.metrics.slowConsumers.Inc()
	}
	s.logEnd(sl.id, time.Since(start), sess.Jobs(), err)
}

// newSession makes the session of socket c. (A function of its own: the
// Config it builds is not kept in the frame of run, which every idle
// session's goroutine keeps on its stack.)
func (s *Server) newSession(c *socket, api *upstream.API, sl *slot, token, refreshKey string) *session.Session {
	return session.New(s.sessionConfig(sl.id, api, token, refreshKey), c, s.Upstream)
}

func (s *Server) sessionConfig(id string, api *upstream.API, token, refreshKey string) session.Config {
	return session.Config{
		ID:                    id,
		API:                   api,
		DefaultEndpoint:       s.DefaultEndpoint,
		Token:                 token,
		Refresh:               &session.Refresh{URL: "/v1/sessions/" + id + "/token", Key: refreshKey},
		TokenRefreshMargin:    s.TokenRefreshMargin,
		MaxJobs:               s.MaxJobs,
		MaxMessageBytes:       s.maxMessageBytes(),
		MaxFileBytes:          s.MaxFileBytes,
		MaxJobBytes:           s.MaxJobBytes,
		Budget:                s.budget,
		MaxUploadBytes:        s.MaxUploadBytes,
		MaxSessionUploadBytes: s.MaxSessionUploadBytes,
		UploadChunkBytes:      s.uploadChunkBytes(),
		WriteTimeout:          s.WriteTimeout,
		Pings:                 s.pings,
		PingInterval:          s.PingInterval, // negative: no pings
		Version:               s.Version,
		Hooks:                 s.hooks,
	}
}

// logEnd logs a session's end, once. The normal ends are logged at info
// without an error: a browser that left (a closed tab, 1000 or 1001; a
// network that went; a ping not answered), a shutdown and a redeploy of
// the Space (1012). A browser that broke a policy (1008, 1009) is a
// warning and an internal failure (1011) an error, each with its err.
func (s *Server) logEnd(id string, d time.Duration, jobs int, err error) {
	code, out := session.CloseCode(err), outcome(err)
	level := slog.LevelError
	switch out {
	case "client_gone", "shutdown", "ping_timeout", "upstream_changed":
		level, err = slog.LevelInfo, nil
	case "slow_consumer", "bad_messages", "message_too_big":
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("session", id),
		slog.Duration("duration", d.Round(time.Millisecond)),
		slog.Int("jobs", jobs),
		slog.Int("close_code", int(code)),
		slog.String("outcome", out),
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
		{session.ErrUpstreamChanged, "upstream_changed"},
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
