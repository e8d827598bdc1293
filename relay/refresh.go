package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spacerelay/spacerelay/session"
)

// refreshEvery is how often one session may ask for a refresh: every
// request with the right id and key counts, answered or refused.
const refreshEvery = time.Second

// refreshToken is POST /v1/sessions/{id}/token (PROTOCOL.md section 6): the
// page hands its session the fresh token that Hugging Face's proxy
// stamped on this request. The 200 comes once the session's owner has
// taken the token. Answers, in the order checked: 403 forbidden_origin,
// 404 unknown_session (a wrong id or key: one answer for both), 429
// rate_limited, 401 missing_token, 422 token_expired.
func (s *Server) refreshToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if origin := r.Header.Get("Origin"); origin != "" {
		if !s.originAllowed(r) {
			s.refuseRefresh(w, &refusal{status: http.StatusForbidden, code: "forbidden_origin",
				message: fmt.Sprintf("pages of origin %q may not refresh sessions of this relay", origin)})
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
	sl := s.findSession(r.PathValue("id"), bearer(r))
	if sl == nil {
		s.refuseRefresh(w, &refusal{status: http.StatusNotFound, code: "unknown_session",
			message: "no open session has this id and key"})
		return
	}
	if wait := s.refreshTurn(sl); wait > 0 {
		s.refuseRefresh(w, &refusal{status: http.StatusTooManyRequests, code: "rate_limited",
			message: "at most one refresh a second", retryAfter: int((wait + time.Second - 1) / time.Second)})
		return
	}
	token := strings.TrimSpace(r.Header.Get(s.tokenHeader()))
	if token == "" {
		s.refuseRefresh(w, &refusal{status: http.StatusUnauthorized, code: "missing_token",
			message: fmt.Sprintf("the request has no %s header", s.tokenHeader())})
		return
	}
	if exp := session.TokenExpiry(token); exp != nil && !time.Now().Before(*exp) {
		s.refuseRefresh(w, &refusal{status: http.StatusUnprocessableEntity, code: "token_expired",
			message: "the request's token has expired"})
		return
	}
	exp, err := sl.sess.SetToken(r.Context(), token)
	if err != nil {
		if errors.Is(err, session.ErrSessionOver) {
			s.refuseRefresh(w, &refusal{status: http.StatusNotFound, code: "unknown_session", message: "the session has ended"})
		}
		return // the request was given up
	}
	s.moveToken(sl, token)
	s.metrics.refreshes.WithLabelValues("refreshed").Inc()
	answer := struct {
		ExpiresAt *time.Time `json:"expires_at"`
		ExpiresIn *int64     `json:"expires_in"`
	}{ExpiresAt: exp}
	if exp != nil {
		n := max(int64(time.Until(*exp)/time.Second), 0)
		answer.ExpiresIn = &n
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(answer)
}

func (s *Server) refuseRefresh(w http.ResponseWriter, ref *refusal) {
	s.metrics.refreshes.WithLabelValues(ref.code).Inc()
	s.logger().Debug("token refresh refused", "status", ref.status, "code", ref.code)
	writeRefusal(w, ref)
}

// bearer is the key of an "Authorization: Bearer <key>" header, or "".
func bearer(r *http.Request) string {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(key)
}

// findSession returns the open session with this id whose refresh key is
// key, or nil. The key is compared by its hash, in constant time; a wrong
// id and a wrong key look the same.
func (s *Server) findSession(id, key string) *slot {
	h := sha256.Sum256([]byte(key))
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.sessions[id]
	if sl == nil || sl.sess == nil || key == "" || subtle.ConstantTimeCompare(h[:], sl.keyHash[:]) != 1 {
		return nil
	}
	return sl
}

// refreshTurn counts a refresh request of sl and returns how long it must
// wait for its turn, 0 if it may go now.
func (s *Server) refreshTurn(sl *slot) time.Duration {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if wait := sl.lastRefresh.Add(refreshEvery).Sub(now); !sl.lastRefresh.IsZero() && wait > 0 {
		sl.lastRefresh = now
		return refreshEvery
	}
	sl.lastRefresh = now
	return 0
}

// moveToken counts sl under its new token from now on, for the per-token
// session limit.
func (s *Server) moveToken(sl *slot, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sl.id] != sl {
		return // it ended meanwhile, and release has counted it out
	}
	s.countToken(sl, -1)
	sl.token, sl.hasToken = keyOf(token), true
	s.countToken(sl, 1)
}

// refreshPreflight answers an OPTIONS preflight of the refresh route:
// cors has set Access-Control-Allow-Origin if the Origin may have it.
func refreshPreflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization")
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}
