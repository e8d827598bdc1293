package relay_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/upstream"
)

// TestHTTPRefusals checks the refusals websocket.Accept decides, with our
// JSON bodies (PROTOCOL.md section 1): a malformed upgrade and a forbidden
// Origin. Each case also lacks a token, which a socket would be refused
// for later: the library's refusal comes first.
func TestHTTPRefusals(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{OriginPatterns: []string{"*.example.com"}})
	waitReady(t, base)
	tests := []struct {
		name   string
		header http.Header // on top of a valid upgrade
		raw    bool        // a plain GET, no upgrade
		method string
		status int
		code   string
	}{
		{name: "not an upgrade", raw: true, status: 426, code: "upgrade_required"},
		{name: "upgrade to something else", header: http.Header{"Upgrade": {"h2c"}}, status: 426, code: "upgrade_required"},
		{name: "no Connection: upgrade", header: http.Header{"Connection": {"keep-alive"}}, status: 426, code: "upgrade_required"},
		{name: "old version", header: http.Header{"Sec-Websocket-Version": {"8"}}, status: 400, code: "bad_request"},
		{name: "bad key", header: http.Header{"Sec-Websocket-Key": {"short"}}, status: 400, code: "bad_request"},
		{name: "two keys", header: http.Header{"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="}}, status: 400, code: "bad_request"},
		{name: "HEAD", method: http.MethodHead, status: 405, code: "method_not_allowed"},
		{name: "POST", method: http.MethodPost, status: 405, code: "method_not_allowed"},
		{name: "foreign origin", header: http.Header{"Origin": {"https://evil.test"}}, status: 403, code: "forbidden_origin"},
		{name: "origin without host", header: http.Header{"Origin": {"null"}}, status: 403, code: "forbidden_origin"},
		{name: "origin like a pattern's suffix", header: http.Header{"Origin": {"https://example.com.evil.test"}}, status: 403, code: "forbidden_origin"},
	}
	t.Run("each", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				var r *response
				switch {
				case tt.raw:
					r = get(t, base+"/v1/ws")
				case tt.method != "":
					r = upgradeMethod(t, tt.method, base+"/v1/ws", tt.header)
				default:
					r = upgrade(t, base, tt.header)
				}
				if r.StatusCode != tt.status {
					t.Errorf("status = %d, want %d (body %s)", r.StatusCode, tt.status, r.body)
				}
				if tt.method == http.MethodHead {
					return // no body
				}
				wantRefusal(t, r, tt.status, tt.code, "")
				if _, msg := errorBody(t, r); msg == "" || strings.Contains(msg, "WebSocket protocol violation") {
					t.Errorf("message %q, want ours", msg)
				}
			})
		}
	})
	for _, code := range []string{"upgrade_required", "bad_request", "method_not_allowed", "forbidden_origin"} {
		if got := metric(t, base, `spacerelay_handshakes_refused_total{reason="`+code+`"}`); got < 1 {
			t.Errorf("refused{%s} = %v, want counted", code, got)
		}
	}
}

