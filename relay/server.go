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
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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
//	GET /                index.html from Static (the demo page), or Site
//	GET /spacerelay.js   spacerelay.js from Static, with CORS for allowed origins
//	GET /spacerelay.d.ts its TypeScript types, from Static, with CORS too
//	GET /healthz         200 while the process serves
//	GET /readyz          200 when the upstream's API is known and the Server is not draining, else 503; JSON
//	GET /metrics         Prometheus metrics, only with MetricsPublic (else see MetricsHandler)
//	GET /v1/ws           the WebSocket of the browser protocol (POST, PUT, PATCH, DELETE: 405)
//
// Set the fields, call Start, serve, and call Shutdown once to end. The
// fields must not change after the first call of any method. Upstream and
// API are required; every other zero value means the documented default.
type Server struct {
	// Upstream opens each visitor's upstream session and fetches its
	// files: session.ClientUpstream of an *upstream.Client. Required.
	Upstream session.Upstream

	// Rediscover, if set, fetches the upstream's API afresh:
	// (*upstream.Client).Rediscover, which answers the same *API when
	// nothing changed, a new one after a redeploy, and an error when the
	// Space cannot be reached. Once the first discovery has succeeded the
	// Server calls it every RediscoverEvery, and at once when a job finds
	// that the upstream lost its session. A new API closes the sessions of
	// the old with 1012 (their pages reconnect and read the new hello); an
	// error turns /readyz to 503 and refuses new sockets with 4503
	// upstream_unavailable until the Space answers again. Nil means the
	// first API is kept for good.
	Rediscover func(context.Context) (*upstream.API, error)

	// RediscoverEvery is how often Rediscover is called. Defaults to 30 s.
	RediscoverEvery time.Duration

	// API fetches the upstream's API description: (*upstream.Client).API.
	// The Server calls it in the background (see Start) until it succeeds,
	// waiting 1 s after the first failure and twice as long after each
	// next, up to 30 s. Until then /readyz answers 503 (with the last
	// failure's message) and sockets are refused with close code 4503
	// upstream_unavailable. Required.
	API func(context.Context) (*upstream.API, error)

	// Static holds the web files: index.html (the demo page) for GET /,
	// spacerelay.js and spacerelay.d.ts. Nil means these routes answer 404.
	Static fs.FS

	// Site is the page developer's own frontend (--static), served at /
	// and below in place of Static's demo page: files with their MIME
	// types, ETag and If-None-Match, Cache-Control long and immutable for
	// hashed names (app.3f9c2b1e.js, index-BQ1x8nqp.css) and no-cache for
	// the rest; no directory listings, no dotfiles. The Server's own routes
	// and /v1/… keep their meaning whatever Site holds. Give it an os.Root's
	// FS, so that no symlink leads out of the directory. Nil means the
	// demo page.
	Site fs.FS

	// SPA answers a GET of a path that is no file of Site with Site's
	// index.html, for a single-page app's client-side routes; never for
	// /v1/… or a dotfile. False (the default) answers 404.
	SPA bool

	// MetricsPublic serves GET /metrics on the Server's own routes too.
	// Deployed as a Hugging Face Space, those are public: false (the
	// default) leaves the metrics to MetricsHandler, on a listener of
	// their own.
	MetricsPublic bool

	// Logger receives one line per session end, discovery failures and
	// refusals (at debug). Nil means slog.Default().
	Logger *slog.Logger

	// OriginPatterns lists the patterns of the pages' origins, besides the
	// request's own host, that may open a socket and import the module
	// (CORS): websocket.AcceptOptions.OriginPatterns, which websocket.Accept
	// matches case-insensitively with path.Match against the Origin's host
	// (with its port, if not the scheme's default), or against
	// "scheme://host[:port]" when the pattern contains "://". Nil means only
	// the request's own host. A request without Origin (not a browser) may
	// always open a socket.
	OriginPatterns []string

	// TokenHeader is the upgrade request's header that carries the
	// visitor's token. The token is read from it and from nowhere else.
	// Defaults to "X-IP-Token".
	TokenHeader string

	// TokenOptional admits a browser whose upgrade request has no token;
	// its jobs go upstream without one. False (the default) refuses it
	// with close code 4401 missing_token.
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

	// MaxMessageBytes is the largest text message a browser may send (a
	// larger one closes the socket with 1009), announced in hello.
	// Defaults to 65536.
	MaxMessageBytes int64

	// MaxUploadBytes, MaxSessionUploadBytes and UploadChunkBytes bound the
	// page's uploads, as the fields of session.Config of the same names;
	// zero means that package's default (50 MiB, 200 MiB, 256 KiB). The
	// socket's read limit is the larger of MaxMessageBytes and
	// UploadChunkBytes.
	MaxUploadBytes        int64
	MaxSessionUploadBytes int64
	UploadChunkBytes      int64

	// FileMemory bounds the bytes of files all sessions hold in memory at
	// once: results on their way to a browser, upload chunks on their way
	// upstream (session.Budget). Defaults to 256 MiB; negative means no
	// bound but the per-job and per-upload ones.
	FileMemory int64

	// TokenRefreshMargin is how long before a token's exp its session
	// sends token_expiring (PROTOCOL.md section 6). Defaults to 30 s.
	TokenRefreshMargin time.Duration

	// Version is the relay's version, said in hello. Empty means none.
	Version string

	// Instance, if set, names this relay among several behind one load
	// balancer: session ids are "{Instance}.{uuid}", so that the balancer
	// can route a session's refresh (/v1/sessions/{id}/…) to the relay
	// that holds its socket by the id's prefix. Empty means bare uuids.
	Instance string

	initOnce  sync.Once
	startOnce sync.Once
	// Static after init.
	mux     *http.ServeMux
	metrics *metrics
	hooks   session.Hooks
	base    context.Context // the sessions' and discovery's context
	stop    context.CancelFunc
	pings   *session.Ticker // nil when pings are off
	budget  *session.Budget // nil when FileMemory is negative

	api      atomic.Pointer[upstream.API] // set once discovery succeeds
	redeploy chan struct{}                // capacity 1: a job met a sign of a redeploy
	state    atomic.Pointer[readiness]    // written by discover only
	askedAt  atomic.Int64                 // when a job that found the Space unreachable last asked, unix ns

	mu sync.Mutex
	// Guarded by mu.
	draining bool
	open     int
	perToken map[tokenKey]int
	sessions map[string]*slot // by session id
	// wg counts the sessions and the discovery goroutine. Add is only
	// called with mu held and draining false, so Shutdown's Wait sees every
	// Add.
	wg sync.WaitGroup
}

