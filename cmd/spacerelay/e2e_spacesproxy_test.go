package main

// A stand-in for Hugging Face's Spaces proxy, for tests only (issue 15,
// item 4), and a visitor that goes through it as a browser on the Space's
// page does (web/spacerelay.js): it keeps the proxy's cookie, and refreshes
// its token on the route of hello when told token_expiring.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream/demospace"
)

// spacesProxy is an HTTP server in front of a relay that does what Hugging
// Face's proxy does in front of a Docker Space: every request it forwards
// (the page, the WebSocket upgrade, the token refresh) carries a fresh JWT
// X-IP-Token of its visitor, whom it knows by a cookie, and never a token
// the client sent. The relay sees the Space's own Host.
type spacesProxy struct {
	URL string
	log *syncBuffer // the reverse proxy's errors

	mu sync.Mutex
	// Guarded by mu.
	stamped  map[string][]string // by visitor: the tokens forwarded, oldest first
	problems []string            // requests that reached the relay with other than one token
}

// startSpacesProxy serves a spacesProxy in front of relayURL, stamping
// tokens that live ttl, until the test ends.
func startSpacesProxy(t *testing.T, relayURL string, ttl time.Duration) *spacesProxy {
	t.Helper()
	target, err := url.Parse(relayURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &spacesProxy{log: new(syncBuffer), stamped: map[string][]string{}}
	tr := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the relay sees the Space's host, as on hf.space
			pr.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  log.New(p.log, "spaces proxy: ", 0),
	}
	// The stamping is the demo's (--demo-token-ttl), wrapped around a
	// reverse proxy: one implementation of what Hugging Face's proxy does.
	srv := httptest.NewServer(&demospace.TokenProxy{Next: p.record(rp), TTL: ttl, Header: stampHeader})
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("spaces proxy log:\n%s", p.log)
		}
	})
	p.URL = srv.URL
	return p
}

// record notes the token of each request the stamper hands on, by visitor.
func (p *spacesProxy) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		toks := r.Header.Values(stampHeader)
		visitor, ok := "", len(toks) == 1
		if ok {
			visitor, _, ok = demospace.TokenVisitor(toks[0])
		}
		p.mu.Lock()
		if ok {
			p.stamped[visitor] = append(p.stamped[visitor], toks[0])
		} else {
			p.problems = append(p.problems, fmt.Sprintf("%s %s with %d %s headers", r.Method, r.URL.Path, len(toks), stampHeader))
		}
		p.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// latest is the last token forwarded for visitor, "" if none.
func (p *spacesProxy) latest(visitor string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	toks := p.stamped[visitor]
	if len(toks) == 0 {
		return ""
	}
	return toks[len(toks)-1]
}

// tokens returns every token forwarded, by visitor, and the problems.
func (p *spacesProxy) tokens() (map[string][]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.stamped))
	for v, toks := range p.stamped {
		out[v] = append([]string(nil), toks...)
	}
	return out, append([]string(nil), p.problems...)
}

// The header the proxy stamps, and the cookie it knows visitors by.
const (
	stampHeader   = "X-IP-Token"
	visitorCookie = demospace.VisitorCookie
)

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// A spaceVisitor is a browser tab on the Space's page, through the proxy:
// its own cookie jar, its socket, and the refresh route of its hello. It
// sends a token of its own on every request, which the proxy must drop.
type spaceVisitor struct {
	site    string // the proxy's URL
	http    *http.Client
	ws      *wsClient
	id      string // its visitor id, from the proxy's cookie
	forged  string // the token it tries to send itself
	refresh struct{ URL, Key string }
	expires time.Time // by the relay's reckoning: hello's or the last refresh's expires_in
}

