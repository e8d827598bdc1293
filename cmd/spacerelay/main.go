// Command spacerelay lets JavaScript frontends use a Gradio app, a Hugging
// Face ZeroGPU Space among them, on behalf of their own visitors: each
// browser tab opens a WebSocket, and the relay keeps one upstream session
// bound to the visitor's X-IP-Token for exactly as long as the socket
// lives.
//
// Every flag has an environment variable SPACERELAY_<NAME> (upper case,
// dashes as underscores); the flag wins. HF_TOKEN, for a private Space,
// comes from the environment only. With no --upstream the relay serves an
// embedded demo Space. Run "spacerelay --help" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/demospace"
	"github.com/spacerelay/spacerelay/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spacerelay:", err)
	}
	os.Exit(exitCode(err))
}

// A usageError is a bad flag or value: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// config is the parsed command line and environment.
type config struct {
	listen          string
	metricsListen   string // "" means no metrics listener
	metricsPublic   bool
	static          string // "" means the demo page
	spa             bool
	upstream        string // "" means the embedded demo Space
	hubURL          string
	hfToken         string
	tokenHeader     string
	tokenOptional   bool
	origins         []string
	maxSessions     int
	maxPerToken     int
	maxJobs         int
	maxMessageBytes int64
	maxFileBytes    int64
	maxJobBytes     int64
	maxUploadBytes  int64
	maxSessionUp    int64
	uploadChunk     int64
	fileMemory      int64
	refreshMargin   time.Duration
	demoTokenTTL    time.Duration // 0: no demo tokens
	instance        string
	writeTimeout    time.Duration
	pingInterval    time.Duration // negative: no pings
	shutdownGrace   time.Duration
	defaultEndpoint string
	logLevel        slog.Level
	logJSON         bool
	healthcheck     bool // --healthcheck: ask a running relay, then exit
}

// The kinds of flag values, for --help.
const (
	kindText     = "text"
	kindNumber   = "number"   // a positive integer
	kindSize     = "size"     // bytes: 65536, 64KiB, 20MiB, 1GiB
	kindDuration = "duration" // 10s, 1m30s
	kindList     = "list"     // comma-separated
	kindOnOff    = "on/off"   // --name alone means on
)

// flags lists every flag with its kind, default and help.
var flags = []struct{ name, kind, def, usage string }{
	{"listen", kindText, ":7860", "address to listen on"},
	{"upstream", kindText, "", "the Gradio app: a URL or a Space id owner/name (default: the embedded demo Space)"},
	{"token-header", kindText, relay.DefaultTokenHeader, "header of the upgrade request that carries the visitor's token"},
	{"token-policy", kindText, "", "require or optional: refuse sockets without a token, or admit them (default: require with --upstream, optional with the demo)"},
	{"allowed-origins", kindList, "", "other sites whose pages may connect and import /spacerelay.js: each a host, with its port if not the default (app.example.com, localhost:5173), or scheme://host[:port] for that scheme only (https://app.example.com); * as in Go's path.Match (*.example.com)"},
	{"static", kindText, "", "directory of your own built frontend, served at / in place of the demo page (the relay's own routes keep their meaning)"},
	{"spa", kindOnOff, "off", "with --static: answer paths that are no file with index.html, for a single-page app's routes"},
	{"max-sessions", kindNumber, strconv.Itoa(relay.DefaultMaxSessions), "most sessions open at once"},
	{"max-sessions-per-token", kindNumber, strconv.Itoa(relay.DefaultMaxPerToken), "most sessions open at once per visitor token"},
	{"max-jobs", kindNumber, strconv.Itoa(session.DefaultMaxJobs), "most unfinished jobs per session"},
	{"max-message-bytes", kindSize, sizeText(session.DefaultMaxMessageBytes), "largest message a browser may send"},
	{"max-file-bytes", kindSize, sizeText(session.DefaultMaxFileBytes), "largest file relayed to a browser"},
	{"max-job-bytes", kindSize, sizeText(session.DefaultMaxJobBytes), "most file bytes one job may hold in memory"},
	{"max-file-memory", kindSize, sizeText(relay.DefaultFileMemory), "most file bytes all sessions together hold in memory (results on their way to browsers, upload chunks on their way upstream)"},
	{"max-upload-bytes", kindSize, sizeText(session.DefaultMaxUploadBytes), "largest file a page may upload"},
	{"max-session-upload-bytes", kindSize, sizeText(session.DefaultMaxSessionUploadBytes), "most bytes one session may upload in all"},
	{"upload-chunk-bytes", kindSize, sizeText(session.DefaultUploadChunkBytes), "largest binary frame of an upload"},
	{"token-refresh-margin", kindDuration, session.DefaultTokenRefreshMargin.String(), "how long before a visitor token's exp the page is told to refresh it"},
	{"demo-token-ttl", kindDuration, "2m", "with the embedded demo Space: each visitor gets a JWT token of this lifetime, stamped afresh on every request as Hugging Face's proxy does; off: no tokens"},
	{"write-timeout", kindDuration, session.DefaultWriteTimeout.String(), "time a browser has to take a message before it is disconnected"},
	{"ping-interval", kindDuration, session.DefaultPingInterval.String(), "time between WebSocket pings; 0 or off: no pings"},
	{"shutdown-grace", kindDuration, relay.DefaultShutdownGrace.String(), "time sessions get to close on SIGINT or SIGTERM"},
	{"default-endpoint", kindText, "", "endpoint of a submit that names none (default: the app's only endpoint)"},
	{"instance", kindText, "", "this relay's name among several behind one load balancer: session ids become NAME.uuid, for routing /v1/sessions/NAME.… to it (letters, digits, -)"},
	{"metrics-listen", kindText, "", "address of a listener of its own for GET /metrics, e.g. 127.0.0.1:9090 (default: none)"},
	{"metrics-public", kindOnOff, "off", "serve GET /metrics on --listen too; on a Hugging Face Space that port is public"},
	{"log-level", kindText, "info", "debug, info, warn or error"},
	{"log-format", kindText, "text", "text or json"},
	{"hub-url", kindText, "https://huggingface.co", "the Hugging Face Hub, to resolve a Space id"},
}

