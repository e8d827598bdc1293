package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// memoryReport is the memory mode's finding: the relay's memory at each
// count of idle sessions, and its growth per session from the first step.
type memoryReport struct {
	Steps    []memoryStep `json:"steps"`
	Profiles []string     `json:"profiles,omitempty"`
}

// memoryStep is the relay's memory with Sessions idle sessions open. The
// relay's Go heap is collected first (when --pprof-url is known); the
// *PerSession figures are the growth since the first step divided by the
// sessions added.
type memoryStep struct {
	Sessions        int     `json:"sessions"`
	RSSBeforeGC     int64   `json:"rss_before_gc_bytes"`            // VmRSS as the relay left it
	RSS             int64   `json:"rss_bytes"`                      // VmRSS after a GC, else process_resident_memory_bytes
	RSSAfterFree    int64   `json:"rss_after_free_bytes,omitempty"` // after debug.FreeOSMemory (serve's /debug/free)
	HeapInuse       int64   `json:"heap_inuse_bytes"`
	StackInuse      int64   `json:"stack_inuse_bytes"`
	Goroutines      int     `json:"goroutines"`
	LoadRSS         int64   `json:"load_rss_bytes"` // this process, the other end of the sockets
	BeforePerSess   float64 `json:"rss_before_gc_per_session_bytes,omitempty"`
	RSSPerSession   float64 `json:"rss_per_session_bytes,omitempty"`
	FreePerSession  float64 `json:"rss_after_free_per_session_bytes,omitempty"`
	HeapPerSession  float64 `json:"heap_per_session_bytes,omitempty"`
	StackPerSession float64 `json:"stack_per_session_bytes,omitempty"`
	GoroutinesPer   float64 `json:"goroutines_per_session,omitempty"`
	LoadPerSession  float64 `json:"load_rss_per_session_bytes,omitempty"`
}

// runMemory opens idle sessions up to each of --steps, measuring the
// relay at each, and closes them all at the end.
func runMemory(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	stop, err := maybeSpawn(ctx, &cfg, stderr, nil, nil)
	if err != nil {
		return nil, err
	}
	defer stop()
	cfg.hold = -1 // open until the end
	cfg.sessions = cfg.steps[len(cfg.steps)-1]
	ctx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	r, err := newLoadRun(cfg)
	if err != nil {
		return nil, err
	}
	cpu := startCPU(cfg.metricsFromURL())
	start := time.Now()
	mem := &memoryReport{}
	open := 0
	for i, n := range cfg.steps {
		ok := r.openAll(ctx, open, n-open)
		open = n
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "spacerelay-load: %d sessions asked for, %d more open; settling %v\n", n, ok, cfg.settle)
		sleepUntil(ctx, time.Now().Add(cfg.settle))
		st, err := measure(cfg, n)
		if err != nil {
			return nil, err
		}
		mem.Steps = append(mem.Steps, st)
		if i == len(cfg.steps)-1 && cfg.profileDir != "" && cfg.pprofURL != "" {
			mem.Profiles = profiles(cfg, stderr)
		}
	}
	perSession(mem.Steps)
	cancel() // closes every session
	rec, started := r.result()
	rep := newReport(cfg, rec, started, time.Since(start))
	rep.CPU = cpu.stop()
	rep.Memory = mem
	return rep, nil
}

