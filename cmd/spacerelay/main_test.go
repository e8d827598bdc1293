package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// env is a fake environment for run and parseConfig.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, env{}.get, nil)
	if err != nil {
		t.Fatalf("parseConfig() = %v", err)
	}
	want := config{
		listen: ":7860", hubURL: "https://huggingface.co", tokenHeader: "X-IP-Token",
		tokenOptional: true, // with the demo Space
		maxSessions:   10000, maxPerToken: 4, maxJobs: 2,
		maxMessageBytes: 65536, maxFileBytes: 20 << 20, maxJobBytes: 64 << 20,
		maxUploadBytes: 50 << 20, maxSessionUp: 200 << 20, uploadChunk: 256 << 10, fileMemory: 256 << 20,
		refreshMargin: 30 * time.Second, demoTokenTTL: 2 * time.Minute,
		writeTimeout: 10 * time.Second, pingInterval: 30 * time.Second, shutdownGrace: 10 * time.Second,
		logLevel: slog.LevelInfo,
	}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Errorf("parseConfig() = %+v, want %+v", cfg, want)
	}
}

// TestParseConfigSources checks the environment variable of every flag,
// and that the flag wins.
func TestParseConfigSources(t *testing.T) {
	t.Parallel()
	e := env{
		"SPACERELAY_LISTEN": "127.0.0.1:9000", "SPACERELAY_UPSTREAM": "owner/space",
		"SPACERELAY_TOKEN_HEADER": "X-Visitor", "SPACERELAY_ALLOWED_ORIGINS": " a.example , *.b.example ,",
		"SPACERELAY_MAX_SESSIONS": "7", "SPACERELAY_MAX_SESSIONS_PER_TOKEN": "3", "SPACERELAY_MAX_JOBS": "5",
		"SPACERELAY_MAX_MESSAGE_BYTES": "1KiB", "SPACERELAY_MAX_FILE_BYTES": "3MiB", "SPACERELAY_MAX_JOB_BYTES": "1GiB",
		"SPACERELAY_WRITE_TIMEOUT": "3s", "SPACERELAY_PING_INTERVAL": "1m", "SPACERELAY_SHUTDOWN_GRACE": "2s",
		"SPACERELAY_DEFAULT_ENDPOINT": "generate", "SPACERELAY_LOG_LEVEL": "DEBUG", "SPACERELAY_LOG_FORMAT": "json",
		"SPACERELAY_HUB_URL": "http://hub.test", "HF_TOKEN": "hf_secret",
		"SPACERELAY_METRICS_LISTEN": "127.0.0.1:9090", "SPACERELAY_METRICS_PUBLIC": "on",
		"SPACERELAY_STATIC": "dist", "SPACERELAY_SPA": "1",
		"SPACERELAY_MAX_UPLOAD_BYTES": "2MiB", "SPACERELAY_MAX_SESSION_UPLOAD_BYTES": "8MiB",
		"SPACERELAY_UPLOAD_CHUNK_BYTES": "64KiB", "SPACERELAY_MAX_FILE_MEMORY": "1GiB",
		"SPACERELAY_TOKEN_REFRESH_MARGIN": "45s",
	}
	cfg, err := parseConfig(nil, e.get, nil)
	if err != nil {
		t.Fatalf("parseConfig() = %v", err)
	}
	want := config{
		listen: "127.0.0.1:9000", metricsListen: "127.0.0.1:9090", metricsPublic: true, static: "dist", spa: true,
		upstream: "owner/space", hubURL: "http://hub.test", hfToken: "hf_secret",
		tokenHeader: "X-Visitor", tokenOptional: false, // a real upstream
		origins:     []string{"a.example", "*.b.example"},
		maxSessions: 7, maxPerToken: 3, maxJobs: 5,
		maxMessageBytes: 1024, maxFileBytes: 3 << 20, maxJobBytes: 1 << 30,
		maxUploadBytes: 2 << 20, maxSessionUp: 8 << 20, uploadChunk: 64 << 10, fileMemory: 1 << 30,
		refreshMargin: 45 * time.Second, demoTokenTTL: 2 * time.Minute,
		writeTimeout: 3 * time.Second, pingInterval: time.Minute, shutdownGrace: 2 * time.Second,
		defaultEndpoint: "/generate", logLevel: slog.LevelDebug, logJSON: true,
	}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Errorf("parseConfig(env) = %+v, want %+v", cfg, want)
	}

	cfg, err = parseConfig([]string{"--max-jobs=9", "-token-policy", "optional", "--upstream", "http://127.0.0.1:1"}, e.get, nil)
	if err != nil {
		t.Fatalf("parseConfig() = %v", err)
	}
	if cfg.maxJobs != 9 || !cfg.tokenOptional || cfg.upstream != "http://127.0.0.1:1" || cfg.maxSessions != 7 {
		t.Errorf("flags over env: %+v", cfg)
	}
}

func TestTokenPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args         []string
		wantOptional bool
	}{
		{nil, true},
		{[]string{"--token-policy", "require"}, false},
		{[]string{"--upstream", "owner/space"}, false},
		{[]string{"--upstream", "owner/space", "--token-policy", "optional"}, true},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(tt.args, env{}.get, nil)
		if err != nil || cfg.tokenOptional != tt.wantOptional {
			t.Errorf("parseConfig(%q): tokenOptional %v, %v; want %v", tt.args, cfg.tokenOptional, err, tt.wantOptional)
		}
	}
}

// TestBadValues checks that a bad flag or value is one line naming it,
// with exit code 2, and that run writes nothing else.
func TestBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  env
		want string
	}{
		{[]string{"--max-jobs", "x"}, nil, `--max-jobs: must be a positive integer, got "x"`},
		{[]string{"--max-sessions=0"}, nil, `--max-sessions: must be a positive integer, got "0"`},
		{nil, env{"SPACERELAY_MAX_SESSIONS_PER_TOKEN": "-1"}, `SPACERELAY_MAX_SESSIONS_PER_TOKEN: must be a positive integer, got "-1"`},
		{[]string{"--max-file-bytes", "1.5MiB"}, nil, `--max-file-bytes: must be a positive number of bytes`},
		{[]string{"--max-message-bytes", "0"}, nil, `--max-message-bytes: must be a positive number of bytes`},
		{nil, env{"SPACERELAY_MAX_JOB_BYTES": "lots"}, `SPACERELAY_MAX_JOB_BYTES: must be a positive number of bytes`},
		{[]string{"--write-timeout", "10"}, nil, `--write-timeout: must be a positive duration (e.g. 10s), got "10"`},
		{[]string{"--ping-interval", "-1s"}, nil, `--ping-interval: must be a positive duration (e.g. 30s), or 0 or off, got "-1s"`},
		{nil, env{"SPACERELAY_PING_INTERVAL": "never"}, `SPACERELAY_PING_INTERVAL: must be a positive duration (e.g. 30s), or 0 or off`},
		{[]string{"--spa"}, nil, `--spa: needs --static`},
		{[]string{"--spa=maybe", "--static", "dist"}, nil, `--spa: must be on or off, got "maybe"`},
		{nil, env{"SPACERELAY_METRICS_PUBLIC": "sometimes"}, `SPACERELAY_METRICS_PUBLIC: must be on or off, got "sometimes"`},
		{[]string{"--metrics-listen", "9090"}, nil, `--metrics-listen: must be an address host:port (e.g. 127.0.0.1:9090), got "9090"`},
		{[]string{"--static", "/no/such/dir"}, nil, `--static: `},
		{[]string{"--allowed-origins", "https://app.example.com/"}, nil, `--allowed-origins: bad pattern "https://app.example.com/": a host or scheme://host[:port], without a path`},
		{[]string{"--allowed-origins", "https://"}, nil, `--allowed-origins: bad pattern "https://"`},
		{nil, env{"SPACERELAY_SHUTDOWN_GRACE": "soon"}, `SPACERELAY_SHUTDOWN_GRACE: must be a positive duration`},
		{[]string{"--log-level", "verbose"}, nil, `--log-level: must be one of debug, info, warn, error, got "verbose"`},
		{[]string{"--log-format", "xml"}, nil, `--log-format: must be one of text, json, got "xml"`},
		{[]string{"--token-policy", "maybe"}, nil, `--token-policy: must be one of require, optional, got "maybe"`},
		{[]string{"--upstream", "not a space"}, nil, `--upstream: must be a URL or a Space id owner/name, got "not a space"`},
		{nil, env{"SPACERELAY_UPSTREAM": "ftp://x"}, `SPACERELAY_UPSTREAM: must be a URL or a Space id owner/name`},
		{[]string{"--hub-url", "huggingface.co"}, nil, `--hub-url: must be an http or https URL, got "huggingface.co"`},
		{[]string{"--token-header", "X IP Token"}, nil, `--token-header: must be an HTTP header name, got "X IP Token"`},
		{[]string{"--allowed-origins", "a.example,[b"}, nil, `--allowed-origins: bad pattern "[b"`},
		{[]string{"--nope"}, nil, `flag provided but not defined: -nope`},
		{[]string{"--listen"}, nil, `flag needs an argument: -listen`},
		{[]string{"serve"}, nil, `unexpected argument "serve"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tt.args, tt.env.get, &out)
		if err == nil {
			t.Errorf("run(%q, %v) = nil, want an error", tt.args, tt.env)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("run(%q, %v) = %q, want one line starting %q", tt.args, tt.env, msg, tt.want)
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("run(%q, %v): exit code %d, want 2", tt.args, tt.env, code)
		}
		if out.Len() > 0 {
			t.Errorf("run(%q, %v) wrote %q, want nothing", tt.args, tt.env, out.String())
		}
	}
}

// TestHelp checks that --help shows every flag in the --name form, with
// its kind and its environment variable (issue 14.6).
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{arg}, env{}.get, &out)
		if err != nil || exitCode(err) != 0 {
			t.Errorf("run(%s) = %v, want nil", arg, err)
		}
		help := out.String()
		for _, f := range flags {
			want := "--" + f.name + " " + f.kind + "  (SPACERELAY_" + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
			if !strings.Contains(help, want) {
				t.Errorf("usage lacks %q:\n%s", want, help)
			}
		}
		for _, want := range []string{"HF_TOKEN", "(SPACERELAY_MAX_FILE_BYTES, default 20MiB)", "--max-file-bytes size", "--ping-interval duration",
			"--max-jobs number", "--allowed-origins list", "--spa on/off", "scheme://host[:port]"} {
			if !strings.Contains(help, want) {
				t.Errorf("usage lacks %q:\n%s", want, help)
			}
		}
		if strings.Contains(help, "\n  -") && !strings.Contains(help, "\n  --") {
			t.Errorf("usage shows -name flags:\n%s", help)
		}
	}
}

// TestOnOffAndOff checks the on/off flags and --ping-interval off.
func TestOnOffAndOff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  env
		want func(config) bool
	}{
		{[]string{"--metrics-public"}, nil, func(c config) bool { return c.metricsPublic }},
		{[]string{"--metrics-public=off"}, env{"SPACERELAY_METRICS_PUBLIC": "on"}, func(c config) bool { return !c.metricsPublic }},
		{[]string{"--static", "dist", "--spa"}, nil, func(c config) bool { return c.spa && c.static == "dist" }},
		{nil, env{"SPACERELAY_STATIC": "dist", "SPACERELAY_SPA": "true"}, func(c config) bool { return c.spa }},
		{[]string{"--ping-interval", "0"}, nil, func(c config) bool { return c.pingInterval < 0 }},
		{[]string{"--ping-interval=off"}, nil, func(c config) bool { return c.pingInterval < 0 }},
		{nil, env{"SPACERELAY_PING_INTERVAL": "OFF"}, func(c config) bool { return c.pingInterval < 0 }},
		{[]string{"--ping-interval", "5s"}, nil, func(c config) bool { return c.pingInterval == 5*time.Second }},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(tt.args, tt.env.get, nil)
		if err != nil || !tt.want(cfg) {
			t.Errorf("parseConfig(%q, %v) = %+v, %v", tt.args, tt.env, cfg, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]int{
		nil:                                0,
		errors.New("listen: in use"):       1,
		usageError{errors.New("--x: bad")}: 2,
		fmt.Errorf("wrapped: %w", usageError{errors.New("bad")}): 2,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestOpenURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"[::]:7860":      "http://localhost:7860/",
		"0.0.0.0:80":     "http://localhost:80/",
		"127.0.0.1:8080": "http://127.0.0.1:8080/",
		"[::1]:8080":     "http://[::1]:8080/",
	}
	for addr, want := range tests {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := openURL(a); got != want {
			t.Errorf("openURL(%s) = %q, want %q", addr, got, want)
		}
	}
}

// output is run's stderr, safe to read while run writes.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// startRun runs run in the background on a free loopback port and
// returns the URL it logs, its output, and a function that stops it
// (as SIGTERM would) and returns its error.
func startRun(t *testing.T, args []string, e env) (url string, out *output, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &output{}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), e.get, out) }()
	stop = func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(20 * time.Second):
			t.Fatalf("run did not return after cancel; output:\n%s", out)
			return nil
		}
	}
	openRE := regexp.MustCompile(`"?open"?[=:]"?(http://[^\s"]+)/`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := openRE.FindStringSubmatch(out.String()); m != nil {
			return m[1], out, stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("no open= line; output:\n%s", out)
		}
	}
}

var testClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := testClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunDemo runs the relay on its embedded demo Space: ready, a session
// opens without a token, and cancelling run's ctx closes it with 1001.
func TestRunDemo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	url, out, stop := startRun(t, nil, env{"HF_TOKEN": "hf_demo_secret"})
	for deadline := time.Now().Add(10 * time.Second); status(t, url+"/readyz") != http.StatusOK; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("not ready; output:\n%s", out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v1/ws",
		&websocket.DialOptions{HTTPClient: testClient})
	if err != nil {
		stop()
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if _, b, err := c.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"hello"`)) {
		t.Errorf("first message %s, %v; want hello", b, err)
	}
	closed := make(chan websocket.StatusCode)
	go func() {
		_, _, err := c.Read(ctx)
		closed <- websocket.CloseStatus(err)
	}()
	if err := stop(); err != nil {
		t.Errorf("run() = %v after cancel, want nil", err)
	}
	if code := <-closed; code != websocket.StatusGoingAway {
		t.Errorf("close code %v, want 1001", code)
	}
	if strings.Contains(out.String(), "hf_demo_secret") {
		t.Errorf("output holds HF_TOKEN:\n%s", out)
	}
}

