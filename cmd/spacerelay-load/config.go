package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// config is the load generator's command line.
type config struct {
	mode     string
	url      string
	sessions int
	rate     float64
	parallel int
	jobs     int
	think    time.Duration
	endpoint string
	inputs   json.RawMessage
	hold     time.Duration // negative: until the end of the run
	duration time.Duration
	json     bool
	header   string        // the token header
	tokenExp time.Duration // >0: JWT tokens with an exp this far ahead

	// Measuring modes.
	metricsURL  string
	pprofURL    string
	upstreamURL string
	pid         int
	steps       []int // memory: session counts to measure at
	settle      time.Duration
	profileDir  string
	fileBytes   int64
	spawn       bool
	cpuProfile  string   // this process's CPU profile
	serveArgs   []string // extra flags of a spawned relay
	relayCPUs   string   // a spawned relay runs on these CPUs (taskset -c)
	uploadSink  bool     // upload: the spawned demo Space discards what it gets
}

const defaultURL = "ws://127.0.0.1:7860/v1/ws"

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var inputs, steps, serveArgs string
	fs := flag.NewFlagSet("spacerelay-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: spacerelay-load [--mode load|handshake|memory|latency|throughput|upload] [flags]\n       spacerelay-load serve [flags]\n\nLoopback only. See the command's documentation for the modes and the JSON output.")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.mode, "mode", "load", "load, handshake, memory, latency, throughput or upload")
	fs.StringVar(&c.url, "url", defaultURL, "the relay's WebSocket URL (loopback only)")
	fs.IntVar(&c.sessions, "sessions", 10, "sessions to open")
	fs.Float64Var(&c.rate, "rate", 0, "sessions opened per second; 0 means as fast as --parallel allows")
	fs.IntVar(&c.parallel, "parallel", 256, "most handshakes in flight at once")
	fs.IntVar(&c.jobs, "jobs", 1, "jobs each session submits, one after another")
	fs.DurationVar(&c.think, "think", 0, "pause between a job's end and the session's next submit")
	fs.StringVar(&c.endpoint, "endpoint", "/generate", "endpoint of every job")
	fs.StringVar(&inputs, "inputs", `{"prompt":"spacerelay load test"}`, "inputs of every job, a JSON object")
	fs.DurationVar(&c.hold, "hold", 0, "keep each session open and idle this long after its jobs; negative: until --duration")
	fs.DurationVar(&c.duration, "duration", 2*time.Minute, "hard limit of the run")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.StringVar(&c.header, "token-header", "X-IP-Token", "upgrade header that carries each session's token")
	fs.DurationVar(&c.tokenExp, "token-exp", 0, "give each session a JWT token that expires this long after the run starts, as Hugging Face's do (0: plain tokens)")
	fs.StringVar(&c.metricsURL, "metrics-url", "", "the relay's /metrics (default: from --url)")
	fs.StringVar(&c.pprofURL, "pprof-url", "", "the pprof listener of a relay run by serve: forces GC, takes profiles")
	fs.StringVar(&c.upstreamURL, "upstream-url", "", "the relay's upstream, for the direct baselines of latency and throughput")
	fs.IntVar(&c.pid, "pid", 0, "the relay's process id, to read its VmRSS")
	fs.StringVar(&steps, "steps", "0,1000,10000", "memory: idle session counts to measure at")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "memory: wait before measuring each step")
	fs.StringVar(&c.profileDir, "profile-dir", "", "memory: write heap and goroutine profiles of the last step here; upload: the relay's CPU profile")
	fs.Int64Var(&c.fileBytes, "file-bytes", 1<<20, "throughput: size of the file a spawned relay serves; upload: size of each upload (default 8 MiB)")
	fs.BoolVar(&c.uploadSink, "upload-sink", true, "upload: the spawned demo Space discards uploaded bytes; false: it keeps them in memory, as its upload route does")
	fs.StringVar(&c.cpuProfile, "cpu-profile", "", "write the load generator's own CPU profile to this file")
	fs.BoolVar(&c.spawn, "spawn", false, "start a relay to measure (spacerelay-load serve) and stop it at the end")
	fs.StringVar(&serveArgs, "serve-flags", "", "extra flags of the spawned relay, space-separated")
	fs.StringVar(&c.relayCPUs, "relay-cpus", "", "run the spawned relay on these CPUs only, a taskset -c list such as 1 (Linux; run this command itself under taskset -c on the others)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return c, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	c.serveArgs = strings.Fields(serveArgs)
	c.inputs = json.RawMessage(inputs)
	var err error
	if c.steps, err = parseSteps(steps); err != nil {
		return c, usageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.presets(set)
	return c, c.check()
}

// presets gives each measuring mode its defaults for the flags not set.
func (c *config) presets(set map[string]bool) {
	def := func(name string, f func()) {
		if !set[name] {
			f()
		}
	}
	switch c.mode {
	case "handshake":
		def("sessions", func() { c.sessions = 10000 })
		def("jobs", func() { c.jobs = 0 })
	case "memory":
		def("jobs", func() { c.jobs = 0 })
		def("parallel", func() { c.parallel = 128 })
	case "latency":
		def("sessions", func() { c.sessions = 1000 })
		def("inputs", func() { c.inputs = json.RawMessage(`{"prompt":"latency","steps":30}`) })
		def("rate", func() { c.rate = 500 })
	case "throughput":
		def("sessions", func() { c.sessions = 1 })
		def("jobs", func() { c.jobs = 50 })
		def("inputs", func() { c.inputs = json.RawMessage(`{"prompt":"throughput","steps":1}`) })
	case "upload":
		def("sessions", func() { c.sessions = 1 })
		def("jobs", func() { c.jobs = 20 })
		def("file-bytes", func() { c.fileBytes = 8 << 20 })
	}
}

var cpuList = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

func (c *config) check() error {
	if !map[string]bool{"load": true, "handshake": true, "memory": true, "latency": true, "throughput": true, "upload": true}[c.mode] {
		return usageError{fmt.Errorf("--mode: must be load, handshake, memory, latency, throughput or upload, got %q", c.mode)}
	}
	if c.relayCPUs != "" && (!cpuList.MatchString(c.relayCPUs) || !c.spawn) {
		return usageError{fmt.Errorf("--relay-cpus: a CPU list such as 1 or 0-1,3, with --spawn; got %q", c.relayCPUs)}
	}
	switch {
	case c.sessions < 0 || c.jobs < 0 || c.rate < 0 || c.think < 0 || c.fileBytes < 16:
		return usageError{errors.New("--sessions, --jobs, --rate and --think must not be negative, --file-bytes at least 16")}
	case c.parallel <= 0 || c.duration <= 0:
		return usageError{errors.New("--parallel and --duration must be positive")}
	}
	var obj map[string]any
	if err := json.Unmarshal(c.inputs, &obj); err != nil || obj == nil {
		return usageError{fmt.Errorf("--inputs: must be a JSON object, got %q", c.inputs)}
	}
	if c.spawn {
		return nil // the addresses are the spawned relay's
	}
	if err := checkURL("--url", c.url, "ws"); err != nil {
		return err
	}
	for name, u := range map[string]string{"--metrics-url": c.metricsURL, "--pprof-url": c.pprofURL, "--upstream-url": c.upstreamURL} {
		if u == "" {
			continue
		}
		if err := checkURL(name, u, "http", "https"); err != nil {
			return err
		}
	}
	return nil
}

// checkURL checks that raw is a URL of one of schemes on a loopback host.
func checkURL(name, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return usageError{fmt.Errorf("%s: %q is not a URL with a host", name, raw)}
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return usageError{fmt.Errorf("%s: the scheme must be %s, got %q", name, strings.Join(schemes, " or "), u.Scheme)}
	}
	if !isLoopbackHost(u.Hostname()) {
		return usageError{fmt.Errorf("%s: refusing host %q: spacerelay-load only targets loopback (127.0.0.0/8, ::1, localhost)", name, u.Hostname())}
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// metricsURL is the relay's /metrics: --metrics-url, or from --url.
func (c *config) metricsFromURL() string {
	if c.metricsURL != "" {
		return c.metricsURL
	}
	u, err := url.Parse(c.url)
	if err != nil {
		return ""
	}
	u.Scheme = "http"
	u.Path, u.RawQuery = "/metrics", ""
	return u.String()
}

func parseSteps(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || len(out) > 0 && n < out[len(out)-1] {
			return nil, fmt.Errorf("--steps: must be rising counts such as 0,1000,10000, got %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}
