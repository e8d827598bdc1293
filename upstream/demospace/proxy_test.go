package demospace

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// forwarded runs one request through p and returns what Next saw and the
// response the client got.
func forwarded(t *testing.T, p *TokenProxy, req *http.Request) (http.Header, *http.Response) {
	t.Helper()
	var seen http.Header
	p.Next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	})
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	return seen, rec.Result()
}

// verify checks a token's HS256 signature and returns its claims.
func verify(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", token)
	}
	mac := hmac.New(sha256.New, proxyKey())
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if sig, _ := base64.RawURLEncoding.DecodeString(parts[2]); !hmac.Equal(sig, mac.Sum(nil)) {
		t.Fatalf("token %q: the HS256 signature does not verify", token)
	}
	var head map[string]any
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if json.Unmarshal(h, &head) != nil || head["alg"] != "HS256" || head["typ"] != "JWT" {
		t.Errorf("JOSE header = %s", h)
	}
	var claims map[string]any
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("claims %s: %v", b, err)
	}
	return claims
}

func TestTokenProxyStampsEveryRequest(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	p := &TokenProxy{Now: func() time.Time { return now }}

	// A first request: the client's own token is dropped, a fresh one is
	// stamped, and the visitor gets a cookie.
	req := httptest.NewRequest("GET", "/v1/socket", nil)
	req.Header.Set("X-Ip-Token", "forged-by-the-client")
	seen, resp := forwarded(t, p, req)
	if got := seen.Values("X-Ip-Token"); len(got) != 1 || got[0] == "forged-by-the-client" {
		t.Fatalf("forwarded X-IP-Token = %q, want one stamped token", got)
	}
	first := verify(t, seen.Get("X-Ip-Token"))
	if first["iat"] != float64(now.Unix()) || first["exp"] != float64(now.Add(DefaultTokenTTL).Unix()) {
		t.Errorf("claims = %v, want iat now and exp two minutes later", first)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == VisitorCookie {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != first["visitor"] || !cookie.HttpOnly {
		t.Fatalf("cookies = %v, want %s=%v (HttpOnly)", resp.Cookies(), VisitorCookie, first["visitor"])
	}

	// The same visitor later (a token refresh): same visitor claim, a new
	// token, no new cookie.
	now = now.Add(90 * time.Second)
	req = httptest.NewRequest("POST", "/v1/sessions/s1/token", nil)
	req.AddCookie(cookie)
	seen2, resp2 := forwarded(t, p, req)
	second := verify(t, seen2.Get("X-Ip-Token"))
	if second["visitor"] != first["visitor"] || second["jti"] == first["jti"] ||
		second["exp"] != float64(now.Add(DefaultTokenTTL).Unix()) {
		t.Errorf("refresh claims = %v, first %v: want the same visitor, a new token", second, first)
	}
	if len(resp2.Cookies()) != 0 {
		t.Errorf("a known visitor got cookies %v", resp2.Cookies())
	}

	// Another browser is another visitor.
	seen3, _ := forwarded(t, p, httptest.NewRequest("GET", "/v1/socket", nil))
	if other := verify(t, seen3.Get("X-Ip-Token")); other["visitor"] == first["visitor"] {
		t.Errorf("two cookieless visitors share visitor %v", other["visitor"])
	}
}

func TestTokenProxyVisitorHeader(t *testing.T) {
	t.Parallel()
	p := &TokenProxy{TTL: 30 * time.Second, Header: "X-Demo-Token", VisitorHeader: "X-Test-Visitor"}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Test-Visitor", "visitor-7")
	req.Header.Set("X-Demo-Token", "forged")
	seen, resp := forwarded(t, p, req)
	c := verify(t, seen.Get("X-Demo-Token"))
	if c["visitor"] != "visitor-7" || c["exp"].(float64)-c["iat"].(float64) != 30 {
		t.Errorf("claims = %v, want visitor-7 and a 30 s life", c)
	}
	if seen.Get("X-Test-Visitor") != "" || len(resp.Cookies()) != 0 {
		t.Errorf("the visitor header was forwarded (%q) or a cookie set (%v)", seen.Get("X-Test-Visitor"), resp.Cookies())
	}
	// A visitor id that is not an id is ignored: a new visitor.
	req = httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Test-Visitor", "bad id\n")
	seen, _ = forwarded(t, p, req)
	if c := verify(t, seen.Get("X-Demo-Token")); c["visitor"] == "bad id\n" {
		t.Errorf("an invalid visitor id was used: %v", c)
	}
}

func TestTokenVisitor(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	p := &TokenProxy{Now: func() time.Time { return now }}
	v, exp, ok := TokenVisitor(p.Stamp("v1"))
	if !ok || v != "v1" || !exp.Equal(now.Add(DefaultTokenTTL)) {
		t.Errorf("TokenVisitor(stamped) = %q, %v, %v", v, exp, ok)
	}
	for _, tok := range []string{"", "plain-token", "a.b.c", "a.!!!.c"} {
		if _, _, ok := TokenVisitor(tok); ok {
			t.Errorf("TokenVisitor(%q) ok, want not a JWT", tok)
		}
	}
}

// The demo Space reads the join's token as ZeroGPU does: an expired JWT
// fails the job with ZeroGPU's own error, and a refreshed token keeps its
// visitor's quota.
func TestExpiredAndRefreshedTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step, QuotaSeconds: 3})
		p := &TokenProxy{TTL: time.Minute}
		token := p.Stamp("visitor-a")
		h.join("e1", 0, []any{"fresh", 2, 8, 8}, "X-IP-Token", token)
		if ms := h.open("e1").until(kindCompleted, ""); ms[len(ms)-1].fields["success"] != true {
			t.Fatalf("job with a fresh token: %s", ms[len(ms)-1].raw)
		}
		time.Sleep(time.Minute)
		h.join("e2", 0, []any{"stale", 1, 8, 8}, "X-IP-Token", token)
		ms := h.open("e2").until(kindCompleted, "")
		want := `"output":{"error":"Expired ZeroGPU proxy token","duration":10,"visible":true,"title":"ZeroGPU client error"},"success":false,"title":"ZeroGPU client error"`
		if got := ms[len(ms)-1].raw; !strings.Contains(got, want) {
			t.Errorf("job with an expired token: %s, want %s", got, want)
		}
		if j := h.journalOf("stale"); j != "started" {
			t.Errorf("journal of the expired job = %q, want started only (no quota spent)", j)
		}
		// The refreshed token is the same visitor: 1 of its 3 s is left.
		h.join("e3", 0, []any{"refreshed", 2, 8, 8}, "X-IP-Token", p.Stamp("visitor-a"))
		ms = h.open("e3").until(kindCompleted, "")
		if got := ms[len(ms)-1].raw; !strings.Contains(got, "(2s requested vs. 1s left)") {
			t.Errorf("refreshed token's job: %s, want the visitor's quota", got)
		}
		// Another visitor, and a token that is not a JWT, have their own.
		for i, tok := range []string{p.Stamp("visitor-b"), "plain-token"} {
			h.join("e4", 0, []any{"other", 2, 8, 8}, "X-IP-Token", tok)
			if ms := h.open("e4").until(kindCompleted, ""); ms[len(ms)-1].fields["success"] != true {
				t.Errorf("token %d: %s", i, ms[len(ms)-1].raw)
			}
		}
	})
}
