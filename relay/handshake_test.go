package relay_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/upstream"
)

// TestRefusals checks the stateless refusals of PROTOCOL.md section 1,
// and their order: each case also breaks the checks that come later.
func TestRefusals(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{OriginPatterns: []string{"*.example.com"}})
	waitReady(t, base)
	tests := []struct {
		name   string
		header http.Header // on top of a valid upgrade
		raw    bool        // a plain GET, no upgrade
		status int
		code   string
	}{
		{name: "not an upgrade", raw: true, status: 426, code: "upgrade_required"},
		{name: "upgrade to something else", header: http.Header{"Upgrade": {"h2c"}}, status: 426, code: "upgrade_required"},
		{name: "old version", header: http.Header{"Sec-Websocket-Version": {"8"}}, status: 426, code: "upgrade_required"},
		{name: "bad key", header: http.Header{"Sec-Websocket-Key": {"short"}}, status: 400, code: "bad_request"},
		{name: "foreign origin", header: http.Header{"Origin": {"https://evil.test"}}, status: 403, code: "forbidden_origin"},
		{name: "origin without host", header: http.Header{"Origin": {"null"}}, status: 403, code: "forbidden_origin"},
		{name: "origin like a pattern's suffix", header: http.Header{"Origin": {"https://example.com.evil.test"}}, status: 403, code: "forbidden_origin"},
		{name: "no token", status: 401, code: "missing_token"},
		{name: "blank token", header: http.Header{"X-Ip-Token": {"  "}}, status: 401, code: "missing_token"},
		{name: "token in another header", header: http.Header{"Authorization": {"Bearer t"}}, status: 401, code: "missing_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r *response
			if tt.raw {
				r = get(t, base+"/v1/ws")
			} else {
				r = upgrade(t, base, tt.header)
			}
			wantRefusal(t, r, tt.status, tt.code, "")
			if _, msg := errorBody(t, r); msg == "" {
				t.Error("refusal without message")
			}
		})
	}
}

func TestTokenNotFromQueryOrCookie(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{})
	waitReady(t, base)
	r := upgradeURL(t, base+"/v1/ws?X-IP-Token=t&token=t", http.Header{"Cookie": {"X-IP-Token=t; token=t"}})
	wantRefusal(t, r, 401, "missing_token", "")
}

func TestOriginAllowed(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{OriginPatterns: []string{"*.example.com", "http://localhost:*"}})
	waitReady(t, base)
	for _, origin := range []string{
		base,                      // the request's own host
		"https://app.example.com", // a host pattern
		"http://localhost:5173",   // a scheme://host pattern
	} {
		c := dial(t, base, "t", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		c.Close(websocket.StatusNormalClosure, "")
	}
	r := upgrade(t, base, http.Header{"Origin": {"https://localhost:5173"}, "X-Ip-Token": {"t"}})
	wantRefusal(t, r, 403, "forbidden_origin", "")
}

func TestTokenOptional(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{}
	base := start(t, &relay.Server{Upstream: up, TokenOptional: true})
	waitReady(t, base)
	c := dial(t, base, "", nil)
	runJob(t, c) // the upstream session opens at the first job
	c.Close(websocket.StatusNormalClosure, "")
	if h := up.opened(); len(h) != 1 || h[0].Get("X-IP-Token") != "" {
		t.Errorf("Open headers = %v, want one without a token", h)
	}
}

func TestTokenGoesUpstream(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{}
	base := start(t, &relay.Server{Upstream: up, TokenHeader: "X-Visitor"})
	waitReady(t, base)
	wantRefusal(t, upgrade(t, base, http.Header{"X-Ip-Token": {"t"}}), 401, "missing_token", "")
	c := dial(t, base, "", &websocket.DialOptions{HTTPHeader: http.Header{"X-Visitor": {" tok "}}})
	runJob(t, c)
	c.Close(websocket.StatusNormalClosure, "")
	if h := up.opened(); len(h) != 1 || h[0].Get("X-Visitor") != "tok" {
		t.Errorf("Open headers = %v, want X-Visitor: tok", h)
	}
}

func TestSubprotocol(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{})
	waitReady(t, base)
	tests := []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{"spacerelay.v1"}, "spacerelay.v1"},
		{[]string{"chat", "spacerelay.v1"}, "spacerelay.v1"},
		{[]string{"spacerelay.v2"}, ""},
	}
	for _, tt := range tests {
		c := dial(t, base, "t", &websocket.DialOptions{Subprotocols: tt.offer})
		if got := c.Subprotocol(); got != tt.want {
			t.Errorf("offered %q: Subprotocol() = %q, want %q", tt.offer, got, tt.want)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

func TestUpstreamUnavailable(t *testing.T) {
	t.Parallel()
	api := func(ctx context.Context) (*upstream.API, error) {
		<-ctx.Done() // until Shutdown
		return nil, ctx.Err()
	}
	base := start(t, &relay.Server{API: api})
	if r := get(t, base+"/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", r.StatusCode)
	}
	wantRefusal(t, upgrade(t, base, http.Header{"X-Ip-Token": {"t"}}), 503, "upstream_unavailable", "5")
}

func TestPerTokenLimit(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{MaxSessionsPerToken: 2})
	waitReady(t, base)
	a1 := dial(t, base, "a", nil)
	dial(t, base, "a", nil)
	r := upgrade(t, base, http.Header{"X-Ip-Token": {"a"}})
	wantRefusal(t, r, 429, "too_many_sessions", "10")
	if strings.Contains(string(r.body), `"a"`) {
		t.Errorf("refusal %s names the token", r.body)
	}
	dial(t, base, "b", nil) // another visitor

	a1.Close(websocket.StatusNormalClosure, "")
	eventually(t, "a's place back", func() bool {
		c, err := tryDial(t, base, "a", nil)
		if err == nil {
			c.CloseNow()
		}
		return err == nil
	})
}

func TestTotalLimit(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{MaxSessions: 2, TokenOptional: true})
	waitReady(t, base)
	dial(t, base, "a", nil)
	c := dial(t, base, "", nil)
	wantRefusal(t, upgrade(t, base, http.Header{"X-Ip-Token": {"b"}}), 503, "over_capacity", "10")
	if got := metric(t, base, `spacerelay_handshakes_refused_total{reason="over_capacity"}`); got != 1 {
		t.Errorf("refused{over_capacity} = %v, want 1", got)
	}
	c.Close(websocket.StatusNormalClosure, "")
	eventually(t, "a place back", func() bool {
		return metric(t, base, "spacerelay_sessions_open") == 1
	})
	dial(t, base, "b", nil)
}
