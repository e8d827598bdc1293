// Package relay is the HTTP edge of spacerelay: its routes, the WebSocket
// upgrade with its checks (origin, token, limits), the registry of live
// sessions, draining, health, metrics and logging.
//
// A Server hands each accepted WebSocket to a session.Session, which owns
// the socket until the session ends. The Server only counts sessions, for
// its limits and for Shutdown; it decodes no protocol message and keeps no
// per-session state. Logging happens here and nowhere else in spacerelay.
package relay

import (
	"cmp"
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// Subprotocol is the WebSocket subprotocol of the browser protocol, version
// 1. The Server selects it when the browser offers it; a browser that
// offers none speaks version 1 too.
const Subprotocol = "spacerelay.v1"

// Server is spacerelay's http.Handler. It serves the routes of PROTOCOL.md
// section 8:
//
//	GET /               index.html from Static
//	GET /spacerelay.js  spacerelay.js from Static
//	GET /spacerelay.d.ts its TypeScript types, from Static
//	GET /healthz        200 while the process serves
//	GET /readyz         200 when the upstream's API is known and the Server is not draining, else 503
//	GET /metrics        Prometheus metrics, from a registry of the Server's own
//	GET /v1/ws          the WebSocket of the browser protocol
//
// Set the fields, call Start, serve, and call Shutdown once to end. The
// fields must not change after the first call of any method. Upstream and
// API are required; every other zero value means the documented default.
type Server struct {
	// Upstream opens each visitor's upstream session and fetches its
	// files: session.ClientUpstream of an *upstream.Client. Required.
	Upstream session.Upstream

	// API fetches the upstream's API description: (*upstream.Client).API.
	// The Server calls it in the background (see Start) until it succeeds,
	// waiting 1 s after the first failure and twice as long after each
	// next, up to 30 s. Until then /readyz answers 503 and upgrades are
	// refused with 503 upstream_unavailable. Required.
	API func(context.Context) (*upstream.API, error)

	// Static holds the web files: index.html for GET / and spacerelay.js
	// for GET /spacerelay.js. Nil means both routes answer 404.
	Static fs.FS

	// Logger receives one line per session end, discovery failures and
	// refusals (at debug). Nil means slog.Default().
	Logger *slog.Logger

	// OriginPatterns lists the host patterns of the pages, besides the
	// request's own host, that may open a socket, as
	// websocket.AcceptOptions.OriginPatterns: matched case-insensitively
	// with path.Match against the Origin's host, or against
	// "scheme://host" when the pattern contains "://". Nil means only the
	// request's own host. A request without Origin (not a browser) is
	// always allowed.
	OriginPatterns []string

	// TokenHeader is the upgrade request's header that carries the
	// visitor's token. The token is read from it and from nowhere else.
	// Defaults to "X-IP-Token".
	TokenHeader string

	// TokenOptional admits a browser whose upgrade request has no token;
	// its jobs go upstream without one. False (the default) refuses it
	// with 401 missing_token.
	TokenOptional bool

	// MaxSessions bounds the open sessions. Defaults to 10000.
	MaxSessions int

	// MaxSessionsPerToken bounds the open sessions of one token. Sessions
	// without a token are not limited per token. Defaults to 4.
	MaxSessionsPerToken int

	// UpstreamConns, if set, reports the connections to the upstream that
	// are open ((*upstream.Client).OpenConns), for /metrics.
	UpstreamConns func() int64

	// DefaultEndpoint is the endpoint of a submit that names none. Empty
	// means the upstream's only endpoint, if it has exactly one.
	DefaultEndpoint string

	// MaxJobs, MaxFileBytes, MaxJobBytes and WriteTimeout configure each
	// session, as the fields of session.Config of the same names; zero
	// means that package's default.
	MaxJobs      int
	MaxFileBytes int64
	MaxJobBytes  int64
	WriteTimeout time.Duration

	// PingInterval is the time between WebSocket pings of every session,
	// from one timer shared by all of them (session.Ticker). A browser that
	// does not answer before the next ping is disconnected. Zero means 30 s;
	// negative disables pings.
	PingInterval time.Duration

	// MaxMessageBytes is the largest message a browser may send: the
	// socket's read limit (a larger message closes it with 1009), and the
	// limit announced in hello. Defaults to 65536.
	MaxMessageBytes int64

	initOnce  sync.Once
	startOnce sync.Once
	// Static after init.
	mux     *http.ServeMux
	metrics *metrics
	hooks   session.Hooks
	base    context.Context // the sessions' and discovery's context
	stop    context.CancelFunc
	pings   *session.Ticker // nil when pings are off

	api atomic.Pointer[upstream.API] // set once discovery succeeds

	mu sync.Mutex
	// Guarded by mu.
	draining bool
	open     int
	perToken map[tokenKey]int
	// wg counts the sessions and the discovery goroutine. Add is only
	// called with mu held and draining false, so Shutdown's Wait sees every
	// Add.
	wg sync.WaitGroup
}

// Defaults of the Server's fields.
const (
	defaultTokenHeader     = "X-IP-Token"
	defaultMaxSessions     = 10000
	defaultMaxPerToken     = 4
	defaultMaxMessageBytes = 65536
)

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.base, s.stop = context.WithCancel(context.Background())
		if s.PingInterval >= 0 {
			s.pings = session.NewTicker(cmp.Or(s.PingInterval, 30*time.Second))
		}
		s.perToken = make(map[tokenKey]int)
		s.metrics = newMetrics()
		if s.UpstreamConns != nil {
			s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "spacerelay_upstream_connections", Help: "Connections to the upstream open now, idle pooled ones included.",
			}, func() float64 { return float64(s.UpstreamConns()) }))
		}
		s.hooks = s.metrics.hooks()
		s.mux = http.NewServeMux()
		s.mux.HandleFunc("GET /{$}", s.static("index.html"))
		s.mux.HandleFunc("GET /spacerelay.js", s.static("spacerelay.js"))
		s.mux.HandleFunc("GET /spacerelay.d.ts", s.static("spacerelay.d.ts"))
		s.mux.HandleFunc("GET /healthz", s.healthz)
		s.mux.HandleFunc("GET /readyz", s.readyz)
		s.mux.Handle("GET /metrics", s.metrics.handler())
		s.mux.HandleFunc("GET /v1/ws", s.serveWS)
	})
}

// Start begins discovering the upstream's API in the background, if it has
// not begun yet. ServeHTTP calls it too; call it before serving, so that
// /readyz turns 200 without waiting for a first request. Shutdown stops it.
func (s *Server) Start() {
	if s.Upstream == nil || s.API == nil {
		panic("relay: Server.Upstream and Server.API are required")
	}
	s.init()
	s.startOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.draining {
			return
		}
		s.wg.Add(1)
		go s.discover()
	})
}

// ServeHTTP serves the Server's routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Start()
	s.mux.ServeHTTP(w, r)
}

// Shutdown drains the Server: from its call on, upgrades are refused with
// 503 shutting_down and /readyz answers 503; every session is told to end
// (the browser sees close code 1001) and the discovery stops. Shutdown
// waits until every session has returned, or until ctx is done, and then
// returns ctx's error (the sessions still end; a later call waits again).
// It does not stop the HTTP server: call http.Server.Shutdown first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.stop()
	s.pings.Stop()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case s.isDraining():
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("draining\n"))
	case s.api.Load() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("upstream api not known yet\n"))
	default:
		w.Write([]byte("ready\n"))
	}
}

// static serves the file name of Static.
func (s *Server) static(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Static == nil {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, s.Static, name)
	}
}
