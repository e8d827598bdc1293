package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// latencyReport is the latency mode's finding. Every progress event is
// stamped by the harness when the demo Space writes it on its socket (w)
// and when the relay's upstream client hands it to the session (e); see
// the package doc. The same load runs twice: through the relay, and
// straight from the demo Space with the relay's own upstream client (the
// direct baseline). What the relay adds is the difference of the two
// wire figures; the session figure is the part spent after the upstream
// client (session, socket, the browser's read).
type latencyReport struct {
	Method        string         `json:"method"`
	RelayWire     *summary       `json:"relay_event_wire"`
	RelaySession  *summary       `json:"relay_event_session"`
	DirectWire    *summary       `json:"direct_event_wire"`
	AddedP50      float64        `json:"added_p50_ms"`
	AddedP95      float64        `json:"added_p95_ms"`
	AddedP99      float64        `json:"added_p99_ms"`
	DirectJobs    jobsReport     `json:"direct_jobs"`
	DirectErrors  map[string]int `json:"direct_errors"`
	DirectCPULoad float64        `json:"direct_cpu_load_seconds"`
	// RelayOwn is the relay's own measure of the time a message spends in
	// it (spacerelay_message_relay_seconds), over this load.
	RelayOwn *relayOwn `json:"relay_own,omitempty"`
}

