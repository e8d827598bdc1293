// Package upstream is a client for Gradio apps, Hugging Face Spaces among
// them, over Gradio's HTTP and Server-Sent Events queue protocol.
//
// One Client serves every visitor: it holds the connection pool, the cookie
// jar and the app's API description, fetched once. Each visitor gets a
// Session of their own, with its own session_hash and headers (the
// visitor's X-IP-Token, so that ZeroGPU bills the visitor), and one shared
// queue/data stream for all of the visitor's jobs.
//
// The package knows nothing of WebSockets or browsers. It does no logging
// and no hidden retries; every failure is an *Error with a Code.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Config configures a Client. Only Target is required.
type Config struct {
	// Target is the Gradio app: a URL such as "https://owner-name.hf.space"
	// or "http://127.0.0.1:7860", or a Hugging Face Space id "owner/name",
	// resolved through the Hub.
	Target string

	// HubURL is the Hugging Face Hub used to resolve a Space id.
	// Defaults to "https://huggingface.co".
	HubURL string

	// HFToken, if set, is sent as "X-HF-Authorization: Bearer …" on every
	// request, for private Spaces. The Spaces proxy strips it before the
	// app sees it. It never appears in errors.
	HFToken string

	// HTTP sends every request. Nil means a client made for this job:
	// pooled keep-alive connections, a 10 s connect timeout, a 30 s
	// response-header timeout and no overall timeout, since streams live
	// as long as their jobs. Each Session sends its requests with a copy
	// of it that has a cookie jar of the visitor's own (see NewSession);
	// the Client's own requests (discovery) use its Jar, if any.
	HTTP *http.Client

	// StreamIdleTimeout is how long a queue/data stream may stay silent
	// before it is treated as broken. Gradio sends a heartbeat every 15 s.
	// Zero means 45 s.
	StreamIdleTimeout time.Duration

	// CancelTimeout bounds one POST /cancel. Zero means 10 s.
	CancelTimeout time.Duration

	// MaxEventBytes bounds one Server-Sent Event. Zero means 16 MiB.
	MaxEventBytes int
}

// Client is a Gradio client shared by all visitors. It is safe for
// concurrent use. Make one with New.
type Client struct {
	// Static after New.
	cfg    Config
	http   *http.Client
	space  string   // "owner/name", or "" when Target is a URL
	base   *url.URL // the app root, when Target is a URL
	header http.Header
	conns  *atomic.Int64 // connections open, if the Client dials them itself

	// The API discovered last. Any goroutine reads it (cachedAPI, under
	// mu); only the one discovery at a time that discover lets run
	// (discoverShared) replaces it: the first, then each that finds the
	// app changed.
	discover singleflight.Group
	mu       sync.Mutex // guards api, nothing else
	api      *API       // nil until a discovery succeeds
}

var spaceID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)

// New returns a Client for cfg. It checks cfg but makes no request:
// discovery happens on first use, or with API.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, http: cfg.HTTP}
	switch t := strings.TrimRight(cfg.Target, "/"); {
	case spaceID.MatchString(t):
		c.space = t
	case strings.HasPrefix(t, "http://") || strings.HasPrefix(t, "https://"):
		u, err := url.Parse(t)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("upstream: target %q is not a valid URL", cfg.Target)
		}
		u.RawQuery, u.Fragment = "", ""
		c.base = u
	default:
		return nil, fmt.Errorf("upstream: target %q is neither a URL nor a Space id owner/name", cfg.Target)
	}
	if c.cfg.HubURL == "" {
		c.cfg.HubURL = "https://huggingface.co"
	}
	c.cfg.HubURL = strings.TrimRight(c.cfg.HubURL, "/")
	if c.cfg.StreamIdleTimeout <= 0 {
		c.cfg.StreamIdleTimeout = 45 * time.Second
	}
	if c.cfg.CancelTimeout <= 0 {
		c.cfg.CancelTimeout = 10 * time.Second
	}
	if c.cfg.MaxEventBytes <= 0 {
		c.cfg.MaxEventBytes = 16 << 20
	}
	if c.http == nil {
		c.conns = new(atomic.Int64)
		c.http = newHTTPClient(c.conns)
	}
	hc := *c.http // a copy, to keep credentials off other hosts
	hc.CheckRedirect = keepCredentialsHome(c.http.CheckRedirect)
	c.http = &hc
	c.header = http.Header{"User-Agent": {"spacerelay"}}
	if cfg.HFToken != "" {
		c.header.Set("X-HF-Authorization", "Bearer "+cfg.HFToken)
	}
	return c, nil
}

// credentialHeaders are dropped from a request redirected to another host.
var credentialHeaders = []string{"X-Hf-Authorization", "Authorization", "X-Ip-Token"}

