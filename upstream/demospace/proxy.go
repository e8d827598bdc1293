package demospace

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// TokenProxy is an http.Handler that stands where Hugging Face's Spaces
// proxy stands, in front of a relay running on the demo Space: it strips
// any X-IP-Token the client sent, identifies the visitor, and stamps a
// fresh JWT X-IP-Token on every request it forwards to Next (WebSocket
// upgrades and token refreshes included), so that tokens expire and are
// refreshed locally as they are on Hugging Face.
//
// A visitor is known by a cookie the proxy sets on first sight, or, when
// VisitorHeader is set, by that request header (for test clients that keep
// no cookies). Each token is signed with HS256 under a key made at random
// once per process, and carries the claims iat, exp (iat + TTL), visitor
// (stable for the visitor) and jti (unique per token).
type TokenProxy struct {
	// Next receives every request, with the stamped token. Required.
	Next http.Handler

	// TTL is how long a stamped token lives. Zero means 2 minutes.
	TTL time.Duration

	// Header is the header that carries the token. Empty means X-IP-Token.
	Header string

	// VisitorHeader, if set, names a request header whose value chooses
	// the visitor (a test's simulated visitor). It is never forwarded.
	// Empty means visitors are known by the cookie only.
	VisitorHeader string

	// Now is the clock that stamps iat and exp. Nil means time.Now.
	Now func() time.Time
}

// Defaults of TokenProxy and the cookie it sets.
const (
	DefaultTokenTTL    = 2 * time.Minute
	VisitorCookie      = "spacerelay-demo-visitor"
	defaultTokenHeader = "X-IP-Token"
	visitorCookieAge   = 30 * 24 * time.Hour
)

// validVisitor is what a visitor id from a cookie or header may look like.
var validVisitor = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// proxyKey is the process's signing key, made on first use.
var proxyKey = sync.OnceValue(func() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return key
})

func (p *TokenProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	visitor, isNew := p.visitor(r)
	if isNew {
		http.SetCookie(w, &http.Cookie{Name: VisitorCookie, Value: visitor, Path: "/",
			MaxAge: int(visitorCookieAge / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	out := r.Clone(r.Context())
	header := p.Header
	if header == "" {
		header = defaultTokenHeader
	}
	out.Header.Del(header)
	if p.VisitorHeader != "" {
		out.Header.Del(p.VisitorHeader)
	}
	out.Header.Set(header, p.Stamp(visitor))
	p.Next.ServeHTTP(w, out)
}

// visitor returns the request's visitor id, and whether it is new (no
// valid cookie or header named one).
func (p *TokenProxy) visitor(r *http.Request) (string, bool) {
	if p.VisitorHeader != "" {
		if v := r.Header.Get(p.VisitorHeader); validVisitor.MatchString(v) {
			return v, false
		}
	}
	if c, err := r.Cookie(VisitorCookie); err == nil && validVisitor.MatchString(c.Value) {
		return c.Value, false
	}
	return randomHex(16), true
}

// Stamp returns a fresh token for visitor, as the proxy stamps it.
func (p *TokenProxy) Stamp(visitor string) string {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	iat := now()
	claims := object{{"iat", iat.Unix()}, {"exp", iat.Add(ttl).Unix()},
		{"visitor", visitor}, {"jti", randomHex(8)}}
	return signJWT(claims)
}

// jwtHeader is the encoded JOSE header of every token.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func signJWT(claims object) string {
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(encodeJSON(claims))
	mac := hmac.New(sha256.New, proxyKey())
	mac.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// TokenVisitor reads a token as the demo Space does: the visitor claim and
// the expiry of a JWT (without checking its signature). ok is false when
// the token is not a JWT.
func TokenVisitor(token string) (visitor string, expires time.Time, ok bool) {
	c, ok := jwtClaims(token)
	if !ok {
		return "", time.Time{}, false
	}
	if c.Exp != nil {
		expires = time.Unix(int64(*c.Exp), 0)
	}
	return c.Visitor, expires, true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
