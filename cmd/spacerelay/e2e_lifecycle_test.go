package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// dropBound is how soon after a socket breaks its running job must be
// cancelled upstream: a product requirement, not a performance target.
const dropBound = 2 * time.Second

func testCancel(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	a, b := e.visitor(t, ctx), e.visitor(t, ctx)
	pa, pb := "cancel running "+uuid.NewString(), "cancel queued "+uuid.NewString()
	mustSubmit(t, a, "c1", "/generate", map[string]any{"prompt": pa, "steps": 40})
	ma := mustUntil(t, a, "c1", "running", isProgress)
	// The Space runs one job at a time, so b's job waits behind a's.
	mustSubmit(t, b, "c1", "/generate", map[string]any{"prompt": pb, "steps": 20})
	mb := mustUntil(t, b, "c1", "queued", isQueued)

	for _, j := range []struct {
		c     *wsClient
		msgs  []relayMsg
		label string
	}{{b, mb, "queued"}, {a, ma, "running"}} {
		if err := j.c.cancel("c1"); err != nil {
			t.Fatal(err)
		}
		rest, err := j.c.job("c1")
		if err != nil {
			t.Fatal(err)
		}
		all := append(j.msgs, rest...)
		if _, err := checkJob(all); err != nil {
			t.Fatalf("cancelled %s job: %v\n%s", j.label, err, dump(all))
		}
		if last := all[len(all)-1]; last.Type != "cancelled" {
			t.Errorf("cancelled %s job ended with %s, want cancelled", j.label, last)
		}
	}
	start := time.Now()
	for _, id := range []string{"c1", "never-submitted"} { // finished, unknown
		if err := a.cancel(id); err != nil {
			t.Fatal(err)
		}
		m, err := a.expect(func(m relayMsg) bool { return m.Type == "error" })
		if err != nil {
			t.Fatal(err)
		}
		if m.Code != "unknown_job" || (m.ID != nil && m.id() != id) {
			t.Errorf("cancel %s: got %s, want an unknown_job error", id, m)
		}
	}
	if err := a.quiet("c1"); err != nil {
		t.Error(err)
	}
	if !e.hasJournal() {
		return
	}
	if got, err := waitJournal(ctx, e.space, pa, "started cancelled", start, 5*time.Second); err != nil {
		t.Errorf("cancelled running job: %v (got %q)", err, got)
	}
	// A queued job never runs where the Space can drop it; Gradio 5 runs
	// it later, and the relay must stop it then (b's socket is still open).
	got := settledJournal(t, ctx, e.space, pb)
	if got != "" && (e.dequeues || got != "started cancelled") {
		t.Errorf("cancelled queued job: journal %q, want it never to run", got)
	}
	t.Logf("journal of the cancelled queued job: %q", got)
}

// settledJournal waits up to two seconds for prompt's journal to show an
// end (or to stay empty), and returns its events.
func settledJournal(t *testing.T, ctx context.Context, space, prompt string) string {
	t.Helper()
	var got string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(pollEvery) {
		got = journalEvents(mustJournal(t, ctx, space, prompt))
		if got != "" && !strings.HasSuffix(got, "started") {
			break
		}
	}
	return got
}

func testDrop(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	prompt := "dropped " + uuid.NewString()
	const steps = 59
	mustSubmit(t, c, "d", "/generate", map[string]any{"prompt": prompt, "steps": steps})
	mustUntil(t, c, "d", "running", isProgress)
	first := time.Now()
	mustUntil(t, c, "d", "at step 2", func(m relayMsg) bool {
		return isProgress(m) && len(m.Steps) == 1 && m.Steps[0].Index != nil && *m.Steps[0].Index >= 2
	})
	step := time.Since(first) / 2
	dropped := time.Now()
	c.drop() // TCP closed, no close frame

	if e.hasJournal() {
		if _, err := waitJournal(ctx, e.space, prompt, "started cancelled", dropped, dropBound); err != nil {
			later, _ := waitJournal(ctx, e.space, prompt, "started cancelled", dropped, 10*time.Second)
			t.Errorf("%v; %v after the drop it read %q", err, time.Since(dropped).Round(time.Millisecond), later)
		}
		return
	}
	// The demo's journal is out of reach, but its one GPU slot is not: a
	// job submitted after the drop starts at once if the dropped job was
	// cancelled, and only after its remaining steps if it was not.
	left := time.Duration(steps-3) * step
	if left < dropBound+time.Second {
		t.Skipf("the dropped job had only %v left: too little to tell", left)
	}
	next := e.visitor(t, ctx)
	mustSubmit(t, next, "n", "/generate", map[string]any{"prompt": "after drop", "steps": 1})
	msgs := mustUntil(t, next, "n", "started", func(m relayMsg) bool { return m.Type == "started" })
	if waited := time.Since(dropped); waited > dropBound {
		t.Errorf("a job submitted after the drop started %v after it, want within %v (the dropped job had %v left)",
			waited.Round(time.Millisecond), dropBound, left)
	}
	rest, err := next.job("n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkJob(append(msgs, rest...)); err != nil {
		t.Errorf("the job after the drop: %v\n%s%s", err, dump(msgs), dump(rest))
	}
}

