package main

// End-to-end tests (issue 3): the spacerelay binary, built with the race
// detector, in front of the real Gradio test Space (testdata/gradio, one
// server per pinned Gradio) and in front of its embedded demo Space, driven
// over real WebSockets by a client written from PROTOCOL.md alone.
//
// Run them with the real Gradio:
//
//	SPACERELAY_GRADIO=6.31.0=.cache/gradio-6.31.0/bin/python,5.50.0=.cache/gradio-5.50.0/bin/python \
//		go test -race -run E2E ./cmd/spacerelay/
//
// Without SPACERELAY_GRADIO only the demo Space runs (under CI=true that
// fails instead). The journal of the test Space (GET /fixture/journal) is
// reachable only for a real Gradio: the relay does not expose its embedded
// demo's, so the checks that need it run against real Gradio only.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spacerelay/spacerelay/upstream/gradiotest"
	"go.uber.org/goleak"
)

// gradioStepSeconds is the real Gradio Space's sleep per step.
const gradioStepSeconds = 0.05

// scenarioTimeout bounds each scenario.
const scenarioTimeout = 60 * time.Second

// An upstreamEnv is one upstream under test, with a relay in front of it
// that the scenarios without a relay of their own share, one after another.
type upstreamEnv struct {
	name  string
	bin   string     // the spacerelay binary
	space string     // the Gradio test Space's URL; "" for the embedded demo Space
	relay *relayProc // --upstream space

	// dequeues: the Space's cancel takes a queued job out of its queue
	// (every Gradio but 5.x, and the demo; testdata/gradio/SPEC.md).
	dequeues bool
}

var e2eScenarios = []struct {
	name string
	run  func(t *testing.T, e *upstreamEnv)
	// on, if set, says on which upstreams the scenario runs: one that
	// tests the relay alone need not run on each.
	on func(e *upstreamEnv) bool
}{
	{"hello", testHello, nil},
	{"edge", testEdge, nil},
	{"tokens", testTokens, nil},
	{"quota", testQuota, nil},
	{"events", testEvents, nil},
	{"preview", testPreview, nil},
	{"state", testState, nil},
	{"cancel", testCancel, nil},
	{"drop", testDrop, nil},
	{"errors", testErrors, nil},
	{"too many jobs", testTooManyJobs, nil},
	{"refresh", testRefresh, nil},
	{"refresh together", testRefreshTogether, nil},
	{"upload", testUpload, nil},
	{"upload limits", testUploadLimits, nil}, // a relay of its own
	// The relay's memory does not depend on the upstream, and 40 MiB
	// through a race-built relay take seconds: the demo and the newest
	// Gradio.
	{"upload memory", testUploadMemory, func(e *upstreamEnv) bool { return e.space == "" || e.name == "gradio-6.31.0" }}, // a relay of its own
	// The flow control is the relay's own, whatever the upstream.
	{"upload stalled", testUploadStalled, func(e *upstreamEnv) bool { return e.space == "" }}, // a relay of its own
	{"leaks", testLeaks, nil},     // a relay of its own
	{"sigterm", testSigterm, nil}, // a relay of its own
}

func TestE2E(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // runs last
	bin := buildRelay(t, t.TempDir())

	t.Run("demo", func(t *testing.T) {
		t.Parallel()
		e := &upstreamEnv{name: "demo", bin: bin, dequeues: true}
		runScenarios(t, e)
	})
	t.Run("gradio", func(t *testing.T) {
		t.Parallel()
		for _, py := range gradiotest.Pythons(t) {
			t.Run(py.Version, func(t *testing.T) {
				t.Parallel()
				srv := gradiotest.Start(t, py, gradiotest.Options{StepSeconds: gradioStepSeconds})
				e := &upstreamEnv{name: "gradio-" + py.Version, bin: bin, space: srv.URL,
					dequeues: !strings.HasPrefix(py.Version, "5.")}
				runScenarios(t, e)
			})
		}
	})
}

