package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// uploadReport is the upload mode's finding: the time of --jobs uploads of
// --file-bytes each through the relay (the page's protocol: upload, binary
// frames within the window, upload_progress, uploaded) and as many
// straight to the relay's upstream (a streaming multipart POST to its
// upload route with the relay's own upstream client), alternated.
type uploadReport struct {
	Method         string     `json:"method"`
	FileBytes      int64      `json:"file_bytes"`
	ChunkBytes     int64      `json:"chunk_bytes"`
	Relay          *summary   `json:"relay_upload"`
	Direct         *summary   `json:"direct_upload"`
	RelayMiBps     float64    `json:"relay_mib_per_second"`  // file size / median time
	DirectMiBps    float64    `json:"direct_mib_per_second"` // file size / median time
	Ratio          float64    `json:"ratio"`                 // relay / direct, at the medians
	RelayCPUPerMiB *float64   `json:"relay_cpu_ms_per_mib,omitempty"`
	LoadCPUPerMiB  float64    `json:"load_cpu_ms_per_mib"` // this process, through the relay
	RelayRSS       *rssReport `json:"relay_rss,omitempty"`
	LoadAverage    []string   `json:"load_average,omitempty"` // /proc/loadavg before and after
	Profile        string     `json:"profile,omitempty"`
}

// rssReport is the relay's resident memory over the measured uploads.
type rssReport struct {
	Before int64 `json:"before_bytes"` // VmRSS after the warm-up uploads
	Peak   int64 `json:"peak_bytes"`   // VmHWM, reset after the warm-up where Linux allows
	After  int64 `json:"after_bytes"`  // VmRSS at the end
	Reset  bool  `json:"peak_reset"`   // false: Peak may come from before the uploads
}

const uploadMethod = "an upload's time runs from the page's upload message to its uploaded message (relay), or from the start of the POST to its answer (direct); " +
	"the two alternate, after one warm-up upload of each; MiB/s = file size / median time"

// sinkPath is the demo Space's upload route, for the direct uploads.
const sinkPath = "/gradio_api/upload"

// profileSeconds is how long the relay's CPU profile runs, after the
// measured uploads (a variable for the tests).
var profileSeconds = 5

