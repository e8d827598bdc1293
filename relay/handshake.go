package relay

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/spacerelay/spacerelay/upstream"
)

// Retry-After of the refusals that have one, in seconds.
const (
	retryShuttingDown = 5  // a new instance should be up by then
	retryUnavailable  = 5  // discovery retries at most every 30 s, but is often quicker
	retryOverCapacity = 10 // sessions come and go
	retryPerToken     = 10 // the visitor's other tabs
)

// A refusal is an upgrade request answered with an HTTP error: PROTOCOL.md
// section 1.
type refusal struct {
	status     int
	code       string
	message    string
	retryAfter int // seconds; 0 means no Retry-After
}

// refusalCodes lists every code a refusal may carry, for the metrics.
var refusalCodes = []string{
	"upgrade_required", "bad_request", "forbidden_origin", "missing_token",
	"shutting_down", "upstream_unavailable", "over_capacity", "too_many_sessions",
}

// refuse writes ref as the response, with the body
// {"error":{"code":…,"message":…}}.
func (s *Server) refuse(w http.ResponseWriter, ref *refusal) {
	s.metrics.refused.WithLabelValues(ref.code).Inc()
	s.logger().Debug("upgrade refused", "status", ref.status, "code", ref.code, "message", ref.message)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if ref.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(ref.retryAfter))
	}
	if ref.status == http.StatusUpgradeRequired {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
	}
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(map[string]body{"error": {ref.code, ref.message}}) // cannot fail
	w.WriteHeader(ref.status)
	w.Write(append(b, '\n'))
}

// checkRequest makes the checks of the upgrade request that need no
// state: a WebSocket upgrade, its Origin, its token.
func (s *Server) checkRequest(r *http.Request, token string) *refusal {
	if ref := checkUpgrade(r); ref != nil {
		return ref
	}
	if err := checkOrigin(r, s.OriginPatterns); err != nil {
		return &refusal{status: http.StatusForbidden, code: "forbidden_origin", message: err.Error()}
	}
	if token == "" && !s.TokenOptional {
		msg := fmt.Sprintf("the upgrade request has no %s header", s.tokenHeader())
		return &refusal{status: http.StatusUnauthorized, code: "missing_token", message: msg}
	}
	return nil
}

// checkUpgrade refuses what websocket.Accept would refuse with a plain
// text body, so that every refusal has ours.
func checkUpgrade(r *http.Request) *refusal {
	switch {
	case !r.ProtoAtLeast(1, 1),
		!headerHasToken(r.Header, "Connection", "upgrade"),
		!headerHasToken(r.Header, "Upgrade", "websocket"):
		return &refusal{status: http.StatusUpgradeRequired, code: "upgrade_required", message: "this route takes a WebSocket upgrade"}
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return &refusal{status: http.StatusUpgradeRequired, code: "upgrade_required", message: "only WebSocket version 13 is supported"}
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return &refusal{status: http.StatusBadRequest, code: "bad_request", message: "the upgrade request needs one Sec-WebSocket-Key"}
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return &refusal{status: http.StatusBadRequest, code: "bad_request", message: "invalid Sec-WebSocket-Key"}
	}
	return nil
}

// headerHasToken reports whether the comma-separated values of header
// name hold token, case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkOrigin allows a request without Origin, one whose Origin is the
// request's own host, and one whose Origin matches a pattern; it decides
// exactly as websocket.Accept does with the same patterns.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q may not open a socket on %q", origin, r.Host)
}

// A tokenKey names a token in the per-token counts: a hash of it, so that
// the Server never keeps a token beyond its session.
type tokenKey [sha256.Size]byte

// reserve takes a place for a session of token, or says why there is
// none. On success the caller must call release(key, ok) exactly once.
func (s *Server) reserve(token string) (api *upstream.API, key tokenKey, ref *refusal) {
	if token != "" {
		key = sha256.Sum256([]byte(token))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	api = s.api.Load()
	switch {
	case s.draining:
		return nil, key, &refusal{http.StatusServiceUnavailable, "shutting_down", "the relay is shutting down", retryShuttingDown}
	case api == nil:
		return nil, key, &refusal{http.StatusServiceUnavailable, "upstream_unavailable", "the upstream app is not reachable yet", retryUnavailable}
	case s.open >= s.maxSessions():
		return nil, key, &refusal{http.StatusServiceUnavailable, "over_capacity", "the relay is at its session limit", retryOverCapacity}
	case token != "" && s.perToken[key] >= s.maxPerToken():
		msg := fmt.Sprintf("this visitor already has %d sessions open", s.perToken[key])
		return nil, key, &refusal{http.StatusTooManyRequests, "too_many_sessions", msg, retryPerToken}
	}
	s.open++
	if token != "" {
		s.perToken[key]++
	}
	s.wg.Add(1)
	return api, key, nil
}

// release gives back a place taken by reserve.
func (s *Server) release(key tokenKey, hasToken bool) {
	s.mu.Lock()
	s.open--
	if hasToken {
		if s.perToken[key]--; s.perToken[key] <= 0 {
			delete(s.perToken, key)
		}
	}
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) tokenHeader() string {
	if s.TokenHeader == "" {
		return defaultTokenHeader
	}
	return s.TokenHeader
}

func (s *Server) maxSessions() int {
	if s.MaxSessions <= 0 {
		return defaultMaxSessions
	}
	return s.MaxSessions
}

func (s *Server) maxPerToken() int {
	if s.MaxSessionsPerToken <= 0 {
		return defaultMaxPerToken
	}
	return s.MaxSessionsPerToken
}

func (s *Server) maxMessageBytes() int64 {
	if s.MaxMessageBytes <= 0 {
		return defaultMaxMessageBytes
	}
	return s.MaxMessageBytes
}
