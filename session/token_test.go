package session_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// jwt is a token with the claims given, as Hugging Face's X-IP-Token is.
func jwt(claims string) string {
	return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

func expiringJWT(who string, exp time.Time) string {
	return jwt(fmt.Sprintf(`{"sub":%q,"exp":%d}`, who, exp.Unix()))
}

// Issue 11: hello says how long the token has, and token_expiring comes
// once, at exp − the margin, on the session's own timer.
func TestTokenExpiringAtTheMargin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start0 := time.Now()
		h := start(t, &fakeUpstream{}, session.Config{Token: expiringJWT("v", start0.Add(5*time.Minute)),
			Refresh: &session.Refresh{URL: "/v1/sessions/s/token", Key: "k"}})
		hello := h.expect("hello")[0]
		tok := hello["token"].(map[string]any)
		if tok["expires_in"] != 300.0 || tok["refresh"].(map[string]any)["url"] != "/v1/sessions/s/token" {
			t.Errorf("hello token = %v", tok)
		}
		m := h.expect("token_expiring")[0]
		if d := time.Since(start0); d != 4*time.Minute+30*time.Second || m["expires_in"] != 30.0 {
			t.Errorf("token_expiring %v after %v, want expires_in 30 after 4m30s", m, d)
		}
		h.send(`{"type":"ping"}`) // nothing else came meanwhile, and nothing comes again
		h.expect("pong")
	})
}

// A refresh that brings the same token again (a proxy that has not
// re-stamped yet) changes nothing: token_expiring does not come again, so
// the page does not refresh in a loop.
func TestRefreshWithTheSameToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start0 := time.Now()
		tok := expiringJWT("v", start0.Add(time.Minute))
		h := start(t, &fakeUpstream{}, session.Config{Token: tok,
			Refresh: &session.Refresh{URL: "/v1/sessions/s/token", Key: "k"}})
		h.readAhead() // (and so answers the relay's pings)
		h.expect("hello")
		h.expect("token_expiring")
		exp, err := h.sess.SetToken(context.Background(), tok)
		if err != nil || exp == nil || !exp.Equal(start0.Add(time.Minute).Truncate(time.Second)) {
			t.Fatalf("SetToken() = %v, %v", exp, err)
		}
		time.Sleep(10 * time.Second)
		h.send(`{"type":"ping"}`)
		h.expect("pong") // and no second token_expiring before it
	})
}

// Issue 11: a refresh moves the jobs that join from then on to the new
// token; a job already submitted keeps its own. token_expiring comes again
// for the new token.
func TestRefreshMovesLaterJobsToTheNewToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		old, fresh := expiringJWT("v", now.Add(time.Minute)), expiringJWT("v", now.Add(3*time.Minute))
		up := &fakeUpstream{script: script(true)}
		h := start(t, up, session.Config{Token: old})
		h.expect("hello")
		h.send(`{"type":"submit","id":"a","data":["first"]}`)
		h.expect("accepted")
		exp, err := h.sess.SetToken(context.Background(), fresh)
		if err != nil || exp == nil || exp.Unix() != now.Add(3*time.Minute).Unix() {
			t.Fatalf("SetToken() = %v, %v", exp, err)
		}
		h.send(`{"type":"submit","id":"b","data":["second"]}`)
		h.expect("accepted")
		if _, tokens, _ := up.snapshot(); len(tokens) != 2 || tokens[0] != old || tokens[1] != fresh {
			t.Errorf("jobs joined with %v, want the old token then the new", tokens)
		}
		m := h.expect("token_expiring")[0]
		if d := time.Since(now); d != 2*time.Minute+30*time.Second || m["expires_in"] != 30.0 {
			t.Errorf("token_expiring %v after %v, want the new token's, after 2m30s", m, d)
		}
	})
}

// Issue 11: without a refresh, a submit after exp gets token_expired, never
// a silent fall back to the relay's own quota.
func TestNoRefreshMeansTokenExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false, &upstream.Completed{Data: []any{nil, "ok"}})}
		h := start(t, up, session.Config{Token: expiringJWT("v", time.Now().Add(time.Minute)), PingInterval: -1})
		h.expect("hello", "token_expiring")
		time.Sleep(time.Minute)
		h.send(`{"type":"submit","id":"late","data":["x"]}`)
		if e := h.expect("error")[0]; e["code"] != "token_expired" || e["id"] != "late" {
			t.Errorf("error = %v, want token_expired", e)
		}
		if calls, _, _ := up.snapshot(); len(calls) != 0 {
			t.Errorf("%d jobs reached the upstream", len(calls))
		}
	})
}

// Issue 11: a refresh of a session that has ended says so.
func TestSetTokenAfterTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{})
		h.expect("hello")
		h.browser.CloseNow()
		<-h.ended
		h.ended <- nil
		if _, err := h.sess.SetToken(context.Background(), "t"); !errors.Is(err, session.ErrSessionOver) {
			t.Errorf("SetToken() = %v, want ErrSessionOver", err)
		}
	})
}

// The refresh key goes to the page in hello and is forgotten: the relay
// keeps only its hash (PROTOCOL.md section 6).
func TestRefreshKeyIsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ref := &session.Refresh{URL: "/v1/sessions/s/token", Key: "the-key"}
		h := start(t, &fakeUpstream{}, session.Config{Token: "t", Refresh: ref})
		hello := h.expect("hello")[0]
		if got := hello["token"].(map[string]any)["refresh"].(map[string]any)["key"]; got != "the-key" {
			t.Errorf("hello's refresh key = %v", got)
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong") // Run is past hello
		if ref.Key != "" {
			t.Errorf("the session still holds the refresh key after hello")
		}
	})
}
