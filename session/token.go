package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// tokenState is the session's current token and what Run knows of it.
// Owned by Run.
type tokenState struct {
	value string
	exp   *time.Time  // its exp claim, if it is a JWT with one
	timer *time.Timer // fires at exp − the margin, once per token; nil without exp
	sent  bool        // token_expiring went out for this token
}

func newTokenState(tok string) tokenState {
	return tokenState{value: tok, exp: TokenExpiry(tok)}
}

// header is the visitor's headers upstream: the token as X-IP-Token, the
// header ZeroGPU reads, whatever header it came in.
func (t *tokenState) header() http.Header {
	h := http.Header{}
	if t.value != "" {
		h.Set("X-IP-Token", t.value)
	}
	return h
}

func (t *tokenState) expired(now time.Time) bool {
	return t.exp != nil && !now.Before(*t.exp)
}

// expiresIn is the whole seconds left, rounded down, or nil without exp.
func (t *tokenState) expiresIn(now time.Time) *int64 {
	if t.exp == nil {
		return nil
	}
	n := max(int64(t.exp.Sub(now)/time.Second), 0)
	return &n
}

// hello arms the expiring timer for the token, once hello (or a refresh's
// answer) has told the page about it: token_expiring comes margin before
// exp, at once if less is left.
func (t *tokenState) hello(now time.Time, margin time.Duration) {
	t.stop()
	t.sent = false
	if t.exp == nil {
		return
	}
	t.timer = time.NewTimer(max(t.exp.Sub(now)-margin, 0))
}

// expiring is the timer's channel, nil (blocking for ever) without one.
func (t *tokenState) expiring() <-chan time.Time {
	if t.timer == nil {
		return nil
	}
	return t.timer.C
}

func (t *tokenState) stop() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}

// tokenExpiringMsg is {"type":"token_expiring","expires_in":30}.
type tokenExpiringMsg struct {
	Type      string `json:"type"`
	ExpiresIn int64  `json:"expires_in"`
}

// tokenExpiring tells the page, once per token, that it is time to
// refresh.
func (s *Session) tokenExpiring() error {
	s.token.timer = nil
	if s.token.sent {
		return nil
	}
	s.token.sent = true
	return s.writeJSON(tokenExpiringMsg{"token_expiring", *s.token.expiresIn(s.cfg.Now())})
}

// tokenSwap is a refresh handed to Run: the new token, and where Run says
// it has taken it.
type tokenSwap struct {
	token string
	taken chan *time.Time // the new token's exp; capacity 1
}

// ErrSessionOver is returned by SetToken for a session that has ended.
var ErrSessionOver = errors.New("session: over")

// SetToken hands the session a fresh token from the page's refresh
// request (PROTOCOL.md section 6) and returns once Run has taken it:
// every job that joins the upstream queue from then on carries it (jobs
// already queued keep theirs). It returns the new token's exp, if any.
func (s *Session) SetToken(ctx context.Context, token string) (*time.Time, error) {
	t := &tokenSwap{token: token, taken: make(chan *time.Time, 1)}
	select {
	case s.tokens <- t:
	case <-s.done:
		return nil, ErrSessionOver
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case exp := <-t.taken:
		return exp, nil
	case <-s.done: // Run took it and ended before answering
		return nil, ErrSessionOver
	}
}

func (s *Session) swapToken(t *tokenSwap) error {
	s.token.stop()
	s.token = newTokenState(t.token)
	if s.visitor != nil {
		s.visitor.SetHeader(s.token.header())
	}
	t.taken <- s.token.exp
	s.token.hello(s.cfg.Now(), s.cfg.TokenRefreshMargin)
	return nil
}

// TokenExpiry reads the exp claim of a JWT; nil if tok is not a JWT with
// one. The signature is not checked: the Space checks it; this only tells
// the page when to refresh.
func TokenExpiry(tok string) *time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return nil
	}
	t := time.Unix(int64(*claims.Exp), 0).UTC()
	return &t
}
