// Package demospace is an in-process HTTP server that speaks the Gradio 6
// HTTP/SSE protocol (sse_v3, API prefix /gradio_api) and behaves like the
// small ZeroGPU-style Space of testdata/gradio/SPEC.md: text to image,
// image restyling, a chat.
//
// It is the default upstream of spacerelay when no real Space is
// configured, and the fast fake of the upstream tests: its wire format
// follows Gradio 6.31 closely, including the quirks a client has to live
// with (see Space.ServeHTTP). Everything it keeps is bounded, and Close
// stops every goroutine it started.
package demospace

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Config configures a Space. The zero Config is a Space with the defaults
// of SPEC.md.
type Config struct {
	// StepDelay is how long one progress step of /generate or /preview
	// takes. Zero means 100ms.
	StepDelay time.Duration

	// QuotaSeconds is each token's ZeroGPU quota in GPU seconds (a job asks
	// for one second per step). Zero (or less) means 60.
	QuotaSeconds int

	// QuotaRefill is how long after its first job a token's spent quota
	// comes back in full, as ZeroGPU's does over a day. Zero means never,
	// as in SPEC.md (the tests' setting); a public demo wants minutes.
	QuotaRefill time.Duration

	// Concurrency is how many jobs run at once. Zero means 1.
	Concurrency int

	// MaxQueue is how many jobs may wait before join answers 503 "Queue is
	// full...". Zero means 1000.
	MaxQueue int

	// MaxUploadBytes is the largest file /gradio_api/upload takes (also
	// /config's max_file_size). Zero means 10 MiB. An upload is held in
	// memory while it arrives, and files share a budget of 256 MiB.
	MaxUploadBytes int64

	// Now is the clock used for the durations and estimates the Space
	// reports. Nil means time.Now. Waiting always uses the time package's
	// timers, so testing/synctest controls it.
	Now func() time.Time
}

// Bounds that are not configurable.
const (
	maxSessions    = 10000     // per-session message queues (Gradio: 2000)
	maxSessionMsgs = 1000      // undelivered messages per session
	maxStates      = 10000     // /count states (Gradio's state capacity)
	maxTokens      = 100000    // remembered quota tokens
	maxFiles       = 10000     // files in memory
	maxFileBytes   = 256 << 20 // bytes of files in memory
	maxUploadSize  = 10 << 20  // default Config.MaxUploadBytes
	maxJournal     = 10000     // journal entries
	heartbeatEvery = 15 * time.Second
	writeTimeout   = 10 * time.Second
	apiPrefix      = "/gradio_api"
	version        = "6.31.0"
)

// Space is a running demo Space. It is an http.Handler. Make one with New
// and stop it with Close.
type Space struct {
	// Static after New.
	cfg       Config // defaults filled in
	endpoints []*endpoint
	files     *fileStore
	journal   *journal
	quota     *quotas
	counts    *counters
	done      chan struct{} // closed by Close
	appID     int64
	msgLimit  int // undelivered messages per session (maxSessionMsgs)

	mu sync.Mutex
	// Guarded by mu.
	closed   bool
	waiting  []*event // the queue, in order
	running  []*event
	sessions *lru[string, *session]
	calls    *lru[string, string] // event id -> session of a /call job
	stats    []fnStats            // per fn_index

	// wg counts running jobs and open streams. Add is only called with mu
	// held and closed false, so Close's Wait sees every Add.
	wg sync.WaitGroup
}