// relayOwn summarises the relay's histogram of the time each job message
// spends in it: from its upstream event being read to the end of its
// write to the browser. Quantiles are interpolated within buckets; the
// share within 2 ms is exact (2 ms is a bucket bound).
type relayOwn struct {
	Messages  float64 `json:"messages"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	Within2ms float64 `json:"share_within_2ms"`
}

const relayHistogram = "spacerelay_message_relay_seconds"

const latencyMethod = "progress events stamped by the harness at the upstream's socket write (w) and at the relay's session boundary (e); " +
	"latency = the browser's receive time minus the stamp; added = relay path minus the same load read straight from the upstream"

// runLatency runs the load through the relay, then straight from its
// upstream, both with stamped events.
func runLatency(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	stop, err := maybeSpawn(ctx, &cfg, stderr,
		[]string{"--stamp", "--concurrency", strconv.Itoa(max(cfg.sessions, 1))}, []string{"--stamp"})
	if err != nil {
		return nil, err
	}
	defer stop()
	before, _ := scrapeHistogram(cfg.metricsFromURL(), relayHistogram)
	rep, err := runLoad(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	lat := &latencyReport{Method: latencyMethod, RelayWire: rep.Latency["event_wire"], RelaySession: rep.Latency["event_session"]}
	rep.LatencyMode = lat
	if after, err := scrapeHistogram(cfg.metricsFromURL(), relayHistogram); err == nil {
		h := after.minus(before)
		ms := func(q float64) float64 { return h.quantile(q) * 1000 }
		lat.RelayOwn = &relayOwn{Messages: h.total(), P50: ms(0.5), P95: ms(0.95), P99: ms(0.99), Within2ms: h.within(0.002)}
	} else {
		fmt.Fprintln(stderr, "spacerelay-load:", err)
	}
	if lat.RelayWire == nil && lat.RelaySession == nil {
		fmt.Fprintln(stderr, "spacerelay-load: no stamped progress events: run the relay with \"spacerelay-load serve --stamp\", or use --spawn")
	}
	if cfg.upstreamURL == "" {
		return rep, nil
	}
	cpu := selfCPU()
	rec, err := runDirect(ctx, cfg)
	if err != nil {
		return rep, err
	}
	lat.DirectCPULoad = selfCPU() - cpu
	lat.DirectWire = summarize(rec.samples[figEventWire])
	lat.DirectJobs = jobsReport{rec.jobsSubmitted, rec.jobsCompleted, rec.jobsFailed, rec.jobsCancelled, rec.jobsUnfinished}
	lat.DirectErrors = cmpInit(rec.errors)
	if lat.DirectWire != nil && lat.RelayWire != nil {
		lat.AddedP50 = lat.RelayWire.P50 - lat.DirectWire.P50
		lat.AddedP95 = lat.RelayWire.P95 - lat.DirectWire.P95
		lat.AddedP99 = lat.RelayWire.P99 - lat.DirectWire.P99
	}
	return rep, nil
}

// runDirect runs the load's jobs straight against the upstream with the
// relay's upstream client: --sessions visitors at --rate, --jobs each.
func runDirect(ctx context.Context, cfg config) (*recorder, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	client, err := upstream.New(upstream.Config{Target: cfg.upstreamURL, HTTP: directHTTP()})
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	if _, err := client.API(ctx); err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	var inputs map[string]any
	if err := json.Unmarshal(cfg.inputs, &inputs); err != nil {
		return nil, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total recorder
	)
	start := time.Now()
	for i := range cfg.sessions {
		if cfg.rate > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(i)/cfg.rate*float64(time.Second)))) {
			break
		}
		wg.Go(func() {
			var rec recorder
			directVisitor(ctx, cfg, client, inputs, "direct-"+strconv.Itoa(i)+"-"+strconv.FormatInt(start.UnixNano(), 36), &rec)
			mu.Lock()
			total.merge(&rec)
			mu.Unlock()
		})
	}
	wg.Wait()
	return &total, nil
}

// directHTTP is the relay's upstream HTTP client, dialing loopback only.
func directHTTP() *http.Client {
	c := newHTTPClient()
	t := c.Transport.(*http.Transport)
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 256
	return c
}

func directVisitor(ctx context.Context, cfg config, client *upstream.Client, inputs map[string]any, token string, rec *recorder) {
	s := client.NewSession(http.Header{cfg.header: {token}})
	defer s.Close()
	for j := range cfg.jobs {
		if j > 0 && cfg.think > 0 && !sleepUntil(ctx, time.Now().Add(cfg.think)) {
			return
		}
		rec.jobsSubmitted++
		err := s.Stream(ctx, upstream.Call{Endpoint: cfg.endpoint, Inputs: inputs}, func(ev upstream.Event) error {
			if p, ok := ev.(*upstream.Progress); ok {
				now := time.Now()
				for _, st := range p.Steps {
					if st.Desc != nil {
						if w, _ := parseStamps(*st.Desc); w != 0 {
							rec.add(figEventWire, now.Sub(time.Unix(0, w)))
						}
					}
				}
			}
			return nil
		})
		switch {
		case err == nil:
			rec.jobsCompleted++
		case ctx.Err() != nil:
			rec.jobsUnfinished++
			rec.error("timeout")
			return
		default:
			rec.jobsFailed++
			rec.error("job:" + directCode(err))
		}
	}
}

func directCode(err error) string {
	if e, ok := err.(*upstream.Error); ok {
		return string(e.Code)
	}
	return "internal"
}

// parseStamps reads the harness's stamps "w=<ns> e=<ns>" of a desc.
func parseStamps(desc string) (w, e int64) {
	for f := range strings.FieldsSeq(desc) {
		k, val, _ := strings.Cut(f, "=")
		ns, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "w":
			w = ns
		case "e":
			e = ns
		}
	}
	return w, e
}

func (l *latencyReport) text(b *strings.Builder) {
	if l == nil {
		return
	}
	if o := l.RelayOwn; o != nil && o.Messages > 0 {
		fmt.Fprintf(b, "relay own  time in the relay per message (its histogram), ms: n %.0f, p50 %.3f, p95 %.3f, p99 %.3f; within 2 ms: %.2f%%\n",
			o.Messages, o.P50, o.P95, o.P99, 100*o.Within2ms)
	}
	b.WriteString("latency    per progress event, ms      n      p50      p95      p99      max\n")
	for _, row := range []struct {
		name string
		s    *summary
	}{{"relay: upstream write to browser", l.RelayWire}, {"relay: session to browser", l.RelaySession}, {"direct: upstream write to client", l.DirectWire}} {
		if row.s != nil {
			fmt.Fprintf(b, "           %-34s %7d %8.3f %8.3f %8.3f %8.3f\n", row.name, row.s.N, row.s.P50, row.s.P95, row.s.P99, row.s.Max)
		}
	}
	if l.DirectWire != nil && l.RelayWire != nil {
		fmt.Fprintf(b, "           added by the relay: p50 %.3f ms, p95 %.3f ms, p99 %.3f ms\n", l.AddedP50, l.AddedP95, l.AddedP99)
		fmt.Fprintf(b, "           progress events received: relay %d, direct %d (the relay keeps only the newest under backpressure; dropped ones are not in its figures)\n",
			l.RelayWire.N, l.DirectWire.N)
		fmt.Fprintf(b, "           direct jobs: completed %d, failed %d, unfinished %d; errors %v\n",
			l.DirectJobs.Completed, l.DirectJobs.Failed, l.DirectJobs.Unfinished, l.DirectErrors)
	}
}
