package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// probeClient reads the relay's /metrics and pprof listener. Probes are
// few: no connection is kept.
var probeClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
	DialContext: loopbackDialer().DialContext, DisableKeepAlives: true}}

// scrape reads the unlabelled samples of a Prometheus text exposition.
func scrape(u string) (map[string]float64, error) {
	resp, err := probeClient.Get(u)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s answered %s", u, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); ok && err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// get fetches u and returns its body.
func get(u string) ([]byte, error) {
	resp, err := probeClient.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// saveProfile writes the pprof profile name (with query) to dir/file.
func saveProfile(pprofURL, query, dir, file string) error {
	b, err := get(pprofURL + "/debug/pprof/" + query)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	return os.WriteFile(filepath.Join(dir, file), b, 0o644)
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// spawn starts "spacerelay-load <sub> args" (on cpus, a taskset -c list,
// unless it is empty) and returns its ready line. stop ends it (SIGTERM,
// then SIGKILL after 20 s).
func spawn(ctx context.Context, stderr io.Writer, cpus, sub string, args ...string) (r ready, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return r, nil, fmt.Errorf("spawn: %w", err)
	}
	cmd := exec.Command(exe, append([]string{sub}, args...)...)
	if cpus != "" { // taskset sets the affinity, then becomes the relay
		cmd = exec.Command("taskset", append([]string{"-c", cpus, exe, sub}, args...)...)
	}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, nil, fmt.Errorf("spawn: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return r, nil, fmt.Errorf("spawn: %w", err)
	}
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		t := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		cmd.Wait()
		t.Stop()
	}
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(out).ReadBytes('\n')
		line <- b
		io.Copy(io.Discard, out)
	}()
	select {
	case b := <-line:
		err = json.Unmarshal(b, &r)
	case <-time.After(30 * time.Second):
		err = errors.New("no ready line in 30 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		stop()
		return r, nil, fmt.Errorf("spawn: %s %s: %w", exe, sub, err)
	}
	fmt.Fprintf(stderr, "spacerelay-load: spawned pid %d: %s\n", r.PID, strings.Join(cmd.Args[1:], " "))
	return r, stop, nil
}

// maybeSpawn, if cfg says --spawn, starts a relay to measure and points
// cfg at it: "serve" with serveArgs, in front of an embedded demo Space,
// or, when demoArgs is not nil, in front of a "demo" process of its own
// with demoArgs. stop is never nil.
func maybeSpawn(ctx context.Context, cfg *config, stderr io.Writer, demoArgs, serveArgs []string) (stop func(), err error) {
	if !cfg.spawn {
		return func() {}, nil
	}
	stops := []func(){}
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	args := []string{"--listen", "127.0.0.1:0", "--pprof", "127.0.0.1:0"}
	if demoArgs != nil {
		d, dstop, err := spawn(ctx, stderr, "", "demo", demoArgs...)
		if err != nil {
			return nil, err
		}
		stops = append(stops, dstop)
		args = append(args, "--upstream", d.Upstream)
	}
	r, rstop, err := spawn(ctx, stderr, cfg.relayCPUs, "serve", append(append(args, serveArgs...), cfg.serveArgs...)...)
	if err != nil {
		stop()
		return nil, err
	}
	stops = append(stops, rstop)
	cfg.url, cfg.metricsURL, cfg.pprofURL, cfg.upstreamURL, cfg.pid = r.URL, r.Metrics, r.Pprof, r.Upstream, r.PID
	return stop, nil
}

// histogram is a Prometheus histogram as scraped: cumulative counts by
// upper bound, in seconds, ascending, +Inf last.
type histogram struct {
	bounds []float64
	counts []float64
}

// scrapeHistogram reads the unlabelled histogram name from a Prometheus
// text exposition.
func scrapeHistogram(u, name string) (*histogram, error) {
	body, err := get(u)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	h := &histogram{}
	prefix := name + `_bucket{le="`
	for line := range strings.SplitSeq(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		b, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("metrics: bad bucket line %q", line)
		}
		h.bounds, h.counts = append(h.bounds, b), append(h.counts, n)
	}
	if len(h.bounds) == 0 {
		return nil, fmt.Errorf("metrics: no histogram %s", name)
	}
	return h, nil
}

// minus returns h less an earlier reading of the same histogram.
func (h *histogram) minus(old *histogram) *histogram {
	if old == nil || len(old.counts) != len(h.counts) {
		return h
	}
	d := &histogram{bounds: h.bounds, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		d.counts[i] = h.counts[i] - old.counts[i]
	}
	return d
}

func (h *histogram) total() float64 { return h.counts[len(h.counts)-1] }

// quantile estimates the q-quantile in seconds, linearly within its
// bucket (as Prometheus' histogram_quantile does); +Inf if it falls in the
// last bucket.
func (h *histogram) quantile(q float64) float64 {
	rank := q * h.total()
	lower, below := 0.0, 0.0
	for i, n := range h.counts {
		if n >= rank {
			if math.IsInf(h.bounds[i], 1) {
				return h.bounds[i]
			}
			if n == below {
				return h.bounds[i]
			}
			return lower + (h.bounds[i]-lower)*(rank-below)/(n-below)
		}
		lower, below = h.bounds[i], n
	}
	return math.Inf(1)
}

// within returns the share of observations at most bound seconds; bound
// must be one of the bucket bounds.
func (h *histogram) within(bound float64) float64 {
	for i, b := range h.bounds {
		if b == bound && h.total() > 0 {
			return h.counts[i] / h.total()
		}
	}
	return math.NaN()
}
