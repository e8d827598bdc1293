package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// The latency figures a recorder keeps.
const (
	figHello         = iota // dial to hello
	figAccepted             // submit to accepted
	figFirstProgress        // submit to the job's first progress
	figResult               // submit to result
	figEventWire            // the upstream wrote a progress event to the browser read it
	figEventSession         // the relay's session got it to the browser read it
	figFile                 // the upstream began writing a file to the browser had it all
	nFigures
)

var figureNames = [nFigures]string{"hello", "accepted", "first_progress", "result", "event_wire", "event_session", "file"}

// recorder collects what visitors saw. Each visitor has its own; the run
// merges them.
type recorder struct {
	samples [nFigures][]time.Duration

	sessionsOpened, sessionsFailed                                          int
	jobsSubmitted, jobsCompleted, jobsFailed, jobsCancelled, jobsUnfinished int
	messages, textBytes, binaryBytes, files                                 int64
	fileBytes                                                               int64 // size of a stamped file
	errors                                                                  map[string]int

	firstDial, lastHello time.Time
}

func (r *recorder) add(fig int, d time.Duration) { r.samples[fig] = append(r.samples[fig], d) }

func (r *recorder) error(key string) {
	if r.errors == nil {
		r.errors = make(map[string]int)
	}
	r.errors[key]++
}

func (r *recorder) merge(o *recorder) {
	for i := range r.samples {
		r.samples[i] = append(r.samples[i], o.samples[i]...)
	}
	r.sessionsOpened += o.sessionsOpened
	r.sessionsFailed += o.sessionsFailed
	r.jobsSubmitted += o.jobsSubmitted
	r.jobsCompleted += o.jobsCompleted
	r.jobsFailed += o.jobsFailed
	r.jobsCancelled += o.jobsCancelled
	r.jobsUnfinished += o.jobsUnfinished
	r.messages += o.messages
	r.textBytes += o.textBytes
	r.binaryBytes += o.binaryBytes
	r.files += o.files
	r.fileBytes = max(r.fileBytes, o.fileBytes)
	for k, n := range o.errors {
		r.errors = cmpInit(r.errors)
		r.errors[k] += n
	}
	if !o.firstDial.IsZero() && (r.firstDial.IsZero() || o.firstDial.Before(r.firstDial)) {
		r.firstDial = o.firstDial
	}
	if o.lastHello.After(r.lastHello) {
		r.lastHello = o.lastHello
	}
}

func cmpInit(m map[string]int) map[string]int {
	if m == nil {
		return make(map[string]int)
	}
	return m
}

