package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the relay process's life in the end-to-end tests. None of them
// is a performance target: each only turns a hang into a failure.
const (
	buildTimeout = 5 * time.Minute  // go build -race, cold cache on a 2-core machine
	readyTimeout = 30 * time.Second // from start to GET /readyz 200
	stopTimeout  = 10 * time.Second // from SIGTERM to SIGKILL in the cleanup
	pollEvery    = 25 * time.Millisecond
)

// buildRelay builds the spacerelay binary, with the race detector, into dir.
func buildRelay(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "spacerelay")
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	// go test puts its own GOROOT/bin first in PATH, so this is the same go.
	cmd := exec.CommandContext(ctx, "go", "build", "-race", "-o", bin, ".")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -race ./cmd/spacerelay: %v\n%s", err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// relayProc is a running spacerelay process.
type relayProc struct {
	url        string // http://127.0.0.1:PORT
	wsURL      string // ws://127.0.0.1:PORT/v1/ws
	metricsURL string // http://127.0.0.1:PORT2/metrics: --metrics-listen
	args       []string

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once the process is reaped
	err  error         // Wait's result; read after done
}

// defaultFlags are the flags every relay in these tests gets; startRelay
// appends its caller's, and a later flag wins.
var defaultFlags = []string{
	"--token-policy", "require",
	"--max-jobs", "4",
	"--max-message-bytes", "65536",
	"--max-file-bytes", "20971520",
	"--shutdown-grace", "5s",
	"--log-level", "debug",
	"--log-format", "text",
	"--allowed-origins", "https://app.example.com",
	"--demo-token-ttl", "off", // the tests send their visitors' tokens themselves
}

// startRelay runs bin in front of upstreamURL ("" = the embedded demo Space)
// on a free loopback port and waits until GET /readyz answers 200. A cleanup
// stops it (SIGTERM, then SIGKILL), always reaps it, fails the test if the
// race detector reported anything, and logs its output if the test failed.
func startRelay(t *testing.T, bin, upstreamURL string, flags ...string) *relayProc {
	t.Helper()
	args := append([]string(nil), defaultFlags...)
	if upstreamURL != "" {
		args = append(args, "--upstream", upstreamURL)
	}
	args = append(args, flags...)
	// The port is chosen by listening and closing, so another process may
	// take it before the relay binds it: try again with a new port.
	var last string
	for range 3 {
		r, err := launch(t, bin, args)
		if err == nil {
			return r
		}
		last = err.Error()
		if !strings.Contains(last, "address already in use") {
			break
		}
	}
	t.Fatalf("spacerelay %s: %s", strings.Join(args, " "), last)
	return nil
}

func launch(t *testing.T, bin string, args []string) (*relayProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r := &relayProc{
		url:        "http://" + addr,
		wsURL:      "ws://" + addr + "/v1/ws",
		metricsURL: "http://" + maddr + "/metrics",
		args:       append([]string{"--listen", addr, "--metrics-listen", maddr}, args...),
		out:        new(syncBuffer),
		done:       make(chan struct{}),
	}
	r.cmd = exec.Command(bin, r.args...)
	r.cmd.Env = childEnv()
	r.cmd.Stdout = r.out
	r.cmd.Stderr = r.out
	r.cmd.WaitDelay = time.Second
	setDeathSignal(r.cmd)
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() { r.cleanup(t) })
	if err := r.waitReady(t.Context()); err != nil {
		r.kill()
		return nil, fmt.Errorf("%v; output:\n%s", err, r.out)
	}
	return r, nil
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// childEnv is the test's environment without SPACERELAY_ variables (the test
// command sets SPACERELAY_GRADIO), so that only the flags configure the relay.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPACERELAY_") {
			env = append(env, kv)
		}
	}
	return env
}

func (r *relayProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		code, _, err := httpGet(ctx, r.url+"/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("GET /readyz: %d", code)
		}
		select {
		case <-r.done:
			return fmt.Errorf("exited before it was ready: %v", r.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", readyTimeout, last)
		case <-time.After(pollEvery):
		}
	}
}

// signal sends sig and returns when it was sent.
func (r *relayProc) signal(t *testing.T, sig os.Signal) time.Time {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	return time.Now()
}

// wait waits up to d for the process to exit and returns its exit code, or
// -1 and false if it is still running.
func (r *relayProc) wait(d time.Duration) (code int, exited bool) {
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return -1, false
	}
}

func (r *relayProc) kill() {
	r.cmd.Process.Kill() // fails only if it is gone already
	<-r.done
}

