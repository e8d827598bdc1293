package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// throughputReport compares relaying a file with downloading it straight
// from the upstream. A file's time runs from the moment the upstream began
// writing it (the harness's stamp in its first bytes) until the last byte
// is read: through the relay, that is the relay's download, its file
// message and binary frame; directly, a GET of the same file.
type throughputReport struct {
	FileBytes      int64    `json:"file_bytes"`
	Relay          *summary `json:"relay_file"`
	Direct         *summary `json:"direct_file"`
	RelayMiBps     float64  `json:"relay_mib_per_second"`  // file size / median time
	DirectMiBps    float64  `json:"direct_mib_per_second"` // file size / median time
	Ratio          float64  `json:"ratio"`                 // relay / direct, at the medians
	RelayAggMiBps  float64  `json:"relay_aggregate_mib_per_second"`
	DirectAggMiBps float64  `json:"direct_aggregate_mib_per_second"`
	DirectErrors   int      `json:"direct_errors"`
}

// runThroughput relays --jobs files per session, then downloads as many
// straight from the upstream with as many clients.
func runThroughput(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	stop, err := maybeSpawn(ctx, &cfg, stderr, []string{"--file-bytes", strconv.FormatInt(cfg.fileBytes, 10),
		"--step-delay", "1ms", "--concurrency", strconv.Itoa(max(cfg.sessions, 1))}, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	rep, err := runLoad(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	t := &throughputReport{FileBytes: rep.fileBytes, Relay: rep.Latency["file"]}
	rep.Throughput = t
	if t.Relay == nil {
		fmt.Fprintln(stderr, "spacerelay-load: no stamped files: run the relay with \"spacerelay-load serve --file-bytes N\", or use --spawn")
		return rep, nil
	}
	t.RelayAggMiBps = mibps(rep.Received.BinaryBytes, time.Duration(rep.ElapsedMS*float64(time.Millisecond)))
	if cfg.upstreamURL == "" {
		return rep, nil
	}
	start := time.Now()
	times, n, errs := downloads(ctx, cfg)
	t.DirectAggMiBps = mibps(n, time.Since(start))
	t.Direct, t.DirectErrors = summarize(times), errs
	if t.Direct != nil && t.FileBytes > 0 {
		t.RelayMiBps = float64(t.FileBytes) / (1 << 20) / (t.Relay.P50 / 1000)
		t.DirectMiBps = float64(t.FileBytes) / (1 << 20) / (t.Direct.P50 / 1000)
		t.Ratio = t.RelayMiBps / t.DirectMiBps
	}
	return rep, nil
}

func mibps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

// downloads GETs the stamped file --jobs times from each of --sessions
// clients, and returns the time of each and the bytes in all.
func downloads(ctx context.Context, cfg config) ([]time.Duration, int64, int) {
	client := directHTTP()
	defer client.CloseIdleConnections()
	u := strings.TrimRight(cfg.upstreamURL, "/") + "/gradio_api/file=/throughput/image.png"
	var (
		mu    sync.Mutex
		times []time.Duration
		total int64
		errs  int
		wg    sync.WaitGroup
	)
	for range max(cfg.sessions, 1) {
		wg.Go(func() {
			for range cfg.jobs {
				d, n, err := download(ctx, client, u)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					times, total = append(times, d), total+n
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return times, total, errs
}

// download GETs one stamped file and returns the time since its stamp.
func download(ctx context.Context, client *http.Client, u string) (time.Duration, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var head [16]byte
	if _, err := io.ReadFull(resp.Body, head[:]); err != nil {
		return 0, 0, err
	}
	if string(head[:8]) != fileMagic {
		return 0, 0, errors.New("the file has no stamp: is the upstream spacerelay-load serve --file-bytes?")
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, 0, err
	}
	return time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(head[8:])))), n + int64(len(head)), nil
}

func (t *throughputReport) text(b *strings.Builder) {
	if t == nil {
		return
	}
	fmt.Fprintf(b, "throughput file of %s, ms per file       n      p50      p95      p99      max   MiB/s at p50\n", size(t.FileBytes))
	for _, row := range []struct {
		name string
		s    *summary
		r    float64
	}{{"relay (upstream to browser)", t.Relay, t.RelayMiBps}, {"direct (upstream to client)", t.Direct, t.DirectMiBps}} {
		if row.s != nil {
			fmt.Fprintf(b, "           %-28s %6d %8.3f %8.3f %8.3f %8.3f %10.1f\n", row.name, row.s.N, row.s.P50, row.s.P95, row.s.P99, row.s.Max, row.r)
		}
	}
	if t.Direct != nil {
		fmt.Fprintf(b, "           relay/direct at p50: %.0f%%; aggregate MiB/s relay %.1f (jobs included), direct %.1f; direct errors %d\n",
			100*t.Ratio, t.RelayAggMiBps, t.DirectAggMiBps, t.DirectErrors)
	}
}