// keepCredentialsHome wraps a redirect policy (nil: Go's default) so that
// the HF token and the visitor's token never follow a redirect to another
// host. Go already drops Authorization and cookies, but not ours.
func keepCredentialsHome(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && req.URL.Host != via[0].URL.Host {
			for _, h := range credentialHeaders {
				req.Header.Del(h)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
}

// OpenConns returns how many connections to the upstream are open, idle
// ones in the pool included; -1 if the Client was given its own
// Config.HTTP.
func (c *Client) OpenConns() int64 {
	if c.conns == nil {
		return -1
	}
	return c.conns.Load()
}

// newHTTPClient returns the default HTTP client. Its jar holds the
// cookies of discovery only: no visitor's cookie is in it. A cookie the
// Space sets for one visitor (replica affinity among them: the replica
// that took a visitor's join must serve the visitor's stream) lives in
// that visitor's Session alone, so no cookie is shared between visitors.
func newHTTPClient(open *atomic.Int64) *http.Client {
	jar, _ := cookiejar.New(nil) // never fails without options
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := dialer.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				open.Add(1)
				return &countedConn{Conn: conn, open: open}, nil
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// countedConn takes itself off the count of open connections when it
// closes.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// request builds a request with the Client's headers plus extra.
func (c *Client) request(ctx context.Context, method, u string, body io.Reader, extra http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("upstream: %s: %w", method, err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	return req, nil
}

// do sends req with the Client's own HTTP client; see send.
func (c *Client) do(req *http.Request, op string) (*http.Response, error) {
	return c.send(c.http, req, op)
}

// send sends req with hc and returns the response if its status is 2xx.
// Any other status is read (a little of it) and returned as an *Error.
func (c *Client) send(hc *http.Client, req *http.Request, op string) (*http.Response, error) {
	resp, err := roundTrip(hc, req, op)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := httpError(op, resp.StatusCode, resp.Header, body)
	redact(e, c.cfg.HFToken, req.Header.Get("X-Ip-Token")) // a server may echo what it got
	return nil, e
}

// roundTrip sends req with hc. A failure to get an answer is the
// context's error if it ended, or CodeUnavailable without the URL.
func roundTrip(hc *http.Client, req *http.Request, op string) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, unavailable(op, errors.Unwrap(err)) // drop url.Error's URL
	}
	return resp, nil
}

// redact removes secrets from an error's texts. An Err that named one is
// replaced by its text redacted, which still matches what the original
// matched under errors.Is.
func redact(e *Error, secrets ...string) {
	for _, s := range secrets {
		if len(s) < 4 {
			continue
		}
		e.Title = strings.ReplaceAll(e.Title, s, "[redacted]")
		e.Message = strings.ReplaceAll(e.Message, s, "[redacted]")
		if e.Err != nil && strings.Contains(e.Err.Error(), s) {
			e.Err = &redacted{text: strings.ReplaceAll(e.Err.Error(), s, "[redacted]"), orig: e.Err}
		}
	}
}

// redacted is an error whose text had a secret taken out. It does not
// unwrap (that would give the secret back), but answers errors.Is as the
// original does.
type redacted struct {
	text string
	orig error
}

func (r *redacted) Error() string        { return r.text }
func (r *redacted) Is(target error) bool { return errors.Is(r.orig, target) }

// maxAnswerBytes bounds a JSON answer of the upstream read whole.
const maxAnswerBytes = 32 << 20

// getJSON GETs u and decodes its JSON body into v.
func (c *Client) getJSON(ctx context.Context, u, op string, v any) error {
	req, err := c.request(ctx, http.MethodGet, u, nil, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, op)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp.Body, op, v)
}

// postJSON POSTs body as JSON to u with hc and decodes the answer into v
// (if not nil).
func (c *Client) postJSON(ctx context.Context, hc *http.Client, u, op string, body any, extra http.Header, v any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", op, err)
	}
	req, err := c.request(ctx, http.MethodPost, u, strings.NewReader(string(b)), extra)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(hc, req, op)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	return decodeBody(resp.Body, op, v)
}

func decodeBody(r io.Reader, op string, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, maxAnswerBytes))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: fmt.Errorf("%s: the answer is not the JSON expected: %w", op, err)}
	}
	return nil
}

// CloseIdleConnections closes the pooled connections that are not in use.
// Sessions keep working; new requests open new connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// staleAfter is how long a session's stream may say nothing before a job
// about to join replaces it rather than wait on it: staleAfter, or the
// stream's idle limit if that is shorter.
func (c *Client) staleAfter() time.Duration { return min(staleAfter, c.cfg.StreamIdleTimeout) }

// cachedAPI returns the API description discovered last, or nil.
func (c *Client) cachedAPI() *API {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.api
}

// cancel asks the upstream to cancel one job, with hc and header (the
// visitor's), bounded in time by CancelTimeout and by ctx. The job's
// completion, if any, comes on the stream; the error says whether the
// upstream took the request.
func (c *Client) cancel(ctx context.Context, hc *http.Client, header http.Header, api *API, hash string, fn int, eventID string) error {
	if api == nil {
		return errors.New("upstream: cancel before discovery")
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CancelTimeout)
	defer cancel()
	body := map[string]any{"session_hash": hash, "fn_index": fn, "event_id": eventID}
	return c.postJSON(ctx, hc, api.BaseURL+api.Prefix+"/cancel", "cancel", body, header, nil)
}