func (r *relayProc) cleanup(t *testing.T) {
	r.cmd.Process.Signal(syscall.SIGTERM)
	if _, ok := r.wait(stopTimeout); !ok {
		t.Errorf("spacerelay did not exit within %v of SIGTERM; killed it", stopTimeout)
		r.kill()
	}
	out := r.out.String()
	if strings.Contains(out, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a data race in spacerelay (exit: %v)", r.err)
	}
	if t.Failed() {
		t.Logf("spacerelay %s (exit: %v), output:\n%s", strings.Join(r.args, " "), r.err, out)
	}
}

// goroutineDump ends the relay with SIGQUIT, which has the Go runtime
// print every goroutine's stack, and returns the goroutines counted by where
// they wait and who created them, most first.
func (r *relayProc) goroutineDump(t *testing.T) string {
	t.Helper()
	before := len(r.out.String())
	r.cmd.Process.Signal(syscall.SIGQUIT)
	if _, ok := r.wait(stopTimeout); !ok {
		r.kill()
	}
	dump := r.out.String()[before:]
	counts := make(map[string]int)
	for _, g := range strings.Split(dump, "\n\ngoroutine ")[1:] {
		key := ""
		for _, l := range strings.Split(g, "\n")[1:] {
			switch {
			case strings.HasPrefix(l, "created by "):
				by, _, _ := strings.Cut(strings.TrimPrefix(l, "created by "), " in goroutine ")
				key += " <- " + by
			case key == "" && !strings.HasPrefix(l, "\t") && !lowLevel(l):
				key, _, _ = strings.Cut(l, "(0x") // the innermost interesting function
			}
		}
		counts[key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%4d %s\n", counts[k], k)
	}
	return b.String()
}

// lowLevel reports whether a stack frame is in a package too low to say
// what a goroutine is for.
func lowLevel(frame string) bool {
	for _, p := range []string{"runtime.", "internal/", "sync.", "net.", "bufio.", "io.", "syscall.", "os.", "time.", "crypto/", "racecall"} {
		if strings.HasPrefix(frame, p) {
			return true
		}
	}
	return false
}

// metrics returns the sum of each metric's samples in GET /metrics on the
// metrics listener, keyed by metric name (labels dropped).
func (r *relayProc) metrics(ctx context.Context) (map[string]float64, error) {
	code, body, err := httpGet(ctx, r.metricsURL)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d", code)
	}
	m := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 && i < len(name) {
			name = line[:i]
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				return nil, fmt.Errorf("GET /metrics: bad line %q", line)
			}
			rest, ok = strings.TrimSpace(line[j+1:]), true
		}
		if !ok {
			return nil, fmt.Errorf("GET /metrics: bad line %q", line)
		}
		value, _, _ := strings.Cut(strings.TrimSpace(rest), " ") // drop a timestamp
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("GET /metrics: line %q: %v", line, err)
		}
		m[name] += v
	}
	return m, sc.Err()
}

// httpClient keeps no idle connections, so that neither the relay's
// goroutine count nor this test binary's is disturbed by them.
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

// readJournal returns the events the test Space recorded for prompt, oldest
// first (testdata/gradio/SPEC.md, "The journal").
func readJournal(ctx context.Context, spaceURL, prompt string) ([]journalEntry, error) {
	code, body, err := httpGet(ctx, spaceURL+"/fixture/journal")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /fixture/journal: %d", code)
	}
	var all, mine []journalEntry
	if err := json.Unmarshal(body, &all); err != nil {
		return nil, fmt.Errorf("GET /fixture/journal: %v", err)
	}
	for _, e := range all {
		if e.Prompt == prompt {
			mine = append(mine, e)
		}
	}
	return mine, nil
}

type journalEntry struct {
	Event, Endpoint, Prompt, Token, Session string
}

func journalEvents(entries []journalEntry) string {
	var evs []string
	for _, e := range entries {
		evs = append(evs, e.Event)
	}
	return strings.Join(evs, " ")
}

// waitJournal polls prompt's journal until its events read want
// (space-separated) or within has passed since start, and returns what it
// saw last.
func waitJournal(ctx context.Context, spaceURL, prompt, want string, start time.Time, within time.Duration) (string, error) {
	deadline := start.Add(within)
	for {
		entries, err := readJournal(ctx, spaceURL, prompt)
		if err != nil {
			return "", err
		}
		got := journalEvents(entries)
		if got == want {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("journal of %q = %q %v after the start, want %q", prompt, got, time.Since(start).Round(time.Millisecond), want)
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// syncBuffer collects a child's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