func runScenarios(t *testing.T, e *upstreamEnv) {
	start := time.Now()
	e.relay = startRelay(t, e.bin, e.space)
	for _, sc := range e2eScenarios {
		if sc.on == nil || sc.on(e) {
			t.Run(sc.name, func(t *testing.T) { sc.run(t, e) })
		}
	}
	t.Logf("%s: scenarios took %v", e.name, time.Since(start).Round(time.Millisecond))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newToken returns a new visitor's X-IP-Token (not a JWT). Every visitor
// has its own, so each has the Space's whole quota.
func newToken() string { return "visitor-" + uuid.NewString() }

// digest is the test Space's name for a token: the first 12 hex of sha256.
func digest(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])[:12]
}

// fakeJWT returns an unsigned JWT whose exp claim is exp.
func fakeJWT(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." +
		enc(fmt.Appendf(nil, `{"onlyPro":false,"exp":%d}`, exp.Unix())) + "." +
		enc([]byte("not checked by the relay"))
}

// visit opens a session on r for the visitor with token, or fails the test.
// The socket is dropped at the end of the test if it is still open.
func visit(t *testing.T, ctx context.Context, r *relayProc, token string) *wsClient {
	t.Helper()
	c, err := dialRelay(ctx, r, token)
	if err != nil {
		t.Fatalf("visitor %s: %v", digest(token), err)
	}
	t.Cleanup(c.drop)
	return c
}

// visitor opens a session for a new visitor on the shared relay.
func (e *upstreamEnv) visitor(t *testing.T, ctx context.Context) *wsClient {
	t.Helper()
	return visit(t, ctx, e.relay, newToken())
}

// mustSubmit submits a job, or fails the test.
func mustSubmit(t *testing.T, c *wsClient, id, endpoint string, inputs map[string]any) {
	t.Helper()
	if err := c.submit(id, endpoint, inputs); err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
}

// mustJob reads job id to its end and checks it with checkJob. It returns
// the job's messages and its files.
func mustJob(t *testing.T, c *wsClient, id string) ([]relayMsg, map[string]relayMsg) {
	t.Helper()
	msgs, err := c.job(id)
	if err != nil {
		t.Fatal(err)
	}
	files, err := checkJob(msgs)
	if err != nil {
		t.Fatalf("job %s: %v\nmessages:\n%s", id, err, dump(msgs))
	}
	return msgs, files
}

// mustUntil reads job id until stop accepts a message, or fails the test if
// the job ends first.
func mustUntil(t *testing.T, c *wsClient, id string, what string, stop func(relayMsg) bool) []relayMsg {
	t.Helper()
	msgs, err := c.until(id, stop)
	if err != nil {
		t.Fatal(err)
	}
	if last := msgs[len(msgs)-1]; !stop(last) {
		t.Fatalf("job %s ended before it was %s:\n%s", id, what, dump(msgs))
	}
	return msgs
}

func isProgress(m relayMsg) bool { return m.Type == "progress" }
func isQueued(m relayMsg) bool   { return m.Type == "queued" }

// mustResult reads job id to its end and returns its result, or fails the
// test if it ended otherwise.
func mustResult(t *testing.T, c *wsClient, id string) relayMsg {
	t.Helper()
	msgs, _ := mustJob(t, c, id)
	last := msgs[len(msgs)-1]
	if last.Type != "result" {
		t.Fatalf("job %s ended with %s, want a result", id, last)
	}
	return last
}

// mustError reads job id to its end, and checks that it is an error with
// one of codes.
func mustError(t *testing.T, c *wsClient, id string, codes ...string) relayMsg {
	t.Helper()
	msgs, _ := mustJob(t, c, id)
	last := msgs[len(msgs)-1]
	for _, code := range codes {
		if last.Type == "error" && last.Code == code {
			return last
		}
	}
	t.Errorf("job %s ended with %s, want an error with code %s", id, last, strings.Join(codes, " or "))
	return last
}

func dump(msgs []relayMsg) string {
	var b strings.Builder
	for _, m := range msgs {
		b.Write(m.raw)
		if m.Type == "file" {
			fmt.Fprintf(&b, " + %d bytes", len(m.bytes))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// hasJournal reports whether the Space's journal is in reach: a real
// Gradio's is; the embedded demo Space's is not.
func (e *upstreamEnv) hasJournal() bool { return e.space != "" }
