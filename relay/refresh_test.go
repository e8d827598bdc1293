package relay_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
)

// jwt is a token whose exp is exp, as Hugging Face's X-IP-Token is.
func jwt(who string, exp time.Time) string {
	claims := fmt.Sprintf(`{"sub":%q,"exp":%d}`, who, exp.Unix())
	return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

// dialHello dials with token and returns the socket and its hello's
// refresh URL and key.
func dialHello(t *testing.T, base, token string) (c *websocket.Conn, url, key string) {
	t.Helper()
	c, err := tryDial(t, base, token, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	hello := read(t, c)
	tok, _ := hello["token"].(map[string]any)
	r, _ := tok["refresh"].(map[string]any)
	url, _ = r["url"].(string)
	key, _ = r["key"].(string)
	if url == "" || len(key) != 43 {
		t.Fatalf("hello token = %v, want a refresh url and a 43-character key", tok)
	}
	return c, url, key
}

// refresh POSTs a refresh with key and the token header h (may be nil).
func refresh(t *testing.T, base, url, key string, h http.Header) *response {
	t.Helper()
	hh := http.Header{"Authorization": {"Bearer " + key}}
	for k, v := range h {
		hh[k] = v
	}
	return request(t, http.MethodPost, base+url, hh)
}

// Issue 11: a refresh hands the session its new token, and answers 200
// only once the session has taken it: the visitor's headers upstream have
// changed by then.
func TestRefreshHandsTheTokenOver(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{}
	base := start(t, &relay.Server{Upstream: up})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "old-token")
	defer c.CloseNow()
	runJob(t, c) // the visitor's upstream session opens
	exp := time.Now().Add(3 * time.Minute).Truncate(time.Second)
	fresh := jwt("v", exp)
	r := refresh(t, base, url, key, http.Header{"X-Ip-Token": {fresh}})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.StatusCode, r.body)
	}
	var got struct {
		ExpiresAt time.Time `json:"expires_at"`
		ExpiresIn int       `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || !got.ExpiresAt.Equal(exp) || got.ExpiresIn < 170 || got.ExpiresIn > 180 {
		t.Errorf("refresh answered %s, want expires_at %v and expires_in about 180", r.body, exp)
	}
	if h := up.setHeaders(); len(h) != 1 || h[0].Get("X-IP-Token") != fresh {
		t.Errorf("the visitor's headers = %v, want the new token by the time of the 200", h)
	}
}

// Issue 11: every refusal of PROTOCOL.md section 6's table.
func TestRefreshRefusals(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "tok")
	defer c.CloseNow()
	other, otherURL, _ := dialHello(t, base, "tok2")
	defer other.CloseNow()
	expired := jwt("v", time.Now().Add(-time.Minute))
	ok := http.Header{"X-Ip-Token": {"fresh"}}
	tests := []struct {
		name       string
		url, key   string
		h          http.Header
		status     int
		code, wait string
	}{
		{"foreign origin", url, key, http.Header{"Origin": {"https://evil.example"}, "X-Ip-Token": {"fresh"}}, 403, "forbidden_origin", ""},
		{"wrong key", url, strings.Repeat("A", 43), ok, 404, "unknown_session", ""},
		{"another session's id", otherURL, key, ok, 404, "unknown_session", ""},
		{"no such id", "/v1/sessions/nope/token", key, ok, 404, "unknown_session", ""},
		{"no key", url, "", ok, 404, "unknown_session", ""},
		{"no token", url, key, nil, 401, "missing_token", ""},
		{"too soon", url, key, ok, 429, "rate_limited", "1"},
	}
	for _, tc := range tests {
		r := refresh(t, base, tc.url, tc.key, tc.h)
		wantRefusal(t, r, tc.status, tc.code, tc.wait) // "no token" took the turn "too soon" asks for
	}
	time.Sleep(time.Second)
	wantRefusal(t, refresh(t, base, url, key, http.Header{"X-Ip-Token": {expired}}), 422, "token_expired", "")
	c.Close(websocket.StatusNormalClosure, "")
	time.Sleep(time.Second)
	eventually(t, "the closed session's refresh refused", func() bool {
		return refresh(t, base, url, key, ok).StatusCode == http.StatusNotFound
	})
}

// Issue 11: the per-token session limit counts a session under its new
// token from the refresh on.
func TestRefreshMovesThePerTokenCount(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{MaxSessionsPerToken: 1})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "ann-1")
	defer c.CloseNow()
	if r := refresh(t, base, url, key, http.Header{"X-Ip-Token": {"ann-2"}}); r.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.StatusCode, r.body)
	}
	again := dial(t, base, "ann-1", nil) // the old token's place is free
	defer again.CloseNow()
	wantClosed(t, base, "ann-2", nil, 4429, "too_many_sessions retry_after=10")
}

// Issue 11: the refresh key and the tokens never reach the log or the
// metrics.
func TestRefreshKeyNeverLogged(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	base := start(t, &relay.Server{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "secret-old")
	refresh(t, base, url, key, http.Header{"X-Ip-Token": {"secret-new"}})
	refresh(t, base, url, key, http.Header{"X-Ip-Token": {"secret-new"}}) // refused: too soon
	c.Close(websocket.StatusNormalClosure, "")
	m, _ := metricsURLs.Load(base)
	scrape := string(get(t, m.(string)+"/metrics").body)
	if got := metric(t, base, `spacerelay_token_refreshes_total{outcome="refreshed"}`); got != 1 {
		t.Errorf("refreshed = %v, want 1", got)
	}
	eventually(t, "the session's end logged", func() bool { return strings.Contains(logs.String(), "session ended") })
	for _, secret := range []string{key, "secret-old", "secret-new"} {
		if strings.Contains(logs.String(), secret) || strings.Contains(scrape, secret) {
			t.Errorf("%q in the log or the metrics", secret)
		}
	}
}

// Issue 11: a page of an allowed origin may refresh across origins: the
// preflight and the answer carry CORS headers.
func TestRefreshCORS(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{OriginPatterns: []string{"app.example.com"}})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "tok")
	defer c.CloseNow()
	pre := request(t, http.MethodOptions, base+url, http.Header{"Origin": {"https://app.example.com"},
		"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization"}})
	if pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight headers = %v", pre.Header)
	}
	r := refresh(t, base, url, key, http.Header{"Origin": {"https://app.example.com"}, "X-Ip-Token": {"fresh"}})
	if r.StatusCode != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("refresh from the allowed origin: %d %v", r.StatusCode, r.Header)
	}
}

// Issue 11: a relay among several names itself in its session ids, so
// that a load balancer can route a refresh to the relay that holds the
// socket by the id's prefix.
func TestInstanceNamesSessions(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{Instance: "west-2"})
	waitReady(t, base)
	c, url, key := dialHello(t, base, "tok")
	defer c.CloseNow()
	if !strings.HasPrefix(url, "/v1/sessions/west-2.") {
		t.Errorf("refresh url = %s, want the instance's prefix", url)
	}
	if r := refresh(t, base, url, key, http.Header{"X-Ip-Token": {"fresh"}}); r.StatusCode != http.StatusOK {
		t.Errorf("refresh: %d %s", r.StatusCode, r.body)
	}
}