// TestSocketRefusals checks each refusal a page can read (PROTOCOL.md
// section 1): the socket is accepted and closed at once with 4000 + the
// status and the code as its reason, nothing else is sent, no session
// starts (no hello, nothing upstream), and the refusal is counted.
func TestSocketRefusals(t *testing.T) {
	t.Parallel()
	never := func(ctx context.Context) (*upstream.API, error) {
		<-ctx.Done() // until Shutdown
		return nil, ctx.Err()
	}
	tests := []struct {
		name   string
		srv    *relay.Server
		setup  func(t *testing.T, s *relay.Server, base string)
		token  string
		header http.Header
		code   websocket.StatusCode
		reason string
	}{
		{name: "no token", code: 4401, reason: "missing_token"},
		{name: "blank token", header: http.Header{"X-Ip-Token": {"  "}}, code: 4401, reason: "missing_token"},
		{name: "token in another header", header: http.Header{"Authorization": {"Bearer t"}}, code: 4401, reason: "missing_token"},
		{name: "token in the default header, another configured", srv: &relay.Server{TokenHeader: "X-Visitor"}, token: "t", code: 4401, reason: "missing_token"},
		{
			name: "this token's session limit", srv: &relay.Server{MaxSessionsPerToken: 2}, token: "a",
			setup: func(t *testing.T, s *relay.Server, base string) {
				dial(t, base, "a", nil)
				dial(t, base, "a", nil)
			},
			code: 4429, reason: "too_many_sessions retry_after=10",
		},
		{
			name: "the relay's session limit", srv: &relay.Server{MaxSessions: 2, TokenOptional: true}, token: "b",
			setup: func(t *testing.T, s *relay.Server, base string) {
				dial(t, base, "a", nil)
				dial(t, base, "", nil)
			},
			code: 4503, reason: "over_capacity retry_after=10",
		},
		{
			name: "draining", token: "t",
			setup: func(t *testing.T, s *relay.Server, base string) {
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown() = %v", err)
				}
			},
			code: 4503, reason: "shutting_down retry_after=5",
		},
		{name: "the upstream's API not known", srv: &relay.Server{API: never}, token: "t", code: 4503, reason: "upstream_unavailable retry_after=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{}
			s := tt.srv
			if s == nil {
				s = &relay.Server{}
			}
			s.Upstream = up
			base := start(t, s)
			if s.API == nil {
				waitReady(t, base)
			}
			if tt.setup != nil {
				tt.setup(t, s, base)
			}
			opened, upstreams := metric(t, base, "spacerelay_sessions_opened_total"), len(up.opened())
			wantClosed(t, base, tt.token, &websocket.DialOptions{HTTPHeader: tt.header.Clone()}, tt.code, tt.reason)
			code, _, _ := strings.Cut(tt.reason, " ")
			eventually(t, "the refusal counted", func() bool {
				return metric(t, base, `spacerelay_handshakes_refused_total{reason="`+code+`"}`) == 1
			})
			if got := metric(t, base, "spacerelay_sessions_opened_total"); got != opened {
				t.Errorf("sessions_opened_total = %v after the refusal, want %v: no session", got, opened)
			}
			if n := len(up.opened()); n != upstreams {
				t.Errorf("%d upstream sessions opened, want %d: none for the refusal", n, upstreams)
			}
		})
	}
}

// TestRefusedSocketSilentClient checks that a refused socket whose client
// never answers the close frame is cut off after refusalCloseWait (1 s),
// not after the library's 5 s wait.
func TestRefusedSocketSilentClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &relay.Server{Upstream: &fakeUpstream{}, API: readyAPI, Logger: slog.New(slog.DiscardHandler)}
		ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
		hs := &http.Server{Handler: s}
		go hs.Serve(ln)
		synctest.Wait() // discovery done

		srvEnd, cli := net.Pipe()
		ln.conns <- srvEnd
		req := upgradeRequest(t, "http://relay.test/v1/ws", nil) // no token
		go req.Write(cli)
		br := bufio.NewReader(cli)
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v, want 101", resp, err)
		}
		if code, reason := readClose(t, br); code != 4401 || reason != "missing_token" {
			t.Errorf("close %d %q, want 4401 missing_token", code, reason)
		}
		closed := make(chan error, 1)
		go func() { // never answers; sees the relay's end of the connection close
			_, err := br.ReadByte()
			closed <- err
		}()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		select {
		case err := <-closed:
			if err != io.EOF {
				t.Errorf("read after the close frame = %v, want EOF", err)
			}
		default:
			t.Error("the relay still holds a refused socket 1.5 s after its close frame")
		}
		cli.Close()
		close(ln.done)
		hs.Close()
		s.Shutdown(context.Background())
	})
}

// pipeListener hands the http.Server in-memory connections, for synctest.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// readClose reads one server frame, which must be a close frame, and
// returns its code and reason.
func readClose(t *testing.T, r io.Reader) (int, string) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h[0] != 0x88 || h[1]&0x80 != 0 || h[1] < 2 || h[1] > 125 {
		t.Fatalf("frame header % x, want an unmasked close frame", h)
	}
	p := make([]byte, h[1])
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("read close payload: %v", err)
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}

func TestTokenNotFromQueryOrCookie(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{})
	waitReady(t, base)
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"X-IP-Token=t; token=t"}}}
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/v1/ws?X-IP-Token=t&token=t", opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	_, _, err = c.Read(context.Background())
	if got := websocket.CloseStatus(err); got != 4401 {
		t.Errorf("close %v (%v), want 4401 missing_token", got, err)
	}
}