// openSpace loads the page, then opens the socket, as a browser does.
func openSpace(ctx context.Context, site string) (*spaceVisitor, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	v := &spaceVisitor{site: site, forged: "forged-" + randomID(),
		http: &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}}
	if _, err := v.get(ctx, "/"); err != nil {
		return nil, err
	}
	u, _ := url.Parse(site)
	for _, c := range jar.Cookies(u) {
		if c.Name == visitorCookie {
			v.id = c.Value
		}
	}
	if v.id == "" {
		return nil, errors.New("the proxy set no visitor cookie")
	}
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(site, "http")+"/v1/ws", &websocket.DialOptions{
		HTTPClient: v.http, HTTPHeader: v.header(), Subprotocols: []string{"spacerelay.v1"},
	})
	if err != nil {
		return nil, fmt.Errorf("upgrade through the proxy: %w", err)
	}
	v.ws = &wsClient{conn: conn, ctx: ctx}
	return v, v.readHello()
}

// header is what the page's requests carry: its Origin, and a token of
// its own that the proxy must not let through.
func (v *spaceVisitor) header() http.Header {
	return http.Header{"Origin": {v.site}, stampHeader: {v.forged}}
}

func (v *spaceVisitor) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.site+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header = v.header()
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

func (v *spaceVisitor) readHello() error {
	m, err := v.ws.next()
	if err != nil || m.Type != "hello" {
		return fmt.Errorf("hello: %s, %v", m, err)
	}
	var h struct {
		Token struct {
			Present   bool
			ExpiresIn *int64 `json:"expires_in"`
			Refresh   *struct{ URL, Key string }
		}
	}
	if err := json.Unmarshal(m.raw, &h); err != nil {
		return err
	}
	if !h.Token.Present || h.Token.ExpiresIn == nil || h.Token.Refresh == nil {
		return fmt.Errorf("hello %s: want a token with expires_in and refresh", m.raw)
	}
	v.ws.hello, v.refresh = m, *h.Token.Refresh
	v.expires = time.Now().Add(time.Duration(*h.Token.ExpiresIn) * time.Second)
	return nil
}

// expiring reports whether the relay said token_expiring (taking the
// message), or the token has expired by the relay's reckoning: then the
// page refreshes before its next submit, as spacerelay.js does.
func (v *spaceVisitor) expiring() bool {
	for i, m := range v.ws.backlog {
		if m.Type == "token_expiring" {
			v.ws.backlog = append(v.ws.backlog[:i:i], v.ws.backlog[i+1:]...)
			return true
		}
	}
	return !time.Now().Before(v.expires)
}

// refreshToken posts to hello's refresh route through the proxy, which
// stamps the fresh token on the request.
func (v *spaceVisitor) refreshToken(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.site+v.refresh.URL, nil)
	if err != nil {
		return err
	}
	req.Header = v.header()
	req.Header.Set("Authorization", "Bearer "+v.refresh.Key)
	resp, err := v.http.Do(req)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var answer struct {
		ExpiresIn *int64 `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &answer) != nil || answer.ExpiresIn == nil {
		return fmt.Errorf("refresh: %s %s", resp.Status, bytes.TrimSpace(body))
	}
	v.expires = time.Now().Add(time.Duration(*answer.ExpiresIn) * time.Second)
	return nil
}

// generate runs a /generate of prompt to its end and returns the digest
// of the token the Space saw (its info output).
func (v *spaceVisitor) generate(prompt string) (string, error) {
	id := "job-" + randomID()
	if err := v.ws.submit(id, "/generate", map[string]any{"prompt": prompt, "steps": 3}); err != nil {
		return "", err
	}
	msgs, err := v.ws.job(id)
	if err != nil {
		return "", err
	}
	if _, err := checkJob(msgs); err != nil {
		return "", fmt.Errorf("job %s: %v\n%s", prompt, err, dump(msgs))
	}
	last := msgs[len(msgs)-1]
	if last.Type != "result" {
		return "", fmt.Errorf("job %s ended with %s", prompt, last)
	}
	info, err := generateInfo(last)
	return info.Token, err
}
