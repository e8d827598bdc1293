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
	gen   int         // counts the tokens: a timer of an older one is ignored
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

// armTokenTimer arms the expiring timer for the session's token, once
// hello (or a refresh's answer) has told the page about it:
// token_expiring comes margin before exp, at once if less is left. The
// timer hands the work to Run; without exp there is none.
func (s *Session) armTokenTimer() {
	t := &s.token
	t.stop()
	t.sent = false
	t.gen++
	if t.exp == nil {
		return
	}
	gen := t.gen
	t.timer = time.AfterFunc(max(t.exp.Sub(s.cfg.Now())-s.cfg.TokenRefreshMargin, 0), func() {
		select {
		case s.work <- func() error { return s.tokenExpiring(gen) }:
		case <-s.done:
		}
	})
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
func (s *Session) tokenExpiring(gen int) error {
	if gen != s.token.gen || s.token.sent {
		return nil // a token replaced since
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
	case s.work <- func() error { return s.swapToken(t) }:
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
	if t.token == s.token.value { // the same token: nothing changes, token_expiring included
		t.taken <- s.token.exp
		return nil
	}
	s.token.stop()
	gen := s.token.gen
	s.token = newTokenState(t.token)
	s.token.gen = gen
	if s.visitor != nil {
		s.visitor.SetHeader(s.token.header())
	}
	t.taken <- s.token.exp
	s.armTokenTimer()
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
