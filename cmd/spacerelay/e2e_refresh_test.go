package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// refreshOf returns the refresh route and key of c's hello.
func refreshOf(c *wsClient) (url, key string, err error) {
	var h struct {
		Token struct {
			ExpiresIn *int `json:"expires_in"`
			Refresh   *struct {
				URL string `json:"url"`
				Key string `json:"key"`
			} `json:"refresh"`
		} `json:"token"`
	}
	if err := json.Unmarshal(c.hello.raw, &h); err != nil || h.Token.Refresh == nil {
		return "", "", fmt.Errorf("hello %s: no token.refresh", c.hello)
	}
	return h.Token.Refresh.URL, h.Token.Refresh.Key, nil
}

// refreshAs hands c's session token, through the refresh route, as the
// Spaces proxy stamps it on the page's request.
func refreshAs(ctx context.Context, r *relayProc, c *wsClient, url, key, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-IP-Token", token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		c.token = token
	}
	return resp.StatusCode, nil
}

// whoami runs /whoami as job id and returns the digest of the token the
// Space saw.
func whoami(t *testing.T, c *wsClient, id string) string {
	t.Helper()
	if err := c.send(map[string]any{"type": "submit", "id": id, "endpoint": "/whoami", "data": []any{}}); err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
	res := mustResult(t, c, id)
	var who string
	if len(res.Data) != 1 || json.Unmarshal(res.Data[0], &who) != nil {
		t.Fatalf("whoami result %s", res)
	}
	return who
}

// Issue 11: a visitor whose first token expires mid-session goes on
// working: the page is told token_expiring, refreshes, and the Space sees
// the new token on the jobs after the refresh, never the old one.
func testRefresh(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	first := fakeJWT(time.Now().Add(3 * time.Second)) // less than the 30 s margin left
	c := visit(t, ctx, e.relay, first)
	url, key, err := refreshOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := whoami(t, c, "w1"); got != digest(first) {
		t.Errorf("before the refresh the Space saw %s, want the first token's %s", got, digest(first))
	}
	if _, err := c.expect(func(m relayMsg) bool { return m.Type == "token_expiring" }); err != nil {
		t.Fatalf("token_expiring: %v", err)
	}
	for !tokenExpired(first) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // the first token runs out, as tokens do
	}
	second := fakeJWT(time.Now().Add(10 * time.Minute))
	if status, err := refreshAs(ctx, e.relay, c, url, key, second); err != nil || status != http.StatusOK {
		t.Fatalf("refresh: %d, %v", status, err)
	}
	for i := range 2 {
		if got := whoami(t, c, fmt.Sprintf("w%d", i+2)); got != digest(second) {
			t.Errorf("after the refresh the Space saw %s, want the new token's %s", got, digest(second))
		}
	}
	if !e.hasJournal() {
		return
	}
	prompt := "refreshed " + uuid.NewString()
	mustSubmit(t, c, "g", "/generate", map[string]any{"prompt": prompt, "steps": 1})
	mustResult(t, c, "g")
	for _, entry := range mustJournal(t, ctx, e.space, prompt) {
		if entry.Token != digest(second) {
			t.Errorf("journal %+v: the job went with another token than the new one", entry)
		}
	}
}

func tokenExpired(jwt string) bool {
	var claims struct{ Exp int64 }
	parts := strings.Split(jwt, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(b, &claims)
	return time.Now().Unix() >= claims.Exp
}

// Issue 11: twenty visitors refreshing at once each get their own new
// token, never another's.
func testRefreshTogether(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := dialRelay(ctx, e.relay, newToken())
			if err != nil {
				errs <- err
				return
			}
			defer c.drop()
			url, key, err := refreshOf(c)
			if err != nil {
				errs <- err
				return
			}
			fresh := fmt.Sprintf("visitor-%d-refreshed-%d", i, time.Now().UnixNano())
			if status, err := refreshAs(ctx, e.relay, c, url, key, fresh); err != nil || status != http.StatusOK {
				errs <- fmt.Errorf("visitor %d: refresh %d %v", i, status, err)
				return
			}
			id := fmt.Sprintf("w%d", i)
			if err := c.send(map[string]any{"type": "submit", "id": id, "endpoint": "/whoami", "data": []any{}}); err != nil {
				errs <- err
				return
			}
			msgs, err := c.job(id)
			if err != nil {
				errs <- err
				return
			}
			var who string
			last := msgs[len(msgs)-1]
			if len(last.Data) != 1 || json.Unmarshal(last.Data[0], &who) != nil || who != digest(fresh) {
				errs <- fmt.Errorf("visitor %d: the Space saw %s, want its own new token %s", i, last, digest(fresh))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Issue 11: on its demo, the relay stands behind a proxy that does what
// Hugging Face's does: a token the page sends itself never reaches the
// Space; each request gets a fresh JWT of --demo-token-ttl; the refresh
// request's token moves into the session.
func TestE2EDemoTokens(t *testing.T) {
	bin := buildRelay(t, t.TempDir())
	r := startRelay(t, bin, "", "--demo-token-ttl", "5s", "--token-refresh-margin", "2s")
	ctx := testCtx(t)
	c := visit(t, ctx, r, "page-made-token")
	var h struct {
		Token struct {
			Present   bool `json:"present"`
			ExpiresIn int  `json:"expires_in"`
		} `json:"token"`
	}
	if err := json.Unmarshal(c.hello.raw, &h); err != nil || !h.Token.Present || h.Token.ExpiresIn < 3 || h.Token.ExpiresIn > 5 {
		t.Errorf("hello token = %+v, want a token of about 5 s", h.Token)
	}
	first := whoami(t, c, "w1")
	if first == digest("page-made-token") {
		t.Errorf("the Space saw the page's own token")
	}
	if _, err := c.expect(func(m relayMsg) bool { return m.Type == "token_expiring" }); err != nil {
		t.Fatalf("token_expiring: %v", err)
	}
	url, key, err := refreshOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := refreshAs(ctx, r, c, url, key, "another-page-made-token"); err != nil || status != http.StatusOK {
		t.Fatalf("refresh: %d, %v", status, err)
	}
	if second := whoami(t, c, "w2"); second == first || second == digest("another-page-made-token") {
		t.Errorf("after the refresh the Space saw %s (before: %s): want the proxy's new token", second, first)
	}
}
