package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/demospace"
)

// serveConfig is the command line of "serve": the harness relay.
type serveConfig struct {
	demo         bool   // the "demo" subcommand: the demo Space alone
	upstream     string // serve: a relay in front of this URL, not of an embedded demo Space
	listen       string
	pprof        string
	concurrency  int
	maxQueue     int
	stepDelay    time.Duration
	quota        int
	stamp        bool
	fileBytes    int64
	maxSessions  int
	maxPerToken  int
	maxJobs      int
	pingInterval time.Duration
	logLevel     slog.Level
}

// parseServeFlags reads the flags of "serve" or, with demo set, of "demo".
func parseServeFlags(args []string, demo bool, stderr io.Writer) (serveConfig, error) {
	c := serveConfig{demo: demo}
	var level string
	name, listen := "serve", "127.0.0.1:7860"
	if demo {
		name, listen = "demo", "127.0.0.1:0"
	}
	fs := flag.NewFlagSet("spacerelay-load "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", listen, "address of the relay, or of the demo Space (loopback only)")
	fs.StringVar(&c.upstream, "upstream", "", "serve: the upstream's URL (loopback only), e.g. a \"demo\"; empty: an embedded demo Space")
	fs.StringVar(&c.pprof, "pprof", "127.0.0.1:0", "address of the net/http/pprof listener (loopback only); empty: none")
	fs.IntVar(&c.concurrency, "concurrency", 1, "jobs the demo Space runs at once")
	fs.IntVar(&c.maxQueue, "max-queue", 10000, "jobs the demo Space lets wait")
	fs.DurationVar(&c.stepDelay, "step-delay", 100*time.Millisecond, "time of one step of the demo Space")
	fs.IntVar(&c.quota, "quota", 300, "each token's demo quota in seconds (refilled every 5 min)")
	fs.BoolVar(&c.stamp, "stamp", false, "stamp progress events (see the package doc)")
	fs.Int64Var(&c.fileBytes, "file-bytes", 0, "serve every output file as this many stamped random bytes; 0: the real images")
	fs.IntVar(&c.maxSessions, "max-sessions", 100000, "the relay's --max-sessions")
	fs.IntVar(&c.maxPerToken, "max-sessions-per-token", 4, "the relay's --max-sessions-per-token")
	fs.IntVar(&c.maxJobs, "max-jobs", 2, "the relay's --max-jobs")
	fs.DurationVar(&c.pingInterval, "ping-interval", 30*time.Second, "the relay's --ping-interval")
	fs.StringVar(&level, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		return c, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	for name, addr := range map[string]string{"--listen": c.listen, "--pprof": c.pprof} {
		if host, _, err := net.SplitHostPort(addr); addr != "" && (err != nil || !isLoopbackHost(host)) {
			return c, usageError{fmt.Errorf("%s: %q must be a loopback host:port", name, addr)}
		}
	}
	if c.upstream != "" {
		if err := checkURL("--upstream", c.upstream, "http"); err != nil {
			return c, err
		}
	}
	if c.fileBytes != 0 && c.fileBytes < 16 {
		return c, usageError{errors.New("--file-bytes: at least 16")}
	}
	return c, nil
}

// ready is the line serve (or demo) prints when it is ready.
type ready struct {
	URL      string `json:"url,omitempty"`
	Metrics  string `json:"metrics,omitempty"`
	Pprof    string `json:"pprof,omitempty"`
	Upstream string `json:"upstream"`
	PID      int    `json:"pid"`
}

// serve runs the harness relay (or, for "demo", the demo Space alone)
// until ctx is done.
func serve(ctx context.Context, cfg serveConfig, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	if cfg.demo {
		return serveDemo(ctx, cfg, stdout)
	}
	demoURL, stopDemo, err := upstreamFor(cfg)
	if err != nil {
		return err
	}
	defer stopDemo()
	up, err := upstream.New(upstream.Config{Target: demoURL})
	if err != nil {
		return err
	}
	defer up.CloseIdleConnections()
	srv := newRelay(cfg, up, logger)
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv.Start()
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	errc := make(chan error, 2)
	go func() { errc <- httpSrv.Serve(ln) }()
	r := ready{URL: "ws://" + ln.Addr().String() + "/v1/ws", Metrics: "http://" + ln.Addr().String() + "/metrics",
		Upstream: demoURL, PID: os.Getpid()}
	if cfg.pprof != "" {
		stopPprof, addr, err := servePprof(cfg.pprof, errc)
		if err != nil {
			httpSrv.Close()
			return err
		}
		defer stopPprof()
		r.Pprof = "http://" + addr
	}
	if err := waitReady(ctx, "http://"+ln.Addr().String()); err != nil {
		httpSrv.Close()
		return err
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(stdout, "%s\n", b)
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, httpSrv.Shutdown(sctx), srv.Shutdown(sctx))
}

// upstreamFor returns the relay's upstream: --upstream, or an embedded
// demo Space until stop.
func upstreamFor(cfg serveConfig) (target string, stop func(), err error) {
	if cfg.upstream != "" {
		return cfg.upstream, func() {}, nil
	}
	return startDemo(cfg, "127.0.0.1:0")
}

// servePprof serves net/http/pprof and /debug/free on addr; Serve's end
// goes to errc.
func servePprof(addr string, errc chan<- error) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("pprof listen: %w", err)
	}
	srv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- srv.Serve(ln) }()
	return func() { srv.Close() }, ln.Addr().String(), nil
}

// serveDemo serves the demo Space alone until ctx is done.
func serveDemo(ctx context.Context, cfg serveConfig, stdout io.Writer) error {
	u, stop, err := startDemo(cfg, cfg.listen)
	if err != nil {
		return err
	}
	defer stop()
	b, _ := json.Marshal(ready{Upstream: u, PID: os.Getpid()})
	fmt.Fprintf(stdout, "%s\n", b)
	<-ctx.Done()
	return nil
}

// startDemo serves the demo Space on addr, wrapped as cfg says.
func startDemo(cfg serveConfig, addr string) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("demo space: %w", err)
	}
	space := demospace.New(demospace.Config{StepDelay: cfg.stepDelay, QuotaSeconds: cfg.quota,
		QuotaRefill: 5 * time.Minute, Concurrency: cfg.concurrency, MaxQueue: cfg.maxQueue})
	var h http.Handler = space
	if cfg.stamp {
		h = stampSSE(h)
	}
	if cfg.fileBytes > 0 {
		h = newStampedFiles(h, cfg.fileBytes)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) // returns when srv is closed
	return "http://" + ln.Addr().String(), func() {
		srv.Close()
		space.Close()
	}, nil
}

// newRelay builds the relay as cmd/spacerelay's newServer does.
func newRelay(cfg serveConfig, up *upstream.Client, logger *slog.Logger) *relay.Server {
	var u session.Upstream = session.ClientUpstream(up)
	if cfg.stamp {
		u = stampUpstream{u}
	}
	return &relay.Server{
		Upstream:            u,
		API:                 up.API,
		Logger:              logger,
		TokenOptional:       true,
		MetricsPublic:       true, // loopback only: the harness reads /metrics on the main port
		MaxSessions:         cfg.maxSessions,
		MaxSessionsPerToken: cfg.maxPerToken,
		MaxJobs:             cfg.maxJobs,
		PingInterval:        cfg.pingInterval,
	}
}

// waitReady waits until the relay at base knows the upstream's API.
func waitReady(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the relay did not become ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/free", func(w http.ResponseWriter, r *http.Request) {
		debug.FreeOSMemory() // a GC, then every free page back to the OS
		io.WriteString(w, "ok\n")
	})
	return mux
}
