package relay

import (
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// originAllowed reports whether r's Origin may open a socket: the relay's
// one origin rule (PROTOCOL.md section 1), for the module's CORS (and the
// token refresh) as for the upgrade. A request without Origin (not a
// browser) may. websocket.Accept decides, and does not export its matcher,
// so originAllowed asks Accept itself, with the same options: a
// well-formed upgrade request that carries r's Host and Origin, on a
// ResponseWriter that cannot be hijacked. Accept refuses a forbidden
// Origin with 403, and an allowed one gets as far as the hijack, which
// fails with 501.
func (s *Server) originAllowed(r *http.Request) bool {
	probe := &http.Request{
		Method: http.MethodGet, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Host: r.Host, URL: r.URL,
		Header: http.Header{
			"Connection":            {"Upgrade"},
			"Upgrade":               {"websocket"},
			"Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key":     {"c3BhY2VyZWxheSBwcm9iZQ=="}, // 16 bytes
			"Origin":                r.Header.Values("Origin"),
		},
	}
	w := &statusRecorder{header: http.Header{}}
	if _, err := websocket.Accept(w, probe, s.acceptOptions()); err == nil {
		return true // cannot happen: w is no Hijacker
	}
	return w.status == http.StatusNotImplemented
}

// statusRecorder is a ResponseWriter that keeps only the status. It is
// no http.Hijacker and has no Unwrap.
type statusRecorder struct {
	header http.Header
	status int
}

func (w *statusRecorder) Header() http.Header         { return w.header }
func (w *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

// cors answers a request for the module with CORS headers when its Origin
// is allowed (originAllowed), so that a page of another origin may
// import it, and with none otherwise.
func (s *Server) cors(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" && s.originAllowed(r) {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		next(w, r)
	}
}

// preflight answers an OPTIONS preflight of the module: cors has set
// Access-Control-Allow-Origin if the Origin may have it.
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", strings.TrimSpace(req))
		}
		h.Set("Access-Control-Max-Age", "600")
	}
	h.Add("Vary", "Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
}