// TestRunHFToken checks that HF_TOKEN goes to the Hub, and nowhere in the
// output, even in the discovery failures.
func TestRunHFToken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	got := make(chan string, 10)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path + " " + r.Header.Get("Authorization")
		http.Error(w, "no such space (hf_hub_secret)", http.StatusNotFound)
	}))
	defer hub.Close()
	_, out, stop := startRun(t, []string{"--upstream", "owner/space", "--hub-url", hub.URL, "--log-format", "json"},
		env{"HF_TOKEN": "hf_hub_secret"})
	if g := <-got; g != "/api/spaces/owner/space/host Bearer hf_hub_secret" {
		t.Errorf("Hub request %q, want the Space's host with HF_TOKEN", g)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "upstream discovery failed"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no discovery failure logged:\n%s", out)
			break
		}
	}
	if err := stop(); err != nil {
		t.Errorf("run() = %v after cancel, want nil", err)
	}
	if strings.Contains(out.String(), "hf_hub_secret") {
		t.Errorf("output holds HF_TOKEN:\n%s", out)
	}
	hub.CloseClientConnections()
}

// TestRunMetricsAndStatic runs the relay with --metrics-listen and
// --static: the metrics on their own listener and not on the main port
// (issue 9.10), and the directory's frontend at / in place of the demo
// page, with the relay's own routes kept (issue 15.3).
func TestRunMetricsAndStatic(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<title>my app</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	url, out, stop := startRun(t, []string{"--metrics-listen", "127.0.0.1:0", "--static", dir, "--spa"}, env{})
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("run() = %v after cancel, want nil", err)
		}
	}()
	m := regexp.MustCompile(`metrics="?(http://[^\s"]+/metrics)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no metrics= address in the log:\n%s", out)
	}
	if got := status(t, m[1]); got != http.StatusOK {
		t.Errorf("GET %s = %d, want 200", m[1], got)
	}
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/spacerelay.js": 200, "/v1/nothing": 404} {
		resp, err := testClient.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode != want:
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		case path == "/metrics" && !strings.Contains(string(body), "my app"):
			t.Errorf("GET /metrics on the main port = %q, want the site's index.html (--spa), not the metrics", body)
		}
	}
	resp, err := testClient.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "my app") {
		t.Errorf("GET / = %q, want the --static directory's index.html", body)
	}
}
