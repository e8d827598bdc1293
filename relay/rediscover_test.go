package relay_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/upstream"
)

// redeployable is an upstream whose API the test changes, and whose
// Rediscover reports each call.
type redeployable struct {
	mu    sync.Mutex
	api   *upstream.API
	err   error
	calls chan struct{}
}

func (r *redeployable) set(api *upstream.API, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.api, r.err = api, err
}

func (r *redeployable) rediscover(context.Context) (*upstream.API, error) {
	r.mu.Lock()
	api, err := r.api, r.err
	r.mu.Unlock()
	r.calls <- struct{}{}
	return api, err
}

// trigger runs a job that meets a sign of a redeploy, and waits for the
// relay to ask the upstream again.
func trigger(t *testing.T, c *websocket.Conn, r *redeployable) {
	t.Helper()
	write(t, c, `{"type":"submit","id":"lost","data":["`+lostSession+`"]}`)
	if m := read(t, c); m["type"] != "error" {
		t.Fatalf("the job's end = %v", m)
	}
	select {
	case <-r.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not ask the upstream again")
	}
}

var redeployedAPI = &upstream.API{
	BaseURL: "http://fake.invalid", Version: "6.31.0", Protocol: "sse_v3",
	Endpoints: []*upstream.Endpoint{{
		Name:    "/predict2",
		Inputs:  []upstream.Param{{Name: "prompt", Type: "string", Required: true}},
		Outputs: []upstream.Output{{Name: "text", Component: "Textbox"}},
	}},
}

// Issue 9: after a redeploy (the upstream lost a visitor's session, and
// its API has changed), the relay takes the new API, and the sessions of
// the old are closed with 1012 so that their pages reconnect to the new.
func TestRedeployRestartsSessions(t *testing.T) {
	t.Parallel()
	r := &redeployable{api: testAPI, calls: make(chan struct{}, 4)}
	logs := &logBuffer{}
	base := start(t, &relay.Server{Rediscover: r.rediscover, RediscoverEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitReady(t, base)
	c := dial(t, base, "tok", nil)
	defer c.CloseNow()
	r.set(redeployedAPI, nil)
	trigger(t, c, r)
	_, _, err := c.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
		t.Errorf("the old API's session: %v, want close 1012", err)
	}
	// A redeploy is a normal end: logged at info, with no error.
	eventually(t, "the session's end logged", func() bool { return strings.Contains(logs.String(), "session ended") })
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "session ended") && (!strings.Contains(l, "level=INFO") ||
			!strings.Contains(l, "outcome=upstream_changed") || strings.Contains(l, "err=")) {
			t.Errorf("log: %s, want it at info as upstream_changed, without an error", l)
		}
	}
	c2, err := tryDial(t, base, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	hello := read(t, c2)
	b, _ := json.Marshal(hello["endpoints"])
	if string(b) == "" || !json.Valid(b) || !containsName(hello, "/predict2") {
		t.Errorf("the new hello's endpoints = %s, want the redeployed API's", b)
	}
}

func containsName(hello map[string]any, name string) bool {
	eps, _ := hello["endpoints"].([]any)
	for _, ep := range eps {
		if m, _ := ep.(map[string]any); m["name"] == name {
			return true
		}
	}
	return false
}

// Issue 9: /readyz says what the relay last saw of the Space: down, it
// answers 503 with why (and the Space's stage), new sockets wait for it,
// and the sessions open go on; back, all is ready again.
func TestReadyzFollowsTheSpace(t *testing.T) {
	t.Parallel()
	r := &redeployable{api: testAPI, calls: make(chan struct{}, 4)}
	base := start(t, &relay.Server{Rediscover: r.rediscover, RediscoverEvery: time.Hour})
	waitReady(t, base)
	c := dial(t, base, "tok", nil)
	defer c.CloseNow()
	r.set(nil, &upstream.Error{Code: upstream.CodeUnavailable, Title: "Space not running",
		Message: "Space owner/x is asleep", Stage: "SLEEPING"})
	trigger(t, c, r)
	got := get(t, base+"/readyz")
	var body struct {
		Ready          bool
		State, Message string
		Stage          string
	}
	if err := json.Unmarshal(got.body, &body); err != nil || got.StatusCode != http.StatusServiceUnavailable ||
		body.State != "unavailable" || body.Message != "Space owner/x is asleep" || body.Stage != "SLEEPING" {
		t.Errorf("/readyz = %d %s", got.StatusCode, got.body)
	}
	wantClosed(t, base, "other", nil, 4503, "upstream_unavailable retry_after=5")
	runJob(t, c) // the session open goes on
	r.set(testAPI, nil)
	trigger(t, c, r)
	waitReady(t, base)
	dial(t, base, "other", nil).CloseNow()
}

// A job that finds the Space unreachable makes the relay ask the Space
// again at once, so /readyz says it is down without waiting for the poll.
func TestUnreachableSpaceIsAskedAgain(t *testing.T) {
	t.Parallel()
	r := &redeployable{api: testAPI, calls: make(chan struct{}, 4)}
	base := start(t, &relay.Server{Rediscover: r.rediscover, RediscoverEvery: time.Hour})
	waitReady(t, base)
	c := dial(t, base, "tok", nil)
	defer c.CloseNow()
	r.set(nil, &upstream.Error{Code: upstream.CodeUnavailable, Message: "The Space cannot be reached right now."})
	write(t, c, `{"type":"submit","id":"j","data":["`+unreachable+`"]}`)
	if m := read(t, c); m["type"] != "error" || m["code"] != "upstream_unavailable" {
		t.Fatalf("the job's end = %v", m)
	}
	select {
	case <-r.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not ask the upstream again")
	}
	eventually(t, "/readyz 503", func() bool { return get(t, base+"/readyz").StatusCode == http.StatusServiceUnavailable })
}

// Issue 9.12: each job's end is logged, at debug, a failure at info with
// its code; its cause (an address, a Go error) only at debug; never the
// visitor's token.
func TestJobEndsAreLogged(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		logs := &logBuffer{}
		base := start(t, &relay.Server{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))})
		c := dial(t, base, "secret-token", nil)
		write(t, c, `{"type":"submit","id":"ok","data":["x"]}`)
		for m := read(t, c); m["type"] != "result"; m = read(t, c) {
		}
		write(t, c, `{"type":"submit","id":"bad","data":["`+unreachable+`"]}`)
		if m := read(t, c); m["type"] != "error" {
			t.Fatalf("the job's end = %v", m)
		}
		c.Close(websocket.StatusNormalClosure, "")
		eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "job=bad") })
		got := logs.String()
		failed := lineWith(got, "job=bad")
		if !strings.Contains(failed, "level=INFO") || !strings.Contains(failed, "msg=\"job ended\"") ||
			!strings.Contains(failed, "outcome=error") || !strings.Contains(failed, "code=upstream_unavailable") {
			t.Errorf("at %v, the failure's line: %s", level, failed)
		}
		if cause := strings.Contains(failed, "connection refused"); cause != (level == slog.LevelDebug) {
			t.Errorf("at %v, the cause in the line: %v: %s", level, cause, failed)
		}
		if done := lineWith(got, "job=ok"); (done != "") != (level == slog.LevelDebug) ||
			(done != "" && !strings.Contains(done, "outcome=completed")) {
			t.Errorf("at %v, the completed job's line: %q", level, done)
		}
		if strings.Contains(got, "secret-token") {
			t.Errorf("the log holds the token")
		}
	}
}

// lineWith is the first line of logs that contains s, or "".
func lineWith(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