// New returns a Space ready to serve.
func New(cfg Config) *Space {
	if cfg.StepDelay <= 0 {
		cfg.StepDelay = 100 * time.Millisecond
	}
	if cfg.QuotaSeconds <= 0 {
		cfg.QuotaSeconds = 60
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1000
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = maxUploadSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Space{
		cfg:      cfg,
		files:    newFileStore(maxFiles, maxFileBytes),
		journal:  newJournal(maxJournal),
		quota:    newQuotas(cfg.QuotaSeconds, cfg.QuotaRefill, cfg.Now, maxTokens),
		counts:   &counters{n: newLRU[string, int](maxStates)},
		done:     make(chan struct{}),
		appID:    cfg.Now().UnixNano() & (1<<62 - 1),
		msgLimit: maxSessionMsgs,
		sessions: newLRU[string, *session](maxSessions),
		calls:    newLRU[string, string](maxSessions),
	}
	s.endpoints = s.newEndpoints()
	s.stats = make([]fnStats, len(s.endpoints))
	return s
}

func (s *Space) now() time.Time { return s.cfg.Now() }

// Close stops the Space: queued jobs are dropped, running jobs are
// cancelled (as Gradio cancels their tasks), open streams end with
// unexpected_error "Server stopped unexpectedly.", and new joins get 503.
// It returns when every goroutine the Space started has ended.
func (s *Space) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.waiting = nil
		for _, ev := range s.running {
			ev.cancel()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// ServeHTTP serves the Gradio routes:
//
//	GET  /config                          the Blocks config
//	GET  /gradio_api/info                 the API description
//	POST /gradio_api/queue/join           enqueue a job
//	GET  /gradio_api/queue/data           the session's SSE stream
//	GET  /gradio_api/queue/status         the queue size
//	POST /gradio_api/cancel               Gradio 6.31's cancel_event
//	POST /gradio_api/reset                a no-op, as in Gradio
//	POST /gradio_api/call[/v2]/<api>      the REST API: enqueue a job...
//	GET  /gradio_api/call[/v2]/<api>/<id> ...and follow it (event: / data:)
//	POST /gradio_api/run/<api>            call a queue=False function directly
//	GET  /gradio_api/file=<path>          a generated or uploaded file
//	POST /gradio_api/upload               multipart upload of "files"
//	GET  /gradio_api/heartbeat/<session>  "data: ALIVE" every 15 s
//	GET  /gradio_api/app_id               {"app_id": ...}
//	GET|DELETE /fixture/journal           the test journal of SPEC.md
//
// Behaviour kept from Gradio 6.31 that clients must live with:
//
//   - /cancel cancels every running job of the same fn_index in the
//     session, and the freed worker may start the cancelled event anyway
//     if it was next in the queue (see serveCancel).
//   - When a /queue/data stream drops, the session's queued jobs are
//     removed and its running ones continue unheard (generators stop); a
//     later stream of that session answers session_not_found, and a dead
//     job stays pending, so the session's next stream never closes.
//   - Generator updates after the first are edit lists, unless the join
//     said simple_format.
//
// Deliberate differences: the limits above (Gradio keeps 2000 sessions and
// buffers without bound), an unread session's estimations coalesce, files
// live in memory, and an upload may be at most Config.MaxUploadBytes.
func (s *Space) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/config" || p == "/config/":
		s.serveConfig(w, r)
	case p == "/fixture/journal":
		s.journal.serveHTTP(w, r)
	case p == "/" || p == "":
		serveIndex(w, r)
	case strings.HasPrefix(p, apiPrefix+"/"):
		s.serveAPI(w, r, p[len(apiPrefix):])
	default:
		writeDetail(w, http.StatusNotFound, "Not Found")
	}
}

func (s *Space) serveAPI(w http.ResponseWriter, r *http.Request, p string) {
	switch {
	case p == "/info" || p == "/info/":
		s.serveInfo(w, r)
	case p == "/queue/join":
		s.serveJoin(w, r)
	case p == "/queue/data":
		s.serveData(w, r)
	case p == "/queue/status":
		s.serveStatus(w, r)
	case p == "/cancel":
		s.serveCancel(w, r)
	case p == "/reset":
		s.serveReset(w, r)
	case strings.HasPrefix(p, "/call/"):
		s.serveCall(w, r, p[len("/call/"):])
	case strings.HasPrefix(p, "/run/"):
		s.serveRun(w, r, p[len("/run/"):])
	case strings.HasPrefix(p, "/api/"):
		s.serveRun(w, r, p[len("/api/"):])
	case p == "/upload":
		s.files.serveUpload(w, r, s.cfg.MaxUploadBytes, s.now())
	case p == "/app_id" || p == "/app_id/":
		writeJSON(w, http.StatusOK, object{{"app_id", s.appID}})
	case strings.HasPrefix(p, "/file="):
		s.files.serveFile(w, r, p[len("/file="):])
	case strings.HasPrefix(p, "/heartbeat/"):
		s.serveHeartbeat(w, r)
	default:
		writeDetail(w, http.StatusNotFound, "Not Found")
	}
}

func methodNotAllowed(w http.ResponseWriter) {
	writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
}

// track registers a long-lived handler so that Close waits for it. It
// returns false once the Space is closed.
func (s *Space) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func serveIndex(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(indexHTML))
}

const indexHTML = `<!doctype html>
<meta charset="utf-8">
<title>spacerelay demo Space</title>
<h1>spacerelay demo Space</h1>
<p>An in-process stand-in for a small ZeroGPU text-to-image Gradio Space.
It has no UI of its own; talk to it with a Gradio client.
Endpoints: <code>/generate</code>, <code>/preview</code>, <code>/count</code>, <code>/whoami</code>,
<code>/reset_count</code>, <code>/restyle</code>, <code>/add_message</code>, <code>/bot_reply</code>,
<code>/chat</code>, <code>/ticks</code>
(see <a href="/gradio_api/info">/gradio_api/info</a> and <a href="/config">/config</a>).</p>
`