// summary is the distribution of one figure, in milliseconds.
type summary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// summarize returns the nearest-rank percentiles of ds (sorting it).
func summarize(ds []time.Duration) *summary {
	if len(ds) == 0 {
		return nil
	}
	slices.Sort(ds)
	at := func(p float64) float64 {
		i := int(p*float64(len(ds))+0.999999) - 1
		return ms(ds[min(max(i, 0), len(ds)-1)])
	}
	return &summary{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// report is the output of a run; see the package doc for its JSON.
type report struct {
	Mode      string              `json:"mode"`
	URL       string              `json:"url"`
	Config    configReport        `json:"config"`
	ElapsedMS float64             `json:"elapsed_ms"`
	Sessions  sessionsReport      `json:"sessions"`
	Jobs      jobsReport          `json:"jobs"`
	Received  receivedReport      `json:"received"`
	Latency   map[string]*summary `json:"latency"`
	Errors    map[string]int      `json:"errors"`
	CPU       *cpuReport          `json:"cpu,omitempty"`

	Handshake   *handshakeReport  `json:"handshake,omitempty"`
	Memory      *memoryReport     `json:"memory,omitempty"`
	LatencyMode *latencyReport    `json:"latency_mode,omitempty"`
	Throughput  *throughputReport `json:"throughput,omitempty"`
	Upload      *uploadReport     `json:"upload,omitempty"`

	fileBytes int64
}

type configReport struct {
	Sessions   int             `json:"sessions"`
	Rate       float64         `json:"rate"`
	Parallel   int             `json:"parallel"`
	Jobs       int             `json:"jobs"`
	ThinkMS    float64         `json:"think_ms"`
	HoldMS     float64         `json:"hold_ms"`
	DurationMS float64         `json:"duration_ms"`
	Endpoint   string          `json:"endpoint"`
	Inputs     json.RawMessage `json:"inputs"`
}

type sessionsReport struct {
	Started             int     `json:"started"`
	Opened              int     `json:"opened"`
	Failed              int     `json:"failed"`
	HandshakesPerSecond float64 `json:"handshakes_per_second"`
}

type jobsReport struct {
	Submitted  int `json:"submitted"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	Cancelled  int `json:"cancelled"`
	Unfinished int `json:"unfinished"`
}

type receivedReport struct {
	Messages    int64 `json:"messages"`
	TextBytes   int64 `json:"text_bytes"`
	BinaryBytes int64 `json:"binary_bytes"`
	Files       int64 `json:"files"`
}

type cpuReport struct {
	LoadSeconds  float64  `json:"load_seconds"`
	RelaySeconds *float64 `json:"relay_seconds,omitempty"`
}

func newReport(cfg config, rec *recorder, started int, elapsed time.Duration) *report {
	rep := &report{
		Mode: cfg.mode, URL: cfg.url, ElapsedMS: ms(elapsed),
		Config: configReport{cfg.sessions, cfg.rate, cfg.parallel, cfg.jobs, ms(cfg.think), ms(cfg.hold),
			ms(cfg.duration), cfg.endpoint, cfg.inputs},
		Sessions:  sessionsReport{Started: started, Opened: rec.sessionsOpened, Failed: rec.sessionsFailed},
		Jobs:      jobsReport{rec.jobsSubmitted, rec.jobsCompleted, rec.jobsFailed, rec.jobsCancelled, rec.jobsUnfinished},
		Received:  receivedReport{rec.messages, rec.textBytes, rec.binaryBytes, rec.files},
		Latency:   map[string]*summary{},
		Errors:    cmpInit(rec.errors),
		fileBytes: rec.fileBytes,
	}
	if span := rec.lastHello.Sub(rec.firstDial); rec.sessionsOpened > 0 && span > 0 {
		rep.Sessions.HandshakesPerSecond = float64(rec.sessionsOpened) / span.Seconds()
	}
	for i, name := range figureNames {
		if s := summarize(rec.samples[i]); s != nil {
			rep.Latency[name] = s
		}
	}
	return rep
}

func (rep *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var b strings.Builder
	rep.text(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (rep *report) text(b *strings.Builder) {
	c := rep.Config
	fmt.Fprintf(b, "spacerelay-load --mode %s against %s: %d sessions, %d jobs each, in %.1f s\n",
		rep.Mode, rep.URL, c.Sessions, c.Jobs, rep.ElapsedMS/1000)
	s := rep.Sessions
	fmt.Fprintf(b, "sessions   started %d, opened %d, failed %d; %.0f handshakes/s (first dial to last hello)\n",
		s.Started, s.Opened, s.Failed, s.HandshakesPerSecond)
	j := rep.Jobs
	fmt.Fprintf(b, "jobs       submitted %d, completed %d, failed %d, cancelled %d, unfinished %d\n",
		j.Submitted, j.Completed, j.Failed, j.Cancelled, j.Unfinished)
	r := rep.Received
	fmt.Fprintf(b, "received   %d messages, %s text, %s binary, %d files\n", r.Messages, size(r.TextBytes), size(r.BinaryBytes), r.Files)
	if len(rep.Latency) > 0 {
		fmt.Fprintf(b, "latency ms %-15s %8s %9s %9s %9s %9s\n", "", "n", "p50", "p95", "p99", "max")
		for _, name := range figureNames {
			if sm := rep.Latency[name]; sm != nil {
				fmt.Fprintf(b, "           %-15s %8d %9.3f %9.3f %9.3f %9.3f\n", name, sm.N, sm.P50, sm.P95, sm.P99, sm.Max)
			}
		}
	}
	if len(rep.Errors) == 0 {
		b.WriteString("errors     none\n")
	}
	for _, k := range slices.Sorted(maps.Keys(rep.Errors)) {
		fmt.Fprintf(b, "error      %-30s %d\n", k, rep.Errors[k])
	}
	if rep.CPU != nil {
		fmt.Fprintf(b, "cpu        load generator %.2f s", rep.CPU.LoadSeconds)
		if rep.CPU.RelaySeconds != nil {
			fmt.Fprintf(b, ", relay %.2f s", *rep.CPU.RelaySeconds)
		}
		b.WriteString("\n")
	}
	rep.Handshake.text(b)
	rep.Memory.text(b)
	rep.LatencyMode.text(b)
	rep.Throughput.text(b)
	rep.Upload.text(b)
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