// Defaults of the Server's fields (the sessions' own limits default in
// package session): the one place they are written, which the relay's
// flags take theirs from.
const (
	DefaultTokenHeader = "X-IP-Token"
	DefaultMaxSessions = 10000
	DefaultMaxPerToken = 4
	DefaultFileMemory  = 256 << 20

	// DefaultShutdownGrace is the time the relay's main gives Shutdown.
	// It covers each session's teardown, whose longest part is its
	// upstream Close (at most upstream.CloseBound, which a test keeps
	// well below it).
	DefaultShutdownGrace = 10 * time.Second
)

func (s *Server) rediscoverEvery() time.Duration {
	return cmp.Or(max(s.RediscoverEvery, 0), 30*time.Second)
}

func (s *Server) uploadChunkBytes() int64 {
	return cmp.Or(max(s.UploadChunkBytes, 0), session.DefaultUploadChunkBytes)
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.base, s.stop = context.WithCancel(context.Background())
		if s.PingInterval >= 0 {
			s.pings = session.NewTicker(cmp.Or(s.PingInterval, 30*time.Second))
		}
		s.perToken = make(map[tokenKey]int)
		s.sessions = make(map[string]*slot)
		s.redeploy = make(chan struct{}, 1)
		if s.FileMemory >= 0 {
			s.budget = session.NewBudget(cmp.Or(s.FileMemory, DefaultFileMemory))
		}
		s.metrics = newMetrics()
		if s.UpstreamConns != nil {
			s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "spacerelay_upstream_connections", Help: "Connections to the upstream open now, idle pooled ones included.",
			}, func() float64 { return float64(s.UpstreamConns()) }))
		}
		s.hooks = s.metrics.hooks()
		s.hooks.JobEnded = s.jobEnded(s.hooks.JobEnded)
		s.state.Store(&readiness{state: "starting"})
		s.mux = s.routes()
	})
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	if s.Site != nil {
		mux.Handle("GET /", newSiteHandler(s.Site, s.SPA))
	} else {
		mux.HandleFunc("GET /{$}", s.static("index.html"))
	}
	for _, name := range []string{"spacerelay.js", "spacerelay.d.ts"} {
		mux.HandleFunc("GET /"+name, s.cors(s.static(name)))
		mux.HandleFunc("OPTIONS /"+name, s.cors(preflight))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.MetricsPublic {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	// GET (and HEAD), and the other methods a page's fetch may try, so
	// that the library's 405 comes in our words.
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" /v1/ws", s.serveWS)
	}
	mux.HandleFunc("POST /v1/sessions/{id}/token", s.refreshToken)
	mux.HandleFunc("OPTIONS /v1/sessions/{id}/token", s.cors(refreshPreflight))
	return mux
}

