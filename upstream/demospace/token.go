package demospace

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// caller is who a job runs for, read from its join's X-IP-Token the way
// ZeroGPU reads it: the token's digest (what the journal and /whoami
// show), and, when the token is a JWT, its expiry and visitor claim. The
// Space does not check the signature: it trusts the proxy in front of it,
// as a Space trusts Hugging Face's.
type caller struct {
	digest  string    // tokenDigest of the raw token, "" for none
	quota   string    // whose quota the job spends: "visitor:<claim>" for a JWT, else the digest
	expires time.Time // the JWT's exp; zero when the token has none
}

func newCaller(token string) caller {
	c := caller{digest: tokenDigest(token)}
	c.quota = c.digest
	claims, ok := jwtClaims(token)
	if !ok {
		return c
	}
	if claims.Visitor != "" {
		c.quota = "visitor:" + claims.Visitor
	}
	if claims.Exp != nil {
		c.expires = time.Unix(int64(*claims.Exp), 0)
	}
	return c
}

// tokenClaims are the JWT claims the Space reads.
type tokenClaims struct {
	Exp     *float64 `json:"exp"`
	Visitor string   `json:"visitor"`
}

// jwtClaims decodes the payload of a JWT (three base64url parts, the
// middle one a JSON object). It does not verify the signature.
func jwtClaims(token string) (tokenClaims, bool) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(token) > 8<<10 {
		return c, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, false
	}
	return c, true
}

// expiredToken is ZeroGPU's error for a proxy token past its exp (the
// scheduler's 401), as the spaces package raises it.
var expiredToken = &appError{message: "Expired ZeroGPU proxy token", title: "ZeroGPU client error"}

// takeGPU is the ZeroGPU step of a job that needs a GPU: a JWT token whose
// exp has passed fails the job; otherwise seconds of the caller's quota
// are spent, or the job fails with the quota error (journaled as quota).
func (s *Space) takeGPU(c *call, seconds int, prompt string) error {
	if t := c.ev.caller.expires; !t.IsZero() && !s.now().Before(t) {
		return expiredToken
	}
	if left, wait, ok := s.quota.take(c.ev.caller.quota, seconds); !ok {
		c.journal("quota", prompt)
		return quotaError(seconds, left, wait)
	}
	return nil
}
