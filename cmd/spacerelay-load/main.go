// Command spacerelay-load is the load generator and measuring harness of
// spacerelay (issue 5). It talks to a relay on this machine only: every
// address it is given must be loopback (127.0.0.0/8, ::1 or localhost),
// and it refuses any other with an error. Every run is bounded: at most
// --sessions sessions and at most --duration (default 2m), after which it
// closes what is left and reports.
//
// # Modes
//
//	spacerelay-load [flags]                      the load generator (--mode load)
//	spacerelay-load --mode handshake [flags]     handshakes per second, upgrade to hello
//	spacerelay-load --mode memory [flags]        relay memory per idle session
//	spacerelay-load --mode latency [flags]       added latency of the relay per event
//	spacerelay-load --mode throughput [flags]    relaying a file vs downloading it directly
//	spacerelay-load serve [flags]                a relay to measure (see below)
//	spacerelay-load demo [flags]                 the demo Space alone, for serve --upstream
//
// In load mode each of --sessions sessions opens a WebSocket (at --rate
// sessions per second, 0 for as fast as --parallel handshakes in flight
// allow) with an X-IP-Token of its own, so that no two share a quota;
// waits for hello; submits --jobs jobs one after another (--endpoint,
// --inputs), following each to its terminal message, --think apart; keeps
// the socket open and idle for --hold (a negative --hold: until
// --duration); and closes it normally.
//
// The other modes run the load generator in a preset way and read the
// relay's /metrics (and, from a relay started by "serve", its pprof
// listener and stamps). With --spawn they start that relay themselves, as
// a child process ("spacerelay-load serve" with the settings the mode
// needs), and stop it at the end; otherwise point them at a running relay
// with --url, --metrics-url, --pprof-url, --upstream-url and --pid.
//
// "serve" runs a relay exactly as cmd/spacerelay builds it, over the
// embedded demo Space (or over --upstream), plus what measuring needs and
// a production relay must not have: a net/http/pprof listener (--pprof),
// an endpoint that returns freed memory to the OS (GET /debug/free on the
// pprof listener), a demo Space that runs --concurrency jobs at once,
// event stamps (--stamp) and stamped files of a chosen size
// (--file-bytes). It prints one JSON line on stdout when it is ready:
//
//	{"url":"ws://127.0.0.1:…/v1/ws","metrics":"http://…/metrics","pprof":"http://…","upstream":"http://…","pid":123}
//
// "demo" serves the demo Space alone, with the same demo flags, and prints
// {"upstream":"http://…","pid":124}. The latency and throughput modes
// spawn it as a process of its own, with "serve --upstream" in front of
// it, so that the upstream's work does not run in the relay's process (a
// real Space never does).
//
// # Measurements
//
// Each measurement of issue 5 is one command (for a Taskfile); --spawn
// starts the relay to measure, and --json gives the report to scripts:
//
//	spacerelay-load --mode handshake --spawn                 # 10,000 sessions, upgrade to hello
//	spacerelay-load --mode memory --spawn --profile-dir prof # idle sessions at 0, 1,000, 10,000
//	spacerelay-load --mode latency --spawn                   # 1,000 concurrent jobs, stamped events
//	taskset -c 0 spacerelay-load --mode latency --spawn --relay-cpus 1   # the relay on a core of its own
//	spacerelay-load --mode throughput --spawn                # a 1 MiB file, relayed vs direct
//
// # Stamps
//
// With --stamp, the harness writes the wall-clock time into the "desc" of
// every progress bar twice: "w=<unix ns>" when the demo Space writes the
// SSE event on its socket, and "e=<unix ns>" when the relay's upstream
// client hands the parsed event to the session. A load generator that gets
// the progress message computes now-w (upstream socket to browser, the
// "event_wire" figure) and now-e (relay session to browser,
// "event_session"). With --file-bytes N, every output file the demo Space
// serves is N bytes: "SRLSTAMP", the time it began writing the response
// (8 bytes, big-endian unix ns), then random bytes; a received file gives
// the "file" figure (upstream begins writing to browser has it all).
//
// # JSON output
//
// With --json, a run prints one JSON object. Times are milliseconds.
//
//	{
//	  "mode": "load",
//	  "url": "ws://127.0.0.1:7860/v1/ws",
//	  "config": {"sessions":100,"rate":0,"parallel":256,"jobs":1,"think_ms":0,
//	             "hold_ms":0,"duration_ms":120000,"endpoint":"/generate","inputs":{…}},
//	  "elapsed_ms": 1234.5,
//	  "sessions": {"started":100,"opened":100,"failed":0,"handshakes_per_second":812.3},
//	  "jobs": {"submitted":100,"completed":100,"failed":0,"cancelled":0,"unfinished":0},
//	  "received": {"messages":1300,"text_bytes":123456,"binary_bytes":987654,"files":100},
//	  "latency": {                        // only the figures that have samples
//	    "hello":          {"n":100,"p50_ms":…,"p95_ms":…,"p99_ms":…,"max_ms":…},
//	    "accepted":       {…}, "first_progress": {…}, "result": {…},
//	    "event_wire":     {…}, "event_session": {…}, "file": {…}
//	  },
//	  "errors": {"handshake:over_capacity": 3, "job:quota_exceeded": 1},
//	  "cpu": {"load_seconds": 1.2, "relay_seconds": 0.8},   // relay: from /metrics, if reachable
//	  "memory":     {…},   // --mode memory: see memoryReport
//	  "latency_mode": {…}, // --mode latency: see latencyReport
//	  "throughput": {…}    // --mode throughput: see throughputReport
//	}
//
// Error keys: "handshake:<code>" for a refused upgrade (the code of its JSON
// body, or "http_<status>", or of the close frame that refused the socket
// before its hello: missing_token, too_many_sessions, over_capacity,
// shutting_down, upstream_unavailable), "dial:<reason>" for a connection that failed,
// "job:<code>" for a job that ended with an error message, "message:<code>"
// for an error without a job id, "closed:<code>" for a socket the relay
// closed, "protocol:<what>" for a message out of place, and "timeout" for a
// job still unfinished at --duration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spacerelay-load:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// A usageError is a bad flag or value: exit code 2.
type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "serve" || args[0] == "demo") {
		cfg, err := parseServeFlags(args[1:], args[0] == "demo", stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if n, err := raiseFileLimit(); err == nil && cfg.sessions+64 > n {
		fmt.Fprintf(stderr, "spacerelay-load: warning: %d sessions need more file descriptors than the limit of %d\n", cfg.sessions, n)
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := runMode(ctx, cfg, stderr)
	if rep != nil {
		if werr := rep.write(stdout, cfg.json); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func runMode(ctx context.Context, cfg config, stderr io.Writer) (*report, error) {
	switch cfg.mode {
	case "memory":
		return runMemory(ctx, cfg, stderr)
	case "latency":
		return runLatency(ctx, cfg, stderr)
	case "throughput":
		return runThroughput(ctx, cfg, stderr)
	case "handshake":
		return runHandshake(ctx, cfg, stderr)
	}
	return runLoad(ctx, cfg, nil)
}