// sizeText writes n bytes as a size flag reads it: in the largest of
// GiB, MiB and KiB that divides it, else in bytes.
func sizeText(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// envName is the environment variable of flag name.
func envName(name string) string {
	return "SPACERELAY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// printUsage writes --help: each flag in the --name form, with its kind,
// environment variable, default and help.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: spacerelay [flags]

Every flag may be given as its environment variable instead (the flag wins).
HF_TOKEN, the token for a private upstream Space, comes from the environment
only. An on/off flag alone means on: --spa, or --spa=off. --version prints
the version. --healthcheck asks the relay that listens on --listen's port
for GET /healthz and exits 0 if it answers 200, else 1: a container's
HEALTHCHECK, where there is no curl.

`)
	for _, f := range flags {
		def := ""
		if f.def != "" {
			def = ", default " + f.def
		}
		fmt.Fprintf(w, "  --%s %s  (%s%s)\n        %s\n", f.name, f.kind, envName(f.name), def, f.usage)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.healthcheck {
		return checkHealth(ctx, cfg.listen)
	}
	logger := newLogger(cfg, stderr)
	site, err := openSite(cfg.static, logger)
	if err != nil {
		return usageError{fmt.Errorf("--static: %w", err)}
	}
	if site != nil {
		defer site.Close()
	}

	target, stopDemo, err := startUpstream(cfg)
	if err != nil {
		return err
	}
	defer stopDemo()
	up, err := upstream.New(upstream.Config{Target: target, HubURL: cfg.hubURL, HFToken: cfg.hfToken})
	if err != nil {
		return usageError{fmt.Errorf("--upstream: %w", err)}
	}
	defer up.CloseIdleConnections()
	ln, mln, err := listen(cfg)
	if err != nil {
		return err
	}
	logger.Info("spacerelay listening", "addr", ln.Addr().String(), "open", openURL(ln.Addr()),
		"upstream", upstreamName(cfg), "metrics", metricsWhere(cfg, mln))
	srv := newServer(cfg, up, site, logger)
	return serve(ctx, ln, mln, srv, front(cfg, srv), logger, cfg.shutdownGrace)
}

// front is what serves the listener: the relay, and on the embedded demo
// (unless --demo-token-ttl is off) a proxy in front of it that stamps
// each visitor's requests with a short-lived JWT X-IP-Token, as Hugging
// Face's Spaces proxy does, so that tokens expire and refresh as on a Space.
func front(cfg config, srv *relay.Server) http.Handler {
	if cfg.upstream != "" || cfg.demoTokenTTL <= 0 {
		return srv
	}
	return &demospace.TokenProxy{Next: srv, TTL: cfg.demoTokenTTL, Header: cfg.tokenHeader}
}

// listen opens --listen and, if set, --metrics-listen (else mln is nil).
func listen(cfg config) (ln, mln net.Listener, err error) {
	ln, err = net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.metricsListen == "" {
		return ln, nil, nil
	}
	mln, err = net.Listen("tcp", cfg.metricsListen)
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("metrics listen: %w", err)
	}
	return ln, mln, nil
}

// metricsWhere says where GET /metrics is served, for the log.
func metricsWhere(cfg config, mln net.Listener) string {
	var where []string
	if mln != nil {
		where = append(where, "http://"+mln.Addr().String()+"/metrics")
	}
	if cfg.metricsPublic {
		where = append(where, "/metrics on the main port")
	}
	if where == nil {
		return "off (--metrics-listen to serve them)"
	}
	return strings.Join(where, " and ")
}

// openSite opens --static's directory as an os.Root, so that no symlink
// leads out of it; "" means none (nil).
func openSite(dir string, logger *slog.Logger) (*os.Root, error) {
	if dir == "" {
		return nil, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	if _, err := root.Stat("index.html"); err != nil {
		logger.Warn("the --static directory has no index.html: GET / answers 404", "dir", dir)
	}
	return root, nil
}

// serve serves srv on ln (and its metrics on mln, if not nil) until ctx
// is done, then shuts down within grace: the HTTP server first (no new
// requests), then the relay (every session ends and is waited for), then
// the metrics listener, which shows the shutdown until the end.
func serve(ctx context.Context, ln, mln net.Listener, srv *relay.Server, front http.Handler, logger *slog.Logger, grace time.Duration) error {
	srv.Start()
	errc := make(chan error, 2)
	httpSrv := startHTTP(ln, front, logger, errc)
	metricsSrv := &http.Server{}
	if mln != nil {
		metricsSrv = startHTTP(mln, srv.MetricsHandler(), logger, errc)
	}

	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		logger.Info("shutting down", "grace", grace.String())
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if serr := errors.Join(httpSrv.Shutdown(sctx), srv.Shutdown(sctx), metricsSrv.Shutdown(sctx)); serr != nil {
		err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
	}
	return err
}

// startHTTP serves h on ln in the background; Serve's error goes to errc.
func startHTTP(ln net.Listener, h http.Handler, logger *slog.Logger, errc chan<- error) *http.Server {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return hs
}

func newServer(cfg config, up *upstream.Client, site *os.Root, logger *slog.Logger) *relay.Server {
	srv := &relay.Server{
		Upstream:              session.ClientUpstream(up),
		API:                   up.API,
		Rediscover:            up.Rediscover,
		UpstreamConns:         up.OpenConns,
		Static:                web.FS,
		SPA:                   cfg.spa,
		MetricsPublic:         cfg.metricsPublic,
		Logger:                logger,
		OriginPatterns:        cfg.origins,
		TokenHeader:           cfg.tokenHeader,
		TokenOptional:         cfg.tokenOptional,
		MaxSessions:           cfg.maxSessions,
		MaxSessionsPerToken:   cfg.maxPerToken,
		DefaultEndpoint:       cfg.defaultEndpoint,
		MaxJobs:               cfg.maxJobs,
		MaxMessageBytes:       cfg.maxMessageBytes,
		MaxFileBytes:          cfg.maxFileBytes,
		MaxJobBytes:           cfg.maxJobBytes,
		FileMemory:            cfg.fileMemory,
		MaxUploadBytes:        cfg.maxUploadBytes,
		MaxSessionUploadBytes: cfg.maxSessionUp,
		UploadChunkBytes:      cfg.uploadChunk,
		TokenRefreshMargin:    cfg.refreshMargin,
		Version:               web.Version,
		Instance:              cfg.instance,
		WriteTimeout:          cfg.writeTimeout,
		PingInterval:          cfg.pingInterval,
	}
	if site != nil {
		srv.Site = site.FS()
	}
	return srv
}

// startUpstream returns the upstream's target. Without --upstream it
// serves the demo Space on a loopback port of its own, until stop.
func startUpstream(cfg config) (target string, stop func(), err error) {
	if cfg.upstream != "" {
		return cfg.upstream, func() {}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("demo space: %w", err)
	}
	// A shared, refilling quota: a demo without tokens keeps working, and
	// a job of over 300 steps shows ZeroGPU's quota error. It takes the
	// files the relay takes (its max_file_size would lower the relay's).
	space := demospace.New(demospace.Config{QuotaSeconds: 300, QuotaRefill: 5 * time.Minute,
		MaxUploadBytes: cfg.maxUploadBytes})
	srv := &http.Server{Handler: space, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) // returns when srv is closed
	return "http://" + ln.Addr().String(), func() {
		srv.Close()
		space.Close()
	}, nil
}

// healthTimeout bounds --healthcheck's request.
const healthTimeout = 5 * time.Second

// checkHealth is --healthcheck: GET /healthz of the relay that listens on
// listen, from this machine. nil means it answered 200.
func checkHealth(ctx context.Context, listen string) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	u := "http://" + localAddr(listen) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	// No proxy from the environment, and no connection left open.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", u, resp.Status)
	}
	return nil
}

// localAddr is the address that reaches a listener on listen from this
// machine: the loopback address when it listens on every interface.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openURL is the address to open in a browser for a listener on addr.
func openURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func upstreamName(cfg config) string {
	if cfg.upstream == "" {
		return "embedded demo Space"
	}
	return cfg.upstream
}

// parseConfig reads args, then the environment for each flag not given,
// then the defaults. Any error is a usageError naming the flag or the
// environment variable, except flag.ErrHelp (the usage is then on stderr).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("spacerelay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range flags {
		fs.Var(&flagValue{s: f.def, onOff: f.kind == kindOnOff}, f.name, f.usage)
	}
	version := fs.Bool("version", false, "print the version and exit")
	healthcheck := fs.Bool("healthcheck", false, "check the relay on --listen's port and exit")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		printUsage(stderr)
		return config{}, err
	} else if err != nil {
		return config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *version {
		fmt.Fprintln(stderr, "spacerelay", web.Version)
		return config{}, flag.ErrHelp // nothing more to do
	}
	p := &parser{fs: fs, getenv: getenv, set: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { p.set[f.Name] = true })
	cfg := p.config()
	if p.err != nil {
		return config{}, usageError{p.err}
	}
	cfg.hfToken = getenv("HF_TOKEN")
	cfg.healthcheck = *healthcheck
	return cfg, nil
}

// A flagValue is a flag's text, read by a parser. An on/off flag is a
// boolean flag to package flag: --spa alone sets it to "true".
type flagValue struct {
	s     string
	onOff bool
}

func (v *flagValue) String() string     { return v.s }
func (v *flagValue) Set(s string) error { v.s = s; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.onOff }

// A parser reads flag values, keeping the first error.
type parser struct {
	fs     *flag.FlagSet
	getenv func(string) string
	set    map[string]bool // flags given on the command line
	err    error
}

func (p *parser) config() config {
	cfg := config{
		listen:          p.str("listen"),
		metricsListen:   p.addr("metrics-listen"),
		metricsPublic:   p.onOff("metrics-public"),
		static:          p.str("static"),
		spa:             p.onOff("spa"),
		upstream:        p.upstream(),
		hubURL:          p.httpURL("hub-url"),
		tokenHeader:     p.headerName("token-header"),
		origins:         p.origins("allowed-origins"),
		maxSessions:     p.positive("max-sessions"),
		maxPerToken:     p.positive("max-sessions-per-token"),
		maxJobs:         p.positive("max-jobs"),
		maxMessageBytes: p.bytes("max-message-bytes"),
		maxFileBytes:    p.bytes("max-file-bytes"),
		maxJobBytes:     p.bytes("max-job-bytes"),
		maxUploadBytes:  p.bytes("max-upload-bytes"),
		maxSessionUp:    p.bytes("max-session-upload-bytes"),
		uploadChunk:     p.bytes("upload-chunk-bytes"),
		fileMemory:      p.bytes("max-file-memory"),
		refreshMargin:   p.duration("token-refresh-margin"),
		demoTokenTTL:    p.durationOrOff("demo-token-ttl"),
		instance:        p.instance("instance"),
		writeTimeout:    p.duration("write-timeout"),
		pingInterval:    p.durationOrOff("ping-interval"),
		shutdownGrace:   p.duration("shutdown-grace"),
		defaultEndpoint: p.endpoint("default-endpoint"),
		logJSON:         p.oneOf("log-format", "text", "json") == "json",
	}
	cfg.logLevel = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError}[p.oneOf("log-level", "debug", "info", "warn", "error")]
	policy := p.oneOf("token-policy", "", "require", "optional")
	cfg.tokenOptional = policy == "optional" || policy == "" && cfg.upstream == ""
	if cfg.spa && cfg.static == "" {
		_, label := p.value("spa")
		p.fail(label, "needs --static")
	}
	return cfg
}

// value returns flag name's value (the flag, else its environment
// variable, else its default) and what to call it in an error.
func (p *parser) value(name string) (v, label string) {
	f := p.fs.Lookup(name)
	if p.set[name] {
		return f.Value.String(), "--" + name
	}
	env := envName(name)
	if v := p.getenv(env); v != "" {
		return v, env
	}
	return f.DefValue, "--" + name
}

// fail records the first error, about the value of flag name.
func (p *parser) fail(label, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: "+format, append([]any{label}, args...)...)
	}
}

func (p *parser) str(name string) string {
	v, _ := p.value(name)
	return strings.TrimSpace(v)
}

func (p *parser) oneOf(name string, options ...string) string {
	v, label := p.value(name)
	v = strings.ToLower(strings.TrimSpace(v))
	for _, o := range options {
		if v == o {
			return v
		}
	}
	named := slices.DeleteFunc(slices.Clone(options), func(o string) bool { return o == "" })
	p.fail(label, "must be one of %s, got %q", strings.Join(named, ", "), v)
	return ""
}

func (p *parser) positive(name string) int {
	v, label := p.value(name)
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		p.fail(label, "must be a positive integer, got %q", v)
	}
	return n
}

// bytes reads a positive byte count: an integer, optionally followed by
// KiB, MiB or GiB.
func (p *parser) bytes(name string) int64 {
	v, label := p.value(name)
	s, unit := strings.TrimSpace(v), int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			s, unit = strings.TrimSpace(rest), u
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/unit {
		p.fail(label, "must be a positive number of bytes (e.g. 65536 or 20MiB), got %q", v)
	}
	return n * unit
}

func (p *parser) duration(name string) time.Duration {
	v, label := p.value(name)
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		p.fail(label, "must be a positive duration (e.g. 10s), got %q", v)
	}
	return d
}

// durationOrOff reads a positive duration, or 0 or off for none: -1.
func (p *parser) durationOrOff(name string) time.Duration {
	v, label := p.value(name)
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "off" || v == "0" {
		return -1
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(label, "must be a positive duration (e.g. 30s), or 0 or off, got %q", v)
	}
	return d
}

// onOff reads an on/off flag: on, true, yes, 1, or off, false, no, 0.
func (p *parser) onOff(name string) bool {
	v, label := p.value(name)
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1":
		return true
	case "off", "false", "no", "0":
		return false
	}
	p.fail(label, "must be on or off, got %q", v)
	return false
}

// addr reads a listen address host:port, or "" for none.
func (p *parser) addr(name string) string {
	v, label := p.value(name)
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		p.fail(label, "must be an address host:port (e.g. 127.0.0.1:9090), got %q", v)
	}
	return v
}

// upstream reads --upstream; upstream.New checks it later.
func (p *parser) upstream() string {
	v, label := p.value("upstream")
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if _, err := upstream.New(upstream.Config{Target: v}); err != nil {
		p.fail(label, "must be a URL or a Space id owner/name, got %q", v)
	}
	return v
}

func (p *parser) httpURL(name string) string {
	v, label := p.value(name)
	u, err := url.Parse(strings.TrimSpace(v))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(label, "must be an http or https URL, got %q", v)
		return ""
	}
	return strings.TrimSpace(v)
}

func (p *parser) headerName(name string) string {
	v, label := p.value(name)
	v = strings.TrimSpace(v)
	if v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) {
		p.fail(label, "must be an HTTP header name, got %q", v)
	}
	return v
}

func (p *parser) origins(name string) []string {
	v, label := p.value(name)
	var out []string
	for o := range strings.SplitSeq(v, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if _, err := path.Match(o, ""); err != nil {
			p.fail(label, "bad pattern %q: %v", o, err)
		}
		host := o
		if _, after, ok := strings.Cut(o, "://"); ok {
			host = after
		}
		if host == "" || strings.Contains(host, "/") {
			p.fail(label, "bad pattern %q: a host or scheme://host[:port], without a path", o)
		}
		out = append(out, o)
	}
	return out
}

var instanceName = regexp.MustCompile(`^[A-Za-z0-9-]{1,32}$`)

// instance reads --instance: letters, digits and dashes, or nothing.
func (p *parser) instance(name string) string {
	v, label := p.value(name)
	v = strings.TrimSpace(v)
	if v != "" && !instanceName.MatchString(v) {
		p.fail(label, "must be 1 to 32 letters, digits or dashes, got %q", v)
	}
	return v
}

// endpoint reads an endpoint name, adding the leading slash if missing.
func (p *parser) endpoint(name string) string {
	v := p.str(name)
	if v != "" && !strings.HasPrefix(v, "/") {
		v = "/" + v
	}
	return v
}
