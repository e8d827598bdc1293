package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startHarness runs "serve" in process with args on loopback ports, until
// the end of the test, and returns its ready line.
func startHarness(t *testing.T, args ...string) ready {
	t.Helper()
	cfg, err := parseServeFlags(append([]string{"--listen", "127.0.0.1:0", "--step-delay", "5ms"}, args...), false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, pw, io.Discard); pw.Close() }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	go io.Copy(io.Discard, pr)
	var r ready
	if err != nil || json.Unmarshal(line, &r) != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	return r
}

// load runs the command with args and --json, and returns its report.
func load(t *testing.T, args ...string) *report {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, append(args, "--json"), &out, &errb); err != nil {
		t.Fatalf("run(%q) = %v\n%s", args, err, errb.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %s: %v", out.String(), err)
	}
	return &rep
}

func TestLoad(t *testing.T) {
	r := startHarness(t, "--stamp", "--concurrency", "4")
	rep := load(t, "--url", r.URL, "--sessions", "4", "--jobs", "2", "--think", "10ms",
		"--inputs", `{"prompt":"load test","steps":3}`)
	if rep.Sessions.Opened != 4 || rep.Jobs.Completed != 8 || rep.Received.Files != 8 || len(rep.Errors) != 0 {
		t.Errorf("sessions %+v, jobs %+v, received %+v, errors %v; want 4 opened, 8 completed with 8 files, no error",
			rep.Sessions, rep.Jobs, rep.Received, rep.Errors)
	}
	for _, fig := range []string{"hello", "accepted", "first_progress", "result", "event_wire", "event_session"} {
		if s := rep.Latency[fig]; s == nil || s.N == 0 || s.P50 <= 0 || s.Max < s.P99 {
			t.Errorf("latency %s = %+v, want samples", fig, s)
		}
	}
	if n := rep.Latency["event_wire"].N; n < 8 || n > 24 { // the relay may drop progress events under backpressure
		t.Errorf("event_wire has %d samples, want 8 to 24 (3 progress events of 8 jobs)", n)
	}
	if rep.CPU == nil || rep.CPU.RelaySeconds == nil {
		t.Errorf("cpu = %+v, want the relay's from /metrics", rep.CPU)
	}
}

func TestErrorsByCode(t *testing.T) {
	r := startHarness(t, "--max-sessions", "2")
	rep := load(t, "--url", r.URL, "--sessions", "5", "--jobs", "2", "--parallel", "5", "--hold", "-1s",
		"--duration", "2s", "--inputs", `{"prompt":"raise:fox"}`)
	if rep.Sessions.Opened != 2 || rep.Errors["handshake:over_capacity"] != 3 || rep.Errors["job:upstream_error"] != 4 {
		t.Errorf("sessions %+v, errors %v; want 2 opened, 3 over_capacity, 4 upstream_error", rep.Sessions, rep.Errors)
	}
}

func TestDurationBoundsTheRun(t *testing.T) {
	r := startHarness(t)
	start := time.Now()
	rep := load(t, "--url", r.URL, "--sessions", "2", "--duration", "300ms", "--inputs", `{"prompt":"long","steps":200}`)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the run took %v, want about --duration", d)
	}
	if rep.Jobs.Unfinished != 2 || rep.Errors["timeout"] != 2 {
		t.Errorf("jobs %+v, errors %v; want 2 unfinished, 2 timeouts", rep.Jobs, rep.Errors)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ws://example.com/v1/ws"},
		{"--url", "ws://10.1.2.3:7860/v1/ws"},
		{"--url", "ws://[2001:db8::1]:7860/v1/ws"},
		{"--metrics-url", "http://192.168.1.1/metrics"},
		{"--mode", "throughput", "--upstream-url", "http://huggingface.co"},
		{"serve", "--listen", "0.0.0.0:7860"},
		{"serve", "--pprof", "10.0.0.1:6060"},
	} {
		var errb bytes.Buffer
		err := run(context.Background(), args, io.Discard, &errb)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("run(%q) = %v, want a usage error about loopback", args, err)
		}
	}
}

func TestRelayCPUsChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "latency", "--relay-cpus", "1"}, // without --spawn
		{"--mode", "latency", "--spawn", "--relay-cpus", "1; rm -rf /"},
		{"--mode", "latency", "--spawn", "--relay-cpus", "-c"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--relay-cpus") {
			t.Errorf("run(%q) = %v, want a usage error about --relay-cpus", args, err)
		}
	}
}

func TestModes(t *testing.T) {
	r := startHarness(t, "--stamp", "--file-bytes", "65536", "--concurrency", "3", "--pprof", "127.0.0.1:0")
	addrs := []string{"--url", r.URL, "--metrics-url", r.Metrics, "--pprof-url", r.Pprof, "--upstream-url", r.Upstream}
	t.Run("handshake", func(t *testing.T) {
		rep := load(t, append(addrs, "--mode", "handshake", "--sessions", "30")...)
		if h := rep.Handshake; h == nil || h.Sessions != 30 || h.HandshakesPerSecond <= 0 || h.RelayCPUPerOpen == nil {
			t.Errorf("handshake = %+v, want 30 sessions and rates", h)
		}
	})
	t.Run("memory", func(t *testing.T) {
		rep := load(t, append(addrs, "--mode", "memory", "--steps", "0,40", "--settle", "10ms", "--profile-dir", t.TempDir())...)
		m := rep.Memory
		if m == nil || len(m.Steps) != 2 || m.Steps[1].Sessions-m.Steps[0].Sessions != 40 || m.Steps[1].GoroutinesPer < 1 || len(m.Profiles) != 3 {
			t.Fatalf("memory = %+v, want 2 steps 40 sessions apart, goroutines per session, 3 profiles", m)
		}
	})
	t.Run("latency", func(t *testing.T) {
		rep := load(t, append(addrs, "--mode", "latency", "--sessions", "3", "--rate", "0", "--inputs", `{"prompt":"l","steps":3}`)...)
		l := rep.LatencyMode
		if l == nil || l.RelayWire == nil || l.RelaySession == nil || l.DirectWire == nil || l.DirectJobs.Completed != 3 {
			t.Errorf("latency = %+v, want relay and direct figures", l)
		}
	})
	t.Run("throughput", func(t *testing.T) {
		rep := load(t, append(addrs, "--mode", "throughput", "--jobs", "3")...)
		th := rep.Throughput
		if th == nil || th.FileBytes != 65536 || th.Relay == nil || th.Relay.N != 3 || th.Direct == nil || th.Direct.N != 3 || th.Ratio <= 0 {
			t.Errorf("throughput = %+v, want 3 files each way of 64 KiB", th)
		}
	})
}

// TestWSConnMessages checks the client against frames coder/websocket
// does not send: a fragmented message with a ping inside it, and a close.
func TestWSConnMessages(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	c := &wsConn{conn: client, br: bufio.NewReader(client), limit: 1 << 10}
	go func() {
		server.Write([]byte{0x01, 3, 'a', 'b', 'c'})
		server.Write([]byte{0x89, 2, 'h', 'i'})
		pong := make([]byte, 8)
		io.ReadFull(server, pong)
		if pong[0] != 0x8a || pong[1] != 0x82 || pong[6]^pong[2] != 'h' || pong[7]^pong[3] != 'i' {
			t.Errorf("pong % x, want a masked pong with \"hi\"", pong)
		}
		server.Write([]byte{0x80, 2, 'd', 'e'})
		server.Write([]byte{0x88, 2, 0x03, 0xe8})
		io.Copy(io.Discard, server)
	}()
	op, r, err := c.next()
	if err != nil || op != opText {
		t.Fatalf("next() = %d, %v; want a text message", op, err)
	}
	b, err := io.ReadAll(r)
	if string(b) != "abcde" || err != nil {
		t.Errorf("message %q, %v; want \"abcde\"", b, err)
	}
	_, _, err = c.next()
	if closeStatus(err) != 1000 {
		t.Errorf("next() = %v, want close 1000", err)
	}
	c.closeNow()
}