// TestOrigins checks the origin rule, with its scheme patterns, on the
// upgrade and on the module's CORS: one rule, the same answers.
func TestOrigins(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{
		OriginPatterns: []string{"*.example.com", "http://localhost:*", "https://app.example.org"},
		Static:         testStatic,
	})
	waitReady(t, base)
	tests := []struct {
		origin  string
		allowed bool
	}{
		{base, true},                            // the request's own host
		{"https://app.example.com", true},       // a host pattern: any scheme
		{"http://app.example.com", true},        // a host pattern: any scheme
		{"http://localhost:5173", true},         // a scheme://host pattern
		{"https://localhost:5173", false},       // another scheme
		{"https://app.example.org", true},       // a scheme://host pattern
		{"http://app.example.org", false},       // another scheme
		{"https://app.example.org:8443", false}, // another port
		{"https://example.com.evil.test", false},
		{"https://evil.test", false},
		{"null", false},
	}
	for _, tt := range tests {
		h := http.Header{"Origin": {tt.origin}, "X-Ip-Token": {"t"}}
		if tt.allowed {
			dial(t, base, "t", &websocket.DialOptions{HTTPHeader: h}).Close(websocket.StatusNormalClosure, "")
		} else {
			wantRefusal(t, upgrade(t, base, h), 403, "forbidden_origin", "")
		}
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			for _, path := range []string{"/spacerelay.js", "/spacerelay.d.ts"} {
				r := request(t, method, base+path, http.Header{"Origin": {tt.origin}, "Access-Control-Request-Method": {"GET"}})
				got := r.Header.Get("Access-Control-Allow-Origin")
				if want := map[bool]string{true: tt.origin}[tt.allowed]; got != want {
					t.Errorf("%s %s from %s: Access-Control-Allow-Origin %q, want %q", method, path, tt.origin, got, want)
				}
				if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
					t.Errorf("%s %s: Vary %q, want Origin", method, path, r.Header.Values("Vary"))
				}
				if want := map[string]int{http.MethodGet: 200, http.MethodOptions: 204}[method]; r.StatusCode != want {
					t.Errorf("%s %s = %d, want %d", method, path, r.StatusCode, want)
				}
			}
		}
	}
	r := get(t, base+"/spacerelay.js") // not a browser's cross-origin request
	if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("GET without Origin: Access-Control-Allow-Origin %q, want none", got)
	}
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

// Issue 9: the token is read from the configured header, and goes
// upstream as X-IP-Token (the header ZeroGPU reads), never under the
// inbound name.
func TestTokenGoesUpstream(t *testing.T) {
	t.Parallel()
	up := &fakeUpstream{}
	base := start(t, &relay.Server{Upstream: up, TokenHeader: "X-Visitor"})
	waitReady(t, base)
	c := dial(t, base, "", &websocket.DialOptions{HTTPHeader: http.Header{"X-Visitor": {" tok "}}})
	runJob(t, c)
	c.Close(websocket.StatusNormalClosure, "")
	if h := up.opened(); len(h) != 1 || h[0].Get("X-IP-Token") != "tok" || h[0].Get("X-Visitor") != "" {
		t.Errorf("Open headers = %v, want X-IP-Token: tok and nothing else", h)
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

// TestPlacesBack checks that a closed session gives its places back: the
// visitor's and the relay's.
func TestPlacesBack(t *testing.T) {
	t.Parallel()
	base := start(t, &relay.Server{MaxSessionsPerToken: 2, MaxSessions: 3})
	waitReady(t, base)
	a1 := dial(t, base, "a", nil)
	dial(t, base, "a", nil)
	wantClosed(t, base, "a", nil, 4429, "too_many_sessions retry_after=10")
	dial(t, base, "b", nil) // another visitor
	wantClosed(t, base, "c", nil, 4503, "over_capacity retry_after=10")

	a1.Close(websocket.StatusNormalClosure, "")
	eventually(t, "a's place back", func() bool { return metric(t, base, "spacerelay_sessions_open") == 2 })
	dial(t, base, "a", nil)
}