// testLeaks checks that sessions leave nothing behind in the relay: the
// open-sessions gauge returns to 0, and the goroutine count to its baseline,
// read before the first socket opens.
//
// The relay's upstream HTTP client keeps idle connections for reuse, two
// goroutines each. Gradio's server (uvicorn) closes an idle connection after
// 5 s, so with a real Gradio the count comes back to the baseline itself.
// The embedded demo Space is a Go server in the relay's own process that
// keeps them (a third goroutine each): there the baseline is read after a
// first round of sessions has filled the pool.
func testLeaks(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	r := startRelay(t, e.bin, e.space)
	start := mustMetrics(t, ctx, r)
	if _, ok := start["go_goroutines"]; !ok {
		t.Fatal("GET /metrics has no go_goroutines")
	}
	if got := start["spacerelay_sessions_open"]; got != 0 {
		t.Errorf("spacerelay_sessions_open = %v before any socket", got)
	}
	if _, ok := start["spacerelay_upstream_connections"]; !ok {
		t.Fatal("GET /metrics has no spacerelay_upstream_connections")
	}
	// Idle upstream connections stay pooled (for 90 s), as many as were
	// busy at once: each holds the transport's two goroutines, and with
	// the embedded demo Space its server's one. They are not leaks.
	perConn := 2.0
	if !e.hasJournal() { // the embedded demo Space
		perConn = 3
	}
	own := func(m map[string]float64) float64 {
		return m["go_goroutines"] - perConn*m["spacerelay_upstream_connections"]
	}
	base := own(start)
	if !e.hasJournal() {
		sessionsRound(t, ctx, r)
		settledGoroutines(t, ctx, r)
		base = own(mustMetrics(t, ctx, r))
	}
	sessionsRound(t, ctx, r)
	sessionsRound(t, ctx, r)

	// A small constant slack: the /metrics request's own goroutines, and
	// a connection closing or opening as it is counted.
	const slack = 6
	var m map[string]float64
	deadline := time.Now().Add(15 * time.Second)
	for {
		m = mustMetrics(t, ctx, r)
		if m["spacerelay_sessions_open"] == 0 && own(m) <= base+slack {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after every socket closed: spacerelay_sessions_open = %v, go_goroutines = %v with %v upstream connections (baseline %v without them, slack %d); goroutines by what they do:\n%s",
				m["spacerelay_sessions_open"], m["go_goroutines"], m["spacerelay_upstream_connections"], base, slack, r.goroutineDump(t))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("go_goroutines: %v at the start, baseline %v, %v after %d sessions",
		start["go_goroutines"], base, m["go_goroutines"], 2*leakSessions)
	checkEndLogs(t, r.out.String())
}

// checkEndLogs checks that every session of leaveLike's, which all leave
// as browsers do, was logged at info without an error (issue 9.12).
func checkEndLogs(t *testing.T, out string) {
	t.Helper()
	n := 0
	for line := range strings.Lines(out) {
		if !strings.Contains(line, `msg="session ended"`) {
			continue
		}
		n++
		if !strings.Contains(line, "level=INFO") || strings.Contains(line, "err=") {
			t.Errorf("a browser that left, logged as %s", line)
		}
	}
	if n < 2*leakSessions {
		t.Errorf("%d session ended lines, want one for each of the %d sessions", n, 2*leakSessions)
	}
}

const leakSessions = 12

// sessionsRound opens leakSessions sockets at once, checks the gauge of open
// sessions, and has each run a job and leave in one of four ways.
func sessionsRound(t *testing.T, ctx context.Context, r *relayProc) {
	t.Helper()
	clients := make([]*wsClient, leakSessions)
	for i := range clients {
		clients[i] = visit(t, ctx, r, newToken())
	}
	if got := mustMetrics(t, ctx, r)["spacerelay_sessions_open"]; got != leakSessions {
		t.Errorf("spacerelay_sessions_open = %v with %d sockets open", got, leakSessions)
	}
	errs := make(chan error, leakSessions)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { errs <- leaveLike(c, i%4) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// settledGoroutines waits until no session is open and the goroutine count holds
// still for half a second, and returns that count.
func settledGoroutines(t *testing.T, ctx context.Context, r *relayProc) float64 {
	t.Helper()
	last := -1.0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		m := mustMetrics(t, ctx, r)
		if m["spacerelay_sessions_open"] == 0 && m["go_goroutines"] == last {
			return last
		}
		last = m["go_goroutines"]
	}
	t.Fatalf("the relay did not settle after the first round of sessions: go_goroutines %v", last)
	return 0
}

// leaveLike runs one job on c and leaves in one of four ways.
func leaveLike(c *wsClient, how int) error {
	id := "l"
	if how == 3 { // idle, then gone
		c.drop()
		return nil
	}
	if err := c.submit(id, "/generate", map[string]any{"prompt": "leaving " + uuid.NewString(), "steps": 1 + 4*min(how, 1)}); err != nil {
		return err
	}
	switch how {
	case 0: // a result, then a normal close
		if _, err := c.job(id); err != nil {
			return err
		}
		return c.close()
	case 1: // cancelled, then a normal close
		if _, err := c.until(id, func(m relayMsg) bool { return m.Type == "accepted" }); err != nil {
			return err
		}
		if err := c.cancel(id); err != nil {
			return err
		}
		msgs, err := c.job(id)
		if err == nil && msgs[len(msgs)-1].Type != "cancelled" {
			err = fmt.Errorf("cancelled job ended with %s", msgs[len(msgs)-1])
		}
		if err != nil {
			return err
		}
		return c.close()
	default: // gone with its job unfinished
		if _, err := c.until(id, func(m relayMsg) bool { return m.Type == "accepted" }); err != nil {
			return err
		}
		c.drop()
		return nil
	}
}

func mustMetrics(t *testing.T, ctx context.Context, r *relayProc) map[string]float64 {
	t.Helper()
	m, err := r.metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testSigterm: SIGTERM with jobs in flight closes every socket with 1001,
// cancels the jobs upstream, and the process exits 0 within its grace.
func testSigterm(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	const grace = 5 * time.Second
	r := startRelay(t, e.bin, e.space, "--shutdown-grace", grace.String())
	running, queued, idle := visit(t, ctx, r, newToken()), visit(t, ctx, r, newToken()), visit(t, ctx, r, newToken())
	pr, pq := "sigterm running "+uuid.NewString(), "sigterm queued "+uuid.NewString()
	mustSubmit(t, running, "s", "/generate", map[string]any{"prompt": pr, "steps": 59})
	mustUntil(t, running, "s", "running", isProgress)
	mustSubmit(t, queued, "s", "/generate", map[string]any{"prompt": pq, "steps": 20})
	mustUntil(t, queued, "s", "queued", isQueued)

	signalled := r.signal(t, syscall.SIGTERM)
	var wg sync.WaitGroup
	for _, c := range []*wsClient{running, queued, idle} {
		wg.Go(func() {
			var seen []relayMsg
			for {
				m, err := c.next()
				if err == nil {
					seen = append(seen, m)
					continue
				}
				if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
					t.Errorf("visitor %s: socket ended with %v (close status %d), want 1001\nafter:\n%s",
						digest(c.token), err, code, dump(seen))
				}
				return
			}
		})
	}
	wg.Wait()
	code, exited := r.wait(grace + time.Second)
	took := time.Since(signalled)
	switch {
	case !exited:
		t.Errorf("spacerelay still runs %v after SIGTERM, with --shutdown-grace %v", took.Round(time.Millisecond), grace)
	case code != 0 || took > grace:
		t.Errorf("spacerelay exited %d, %v after SIGTERM; want 0 within %v", code, took.Round(time.Millisecond), grace)
	default:
		t.Logf("spacerelay exited %v after SIGTERM", took.Round(time.Millisecond))
	}
	if !e.hasJournal() {
		return
	}
	if got, err := waitJournal(ctx, e.space, pr, "started cancelled", signalled, 5*time.Second); err != nil {
		t.Errorf("the running job: %v (got %q)", err, got)
	}
	// Gradio 5 cannot take a queued job out of its queue: it may run it
	// once the relay is gone.
	got := settledJournal(t, ctx, e.space, pq)
	if got != "" && (e.dequeues || !strings.HasPrefix(got, "started")) {
		t.Errorf("the queued job: journal %q, want it never to run", got)
	}
	t.Logf("journal of the queued job: %q", got)
}

func mustJournal(t *testing.T, ctx context.Context, space, prompt string) []journalEntry {
	t.Helper()
	j, err := readJournal(ctx, space, prompt)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