// runUpload measures uploads through the relay against uploads straight
// to its upstream.
func runUpload(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	limit := []string{"--max-upload-bytes", strconv.FormatInt(cfg.fileBytes, 10)}
	demo := slices.Clone(limit)
	if cfg.uploadSink {
		demo = append(demo, "--upload-sink")
	}
	stop, err := maybeSpawn(ctx, &cfg, stderr, demo, limit)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	up := &uploadReport{Method: uploadMethod, FileBytes: cfg.fileBytes, LoadAverage: []string{loadAverage()}}
	rep := newReport(cfg, &recorder{}, 0, 0)
	rep.Upload = up
	b, err := newUploadBench(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer b.close()
	up.ChunkBytes = b.relay.limits.Chunk
	start := time.Now()
	err = b.measure(ctx, cfg, up)
	rep.ElapsedMS = ms(time.Since(start))
	rep.Jobs = jobsReport{Submitted: b.done + b.failed, Completed: b.done, Failed: b.failed}
	rep.Sessions = sessionsReport{Started: b.relay.sessions, Opened: b.relay.sessions}
	rep.Errors = cmpInit(b.errors)
	if err != nil {
		return rep, err
	}
	if cfg.profileDir != "" && cfg.pprofURL != "" {
		up.Profile, err = b.profile(ctx, cfg)
		if err != nil {
			fmt.Fprintln(stderr, "spacerelay-load:", err)
		}
	}
	up.LoadAverage = append(up.LoadAverage, loadAverage())
	return rep, nil
}

// uploadBench holds the two ways to the upstream and what they recorded.
type uploadBench struct {
	data    []byte
	relay   *pageUploader
	direct  *upstream.Client // nil without --upstream-url
	metrics string           // the relay's /metrics, or ""
	pid     int

	relayTimes, directTimes []time.Duration
	relayCPU                float64 // seconds, over the measured relay uploads; -1: unknown
	loadCPU                 float64 // seconds of this process, over the same
	done, failed            int
	errors                  map[string]int
}

func newUploadBench(ctx context.Context, cfg config) (*uploadBench, error) {
	b := &uploadBench{data: make([]byte, cfg.fileBytes), metrics: cfg.metricsFromURL(), pid: cfg.pid}
	rand.NewChaCha8([32]byte{'u', 'p'}).Read(b.data) // random: nothing on the way can compress it
	p, err := dialUploader(ctx, cfg)
	if err != nil {
		return nil, err
	}
	b.relay = p
	if cfg.upstreamURL != "" {
		b.direct, err = upstream.New(upstream.Config{Target: cfg.upstreamURL, HTTP: directHTTP()})
		if err == nil {
			_, err = b.direct.API(ctx)
		}
		if err != nil {
			p.close()
			return nil, fmt.Errorf("upload: direct: %w", err)
		}
	}
	return b, nil
}

func (b *uploadBench) close() {
	b.relay.close()
	if b.direct != nil {
		b.direct.CloseIdleConnections()
	}
}

// measure runs one warm-up upload each way, then --jobs each way,
// alternated (and in turn each way first, so that neither always follows
// the other), and fills up.
func (b *uploadBench) measure(ctx context.Context, cfg config, up *uploadReport) error {
	if _, err := b.viaRelay(ctx, cfg); err != nil {
		return fmt.Errorf("upload: warm-up through the relay: %w", err)
	}
	if _, err := b.straight(ctx, cfg); err != nil {
		return fmt.Errorf("upload: warm-up direct: %w", err)
	}
	rss := b.startRSS()
	b.relayCPU = 0
	for i := range cfg.jobs {
		ways := []func(context.Context, config) (time.Duration, error){b.measuredRelay, b.measuredDirect}
		if i%2 == 1 {
			slices.Reverse(ways)
		}
		for _, way := range ways {
			if err := b.record(way(ctx, cfg)); err != nil {
				return err
			}
		}
	}
	up.RelayRSS = b.stopRSS(rss)
	up.Relay, up.Direct = summarize(b.relayTimes), summarize(b.directTimes)
	mib := float64(cfg.fileBytes) / (1 << 20)
	if up.Relay != nil {
		up.RelayMiBps = mib / (up.Relay.P50 / 1000)
		up.LoadCPUPerMiB = b.loadCPU * 1000 / (mib * float64(up.Relay.N))
		if b.relayCPU >= 0 {
			per := b.relayCPU * 1000 / (mib * float64(up.Relay.N))
			up.RelayCPUPerMiB = &per
		}
	}
	if up.Direct != nil {
		up.DirectMiBps = mib / (up.Direct.P50 / 1000)
	}
	if up.Relay != nil && up.Direct != nil {
		up.Ratio = up.RelayMiBps / up.DirectMiBps
	}
	return nil
}

// record counts one measured upload's outcome. An upload the relay or the
// upstream refused is counted and the run goes on; a broken socket or the
// end of --duration stops it.
func (b *uploadBench) record(_ time.Duration, err error) error {
	if err == nil {
		b.done++
		return nil
	}
	b.failed++
	b.errors = cmpInit(b.errors)
	b.errors[uploadErrorKey(err)]++
	var re *relayError
	var ue *upstream.Error
	if errors.As(err, &re) || errors.As(err, &ue) && !errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return fmt.Errorf("upload: %w", err)
}

// measuredRelay uploads once through the relay and records its time and
// the CPU both processes spent on it.
func (b *uploadBench) measuredRelay(ctx context.Context, cfg config) (time.Duration, error) {
	before, ok := b.relayCPUNow()
	self := selfCPU()
	d, err := b.viaRelay(ctx, cfg)
	b.loadCPU += selfCPU() - self
	if after, ok2 := b.relayCPUNow(); ok && ok2 && b.relayCPU >= 0 {
		b.relayCPU += after - before
	} else {
		b.relayCPU = -1
	}
	if err == nil {
		b.relayTimes = append(b.relayTimes, d)
	}
	return d, err
}

func (b *uploadBench) measuredDirect(ctx context.Context, cfg config) (time.Duration, error) {
	if b.direct == nil {
		return 0, nil
	}
	d, err := b.straight(ctx, cfg)
	if err == nil {
		b.directTimes = append(b.directTimes, d)
	}
	return d, err
}

func (b *uploadBench) relayCPUNow() (float64, bool) {
	if b.metrics == "" {
		return 0, false
	}
	m, err := scrape(b.metrics)
	if err != nil {
		return 0, false
	}
	v, ok := m["process_cpu_seconds_total"]
	return v, ok
}

// viaRelay uploads the file through the relay, in a session that has room
// for it (a new one when the last has used its allowance).
func (b *uploadBench) viaRelay(ctx context.Context, cfg config) (time.Duration, error) {
	if err := b.relay.roomFor(ctx, cfg, int64(len(b.data))); err != nil {
		return 0, err
	}
	return b.relay.upload(b.data)
}

// straight uploads the file to the upstream with the relay's own client,
// as a visitor's session of the relay does.
func (b *uploadBench) straight(ctx context.Context, cfg config) (time.Duration, error) {
	s := b.direct.NewSession(http.Header{cfg.header: {"upload-direct-" + strconv.FormatInt(time.Now().UnixNano(), 36)}})
	defer s.Close()
	start := time.Now()
	_, err := s.Upload(ctx, upstream.Upload{Name: "bench.bin", MIME: "application/octet-stream",
		Size: int64(len(b.data)), Body: bytes.NewReader(b.data)}, int64(len(b.data)))
	return time.Since(start), err
}

// startRSS resets the relay's peak of resident memory and reads its
// VmRSS; nil where it cannot be read.
func (b *uploadBench) startRSS() *rssReport {
	if b.pid <= 0 {
		return nil
	}
	// Reset first: the peak is then at least the VmRSS read after it.
	reset := os.WriteFile("/proc/"+strconv.Itoa(b.pid)+"/clear_refs", []byte("5"), 0) == nil
	rss, err := procStatus(b.pid, "VmRSS")
	if err != nil {
		return nil
	}
	return &rssReport{Before: rss, Reset: reset}
}

func (b *uploadBench) stopRSS(r *rssReport) *rssReport {
	if r == nil {
		return nil
	}
	r.Peak, _ = procStatus(b.pid, "VmHWM")
	r.After, _ = procStatus(b.pid, "VmRSS")
	return r
}

// profile takes the relay's CPU profile over profileSeconds of uploads
// through it, after the measured ones, and returns where it is saved.
func (b *uploadBench) profile(ctx context.Context, cfg config) (string, error) {
	if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
		return "", fmt.Errorf("profile: %w", err)
	}
	file := filepath.Join(cfg.profileDir, "upload-cpu.pb.gz")
	done := make(chan error, 1)
	go func() {
		done <- saveProfile(cfg.pprofURL, "profile?seconds="+strconv.Itoa(profileSeconds), cfg.profileDir, "upload-cpu.pb.gz")
	}()
	for {
		select {
		case err := <-done:
			return file, err
		default:
		}
		if _, err := b.viaRelay(ctx, cfg); err != nil {
			return "", fmt.Errorf("profile: %w", errors.Join(err, <-done))
		}
	}
}