// MetricsHandler serves the Server's Prometheus metrics, on whatever
// listener the caller chooses (cmd/spacerelay: --metrics-listen). The
// metrics come from a registry of the Server's own.
func (s *Server) MetricsHandler() http.Handler {
	s.init()
	return s.metrics.handler()
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

// Shutdown drains the Server: from its call on, sockets are refused with
// close code 4503 shutting_down and /readyz answers 503; every session is
// told to end (the browser sees close code 1001) and the discovery stops.
// A socket being refused still closes within a second. Shutdown
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

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// static serves the file name of Static.
func (s *Server) static(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Static == nil {
			http.NotFound(w, r)
			return
		}
		ct, ok := siteTypes[path.Ext(name)] // the same on every system
		if strings.HasSuffix(name, ".d.ts") {
			// TypeScript types have no registered type, and the system's
			// table may say anything (Qt's .ts on Debian): as text, a
			// browser shows them.
			ct, ok = "text/plain; charset=utf-8", true
		}
		if ok {
			w.Header().Set("Content-Type", ct)
		}
		http.ServeFileFS(w, r, s.Static, name)
	}
}

// The registry: the Server counts its sessions, for its limits and for
// Shutdown, and keeps nothing else of them.

// A tokenKey names a token in the per-token counts: a hash of it, so that
// the Server never keeps a token beyond its session.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey {
	if token == "" {
		return tokenKey{}
	}
	return sha256.Sum256([]byte(token))
}

// A slot is an open session's place in the registry: what the refresh
// route needs to find it, and what release gives back.
type slot struct {
	// Static after reserve.
	id      string
	keyHash [sha256.Size]byte // of the refresh key: the key itself is the page's alone

	// Guarded by Server.mu.
	api         *upstream.API           // the API its session runs on
	end         context.CancelCauseFunc // ends its session with a cause, once it runs
	sess        *session.Session        // once its session runs
	token       tokenKey                // the current token's, if hasToken
	hasToken    bool
	lastRefresh time.Time // the last refresh request with the right key
}

// reserve takes a place for a session of token, or says why there is
// none. On success the caller must call release(sl) exactly once; the
// slot's refresh key is for the session's hello.
func (s *Server) reserve(token string) (api *upstream.API, sl *slot, refreshKey string, ref *refusal) {
	key := keyOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	api = s.api.Load()
	switch {
	case s.draining:
		return nil, nil, "", &refusal{http.StatusServiceUnavailable, "shutting_down", "the relay is shutting down", retryShuttingDown}
	case api == nil || s.state.Load().state != "ready":
		return nil, nil, "", &refusal{http.StatusServiceUnavailable, "upstream_unavailable", "the upstream app is not reachable now", retryUnavailable}
	case s.open >= s.maxSessions():
		return nil, nil, "", &refusal{http.StatusServiceUnavailable, "over_capacity", "the relay is at its session limit", retryOverCapacity}
	case token != "" && s.perToken[key] >= s.maxPerToken():
		msg := fmt.Sprintf("this visitor already has %d sessions open", s.perToken[key])
		return nil, nil, "", &refusal{http.StatusTooManyRequests, "too_many_sessions", msg, retryPerToken}
	}
	refreshKey = newRefreshKey()
	id := uuid.NewString()
	if s.Instance != "" {
		id = s.Instance + "." + id
	}
	sl = &slot{id: id, keyHash: sha256.Sum256([]byte(refreshKey)), token: key, hasToken: token != "", api: api}
	s.open++
	if sl.hasToken {
		s.perToken[key]++
	}
	s.sessions[sl.id] = sl
	s.wg.Add(1)
	return api, sl, refreshKey, nil
}

// newRefreshKey returns 256 random bits, base64url: 43 characters.
func newRefreshKey() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// release gives back a place taken by reserve.
func (s *Server) release(sl *slot) {
	s.mu.Lock()
	s.open--
	s.countToken(sl, -1)
	delete(s.sessions, sl.id)
	s.mu.Unlock()
	s.wg.Done()
}

// countToken adds d to the count of sl's token. Called with mu held.
func (s *Server) countToken(sl *slot, d int) {
	if !sl.hasToken {
		return
	}
	if s.perToken[sl.token] += d; s.perToken[sl.token] <= 0 {
		delete(s.perToken, sl.token)
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *Server) tokenHeader() string {
	if s.TokenHeader == "" {
		return DefaultTokenHeader
	}
	return s.TokenHeader
}

func (s *Server) maxSessions() int {
	if s.MaxSessions <= 0 {
		return DefaultMaxSessions
	}
	return s.MaxSessions
}

func (s *Server) maxPerToken() int {
	if s.MaxSessionsPerToken <= 0 {
		return DefaultMaxPerToken
	}
	return s.MaxSessionsPerToken
}

func (s *Server) maxMessageBytes() int64 {
	if s.MaxMessageBytes <= 0 {
		return session.DefaultMaxMessageBytes
	}
	return s.MaxMessageBytes
}