// measure reads the relay's memory, after a GC if it can ask for one.
func measure(cfg config, sessions int) (memoryStep, error) {
	st := memoryStep{Sessions: sessions}
	if cfg.pid > 0 {
		st.RSSBeforeGC, _ = vmRSS(cfg.pid)
	}
	if cfg.pprofURL != "" {
		// Several GCs, as a relay that has run a while has had: each GC
		// halves a goroutine's stack that uses under a quarter of it, so
		// the stacks that grew while a session started (its hello) shrink
		// back over a few of them.
		for range 4 {
			if _, err := get(cfg.pprofURL + "/debug/pprof/heap?gc=1"); err != nil {
				return st, fmt.Errorf("memory: gc: %w", err)
			}
		}
	}
	m, err := scrape(cfg.metricsFromURL())
	if err != nil {
		return st, err
	}
	st.Sessions = int(m["spacerelay_sessions_open"])
	st.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	st.StackInuse = int64(m["go_memstats_stack_inuse_bytes"])
	st.Goroutines = int(m["go_goroutines"])
	st.RSS = int64(m["process_resident_memory_bytes"])
	if cfg.pid > 0 {
		if rss, err := vmRSS(cfg.pid); err == nil {
			st.RSS = rss
		}
	}
	if cfg.pprofURL != "" {
		if _, err := get(cfg.pprofURL + "/debug/free"); err == nil && cfg.pid > 0 {
			st.RSSAfterFree, _ = vmRSS(cfg.pid)
		}
	}
	st.LoadRSS, _ = vmRSS(os.Getpid())
	return st, nil
}

func perSession(steps []memoryStep) {
	if len(steps) < 2 {
		return
	}
	base := steps[0]
	for i := range steps[1:] {
		s := &steps[i+1]
		n := float64(s.Sessions - base.Sessions)
		if n <= 0 {
			continue
		}
		s.RSSPerSession = float64(s.RSS-base.RSS) / n
		s.BeforePerSess = float64(s.RSSBeforeGC-base.RSSBeforeGC) / n
		if s.RSSAfterFree > 0 && base.RSSAfterFree > 0 {
			s.FreePerSession = float64(s.RSSAfterFree-base.RSSAfterFree) / n
		}
		s.HeapPerSession = float64(s.HeapInuse-base.HeapInuse) / n
		s.StackPerSession = float64(s.StackInuse-base.StackInuse) / n
		s.GoroutinesPer = float64(s.Goroutines-base.Goroutines) / n
		s.LoadPerSession = float64(s.LoadRSS-base.LoadRSS) / n
	}
}

// profiles saves the relay's heap and goroutine profiles.
func profiles(cfg config, stderr io.Writer) []string {
	if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
		fmt.Fprintln(stderr, "spacerelay-load: profiles:", err)
		return nil
	}
	var saved []string
	for _, p := range []struct{ query, file string }{
		{"heap?gc=1", "heap.pb.gz"}, {"goroutine", "goroutine.pb.gz"}, {"goroutine?debug=1", "goroutine.txt"},
	} {
		if err := saveProfile(cfg.pprofURL, p.query, cfg.profileDir, p.file); err != nil {
			fmt.Fprintln(stderr, "spacerelay-load:", err)
			continue
		}
		saved = append(saved, cfg.profileDir+"/"+p.file)
	}
	return saved
}

func (m *memoryReport) text(b *strings.Builder) {
	if m == nil {
		return
	}
	b.WriteString("memory     sessions  rss0 MiB   rss MiB  free MiB  heap MiB stack MiB goroutines | per session: rss0 KiB  rss KiB  free KiB  heap KiB stack KiB goroutines  load KiB\n")
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	kib := func(f float64) float64 { return f / 1024 }
	for _, s := range m.Steps {
		fmt.Fprintf(b, "           %8d %9.1f %9.1f %9.1f %9.1f %9.1f %10d |           %8.2f %8.2f %9.2f %9.2f %9.2f %10.2f %9.2f\n",
			s.Sessions, mib(s.RSSBeforeGC), mib(s.RSS), mib(s.RSSAfterFree), mib(s.HeapInuse), mib(s.StackInuse), s.Goroutines,
			kib(s.BeforePerSess), kib(s.RSSPerSession), kib(s.FreePerSession), kib(s.HeapPerSession), kib(s.StackPerSession), s.GoroutinesPer, kib(s.LoadPerSession))
	}
	if len(m.Steps) > 0 {
		b.WriteString("           rss0: as the relay left it; rss: after four forced GCs; free: after debug.FreeOSMemory; per session: growth since the first step\n")
	}
	for _, p := range m.Profiles {
		fmt.Fprintf(b, "profile    %s\n", p)
	}
}