// uploadErrorKey names a failed upload for the report's errors.
func uploadErrorKey(err error) string {
	var re *relayError
	var ue *upstream.Error
	switch {
	case errors.As(err, &re):
		return "upload:" + re.code
	case errors.As(err, &ue):
		return "direct:" + string(ue.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "upload:other"
}

// loadAverage is /proc/loadavg's first three figures, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// procStatus reads a field of /proc/PID/status (VmRSS, VmHWM) in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func (u *uploadReport) text(b *strings.Builder) {
	if u == nil {
		return
	}
	fmt.Fprintf(b, "upload     files of %s, frames of %s, ms per file       n      p50      p95      p99      max   MiB/s at p50\n", size(u.FileBytes), size(u.ChunkBytes))
	for _, row := range []struct {
		name string
		s    *summary
		r    float64
	}{{"relay (page protocol)", u.Relay, u.RelayMiBps}, {"direct (multipart POST)", u.Direct, u.DirectMiBps}} {
		if row.s != nil {
			fmt.Fprintf(b, "           %-34s %6d %8.1f %8.1f %8.1f %8.1f %10.1f\n", row.name, row.s.N, row.s.P50, row.s.P95, row.s.P99, row.s.Max, row.r)
		}
	}
	if u.Relay != nil && u.Direct != nil {
		fmt.Fprintf(b, "           relay/direct at p50: %.0f%%\n", 100*u.Ratio)
	}
	if u.RelayCPUPerMiB != nil {
		fmt.Fprintf(b, "           cpu per MiB through the relay: relay %.2f ms, load generator %.2f ms\n", *u.RelayCPUPerMiB, u.LoadCPUPerMiB)
	}
	if r := u.RelayRSS; r != nil {
		fmt.Fprintf(b, "           relay VmRSS %.1f MiB before, %.1f MiB after, peak %.1f MiB (+%.1f MiB; peak reset: %v)\n",
			mibOf(r.Before), mibOf(r.After), mibOf(r.Peak), mibOf(r.Peak-r.Before), r.Reset)
	}
	if len(u.LoadAverage) > 0 {
		fmt.Fprintf(b, "           load average (1, 5, 15 min): %s\n", strings.Join(u.LoadAverage, " before, ")+" after")
	}
	if u.Profile != "" {
		fmt.Fprintf(b, "profile    %s (the relay's CPU over %d s of uploads through it)\n", u.Profile, profileSeconds)
	}
}

func mibOf(n int64) float64 { return float64(n) / (1 << 20) }

// pageUploader is a page that uploads files through the relay: one
// session, one file at a time, frames of the hello's upload_chunk_bytes,
// never more than the hello's upload_window chunks in flight past the
// last upload_progress. One goroutine uses it.
type pageUploader struct {
	conn     *wsConn
	limits   uploadLimits
	used     int64 // bytes uploaded in this session
	n        int   // uploads so far, for ids
	sessions int   // sessions opened, this one included
}

// uploadLimits is what hello says about uploads.
type uploadLimits struct {
	Max     int64 `json:"max_upload_bytes"`
	Session int64 `json:"max_session_upload_bytes"`
	Chunk   int64 `json:"upload_chunk_bytes"`
	Window  int64 `json:"upload_window"` // chunks in flight past upload_progress (PROTOCOL.md 9)
}

// relayMessage is what the uploader reads of a relay message.
type relayMessage struct {
	Type     string       `json:"type"`
	ID       string       `json:"id"`
	Code     string       `json:"code"`
	Message  string       `json:"message"`
	Received int64        `json:"received"`
	Limits   uploadLimits `json:"limits"`
	Features []string     `json:"features"`
}

// relayError is an upload the relay refused or failed.
type relayError struct{ code, message string }

func (e *relayError) Error() string { return "the relay: " + e.code + ": " + e.message }

func dialUploader(ctx context.Context, cfg config) (*pageUploader, error) {
	u, err := url.Parse(cfg.url)
	if err != nil {
		return nil, err
	}
	addr, err := resolveLoopback(u)
	if err != nil {
		return nil, err
	}
	token := "upload-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	conn, _, err := wsDial(ctx, loopbackDialer(), addr, u, http.Header{cfg.header: {token}, "Sec-WebSocket-Protocol": {"spacerelay.v1"}})
	if err != nil {
		return nil, fmt.Errorf("upload: dial: %w", err)
	}
	p := &pageUploader{conn: conn}
	m, err := p.read()
	switch {
	case err != nil:
		err = fmt.Errorf("upload: hello: %w", err)
	case m.Type != "hello":
		err = fmt.Errorf("upload: the first message is %q, not hello", m.Type)
	case !slices.Contains(m.Features, "upload") || m.Limits.Chunk <= 0 || m.Limits.Window <= 0:
		err = errors.New("upload: the relay's hello offers no uploads")
	case m.Limits.Max < cfg.fileBytes:
		err = fmt.Errorf("upload: the relay takes files of up to %d bytes, fewer than --file-bytes %d", m.Limits.Max, cfg.fileBytes)
	}
	if err != nil {
		conn.closeNow()
		return nil, err
	}
	p.limits, p.sessions = m.Limits, 1
	return p, nil
}

// roomFor opens a new session if this one's allowance has no room for
// size more bytes.
func (p *pageUploader) roomFor(ctx context.Context, cfg config, size int64) error {
	if p.used+size <= p.limits.Session {
		return nil
	}
	next, err := dialUploader(ctx, cfg)
	if err != nil {
		return err
	}
	p.close()
	next.sessions += p.sessions
	*p = *next
	return nil
}

func (p *pageUploader) close() {
	if p.conn.writeClose(1000) == nil {
		p.conn.next() // the relay's answer: its close frame
	}
	p.conn.closeNow()
}

// upload sends data as one file and returns the time from its upload
// message to its uploaded.
func (p *pageUploader) upload(data []byte) (time.Duration, error) {
	p.n++
	id := "u" + strconv.Itoa(p.n)
	ann, _ := json.Marshal(map[string]any{"type": "upload", "id": id, "name": "bench.bin", "mime": "application/octet-stream", "size": len(data)})
	start := time.Now()
	if err := p.conn.write(opText, ann); err != nil {
		return 0, err
	}
	size, chunk := int64(len(data)), p.limits.Chunk
	var sent, received int64
	for {
		next := min(chunk, size-sent)
		if sent < size && sent+next-received <= p.limits.Window*chunk {
			if err := p.conn.write(opBinary, data[sent:sent+next]); err != nil {
				return 0, err
			}
			sent += next
			continue
		}
		m, err := p.read()
		if err != nil {
			return 0, err
		}
		if m.ID != id {
			continue // a pong, or what an earlier upload left
		}
		switch m.Type {
		case "upload_progress":
			received = max(received, m.Received)
		case "uploaded":
			p.used += size
			return time.Since(start), nil
		case "error":
			return 0, &relayError{m.Code, m.Message}
		default:
			return 0, &relayError{"protocol", "unexpected " + m.Type + " for an upload"}
		}
	}
}

// read reads the next text message; binary frames are skipped.
func (p *pageUploader) read() (relayMessage, error) {
	for {
		op, r, err := p.conn.next()
		if err != nil {
			return relayMessage{}, err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return relayMessage{}, err
		}
		if op != opText {
			continue
		}
		var m relayMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return relayMessage{}, fmt.Errorf("a message that is not JSON: %w", err)
		}
		return m, nil
	}
}

// uploadSink answers the Space's upload route itself: it reads the body to
// its end, keeping nothing, and answers one path as Gradio does. The rest
// goes to next. With it, an upload costs the Space nearly nothing, so the
// upload mode measures what the relay adds, not the Space's own cost.
func uploadSink(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != sinkPath {
			next.ServeHTTP(w, r)
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "the upload broke off", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `["/tmp/gradio/upload-sink/%d/bench.bin"]`, n)
	})
}
