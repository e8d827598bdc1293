package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// loadRun is one run of visitors against a relay.
type loadRun struct {
	// Static after newLoadRun.
	cfg    config
	url    *url.URL
	addr   string // the relay's loopback IP and port
	dialer *net.Dialer
	runID  string // in every token, so that runs do not share quotas
	prefix []byte // a submit message up to its id
	// templated: the inputs hold {job} or {token} (see submit).
	templated bool

	wg      sync.WaitGroup // the visitors
	mu      sync.Mutex
	total   recorder // guarded by mu
	started int      // visitors launched; guarded by mu
}

var errNotLoopback = errors.New("refusing to connect to a non-loopback address")

func newLoadRun(cfg config) (*loadRun, error) {
	var id [4]byte
	rand.Read(id[:])
	sub := struct {
		Type     string          `json:"type"`
		Endpoint string          `json:"endpoint,omitempty"`
		Inputs   json.RawMessage `json:"inputs"`
	}{"submit", cfg.endpoint, cfg.inputs}
	b, _ := json.Marshal(sub) // inputs were checked
	prefix := append(b[:len(b)-1:len(b)-1], `,"id":"`...)
	u, err := url.Parse(cfg.url)
	if err != nil {
		return nil, err
	}
	addr, err := resolveLoopback(u)
	if err != nil {
		return nil, err
	}
	return &loadRun{cfg: cfg, url: u, addr: addr, dialer: &net.Dialer{Timeout: 10 * time.Second},
		runID: hex.EncodeToString(id[:]), prefix: prefix,
		templated: bytes.Contains(prefix, []byte("{job}")) || bytes.Contains(prefix, []byte("{token}"))}, nil
}

// resolveLoopback returns the address to dial for u, once, so that the
// visitors need neither a lookup nor a check per dial.
func resolveLoopback(u *url.URL) (string, error) {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	ips, err := net.DefaultResolver.LookupIPAddr(context.Background(), u.Hostname())
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("resolve %s: %v", u.Hostname(), err)
	}
	if !ips[0].IP.IsLoopback() {
		return "", fmt.Errorf("%w: %s is %s", errNotLoopback, u.Hostname(), ips[0].IP)
	}
	return net.JoinHostPort(ips[0].IP.String(), port), nil
}

// submit returns the submit message of job id of the visitor with token.
// In --inputs, {job} stands for a name unique to the job (so that every
// job asks for something else: Spaces cache identical calls) and {token}
// for the visitor's token.
func (r *loadRun) submit(id, token string) []byte {
	prefix := r.prefix
	if r.templated {
		s := strings.ReplaceAll(string(prefix), "{job}", token+"-"+id)
		prefix = []byte(strings.ReplaceAll(s, "{token}", token))
	}
	return append(append(prefix[:len(prefix):len(prefix)], id...), `"}`...)
}

// loopbackDialer dials loopback addresses only, whatever a name resolves
// to or a redirect says.
func loopbackDialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%w: %s", errNotLoopback, address)
		}
		return nil
	}}
}

// newHTTPClient is an HTTP client that dials loopback addresses only.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         loopbackDialer().DialContext,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}}
}

// launch starts n visitors, numbered from first, at the configured rate
// with at most --parallel handshakes in flight, and returns once they are
// all started (or ctx is done). ready, if not nil, hears of each visitor's
// hello or failure. Visitors run until they end or ctx is done; wait for
// them with r.wg.
func (r *loadRun) launch(ctx context.Context, first, n int, ready func(ok bool)) int {
	slots := make(chan struct{}, r.cfg.parallel)
	start := time.Now()
	launched := 0
	for i := range n {
		if r.cfg.rate > 0 {
			at := start.Add(time.Duration(float64(i) / r.cfg.rate * float64(time.Second)))
			if !sleepUntil(ctx, at) {
				break
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		v := &visitor{load: r, token: r.token("load-" + r.runID + "-" + strconv.Itoa(first+i))}
		v.onReady = func(ok bool) {
			<-slots
			if ready != nil {
				ready(ok)
			}
		}
		launched++
		r.wg.Go(func() {
			v.run(ctx)
			r.mu.Lock()
			r.total.merge(&v.rec)
			r.mu.Unlock()
		})
	}
	r.mu.Lock()
	r.started += launched
	r.mu.Unlock()
	return launched
}

// openAll launches n visitors, numbered from first, and waits until each
// has its hello or has failed. It returns how many have their hello.
func (r *loadRun) openAll(ctx context.Context, first, n int) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	wg.Add(n)
	launched := r.launch(ctx, first, n, func(good bool) {
		if good {
			mu.Lock()
			ok++
			mu.Unlock()
		}
		wg.Done()
	})
	wg.Add(launched - n) // those never launched
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return ok
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// result waits for every visitor and returns what they recorded.
func (r *loadRun) result() (*recorder, int) {
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return &r.total, r.started
}

// runLoad runs the load generator: the visitors of cfg, then the report.
// before, if not nil, is called with the run once it is made.
func runLoad(ctx context.Context, cfg config, before func(*loadRun)) (*report, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	r, err := newLoadRun(cfg)
	if err != nil {
		return nil, err
	}
	if before != nil {
		before(r)
	}
	cpu := startCPU(cfg.metricsFromURL())
	start := time.Now()
	r.launch(ctx, 0, cfg.sessions, nil)
	rec, started := r.result()
	rep := newReport(cfg, rec, started, time.Since(start))
	rep.CPU = cpu.stop()
	return rep, nil
}

// cpuMeter measures the CPU time of this process and of the relay.
type cpuMeter struct {
	metrics     string
	self, relay float64
	relayOK     bool
}

func startCPU(metrics string) *cpuMeter {
	m := &cpuMeter{metrics: metrics, self: selfCPU()}
	if metrics != "" {
		if v, err := scrape(metrics); err == nil {
			m.relay, m.relayOK = v["process_cpu_seconds_total"], true
		}
	}
	return m
}

func (m *cpuMeter) stop() *cpuReport {
	c := &cpuReport{LoadSeconds: selfCPU() - m.self}
	if m.relayOK {
		if v, err := scrape(m.metrics); err == nil {
			d := v["process_cpu_seconds_total"] - m.relay
			c.RelaySeconds = &d
		}
	}
	return c
}

// token is the visitor's token: name, or with --token-exp a JWT of it
// whose exp is that far ahead (unsigned: the relay does not check; it
// reads the exp, and arms each session's token_expiring timer).
func (r *loadRun) token(name string) string {
	if r.cfg.tokenExp <= 0 {
		return name
	}
	enc := base64.RawURLEncoding.EncodeToString
	exp := time.Now().Add(r.cfg.tokenExp).Unix()
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, name, exp)) + ".x"
}
