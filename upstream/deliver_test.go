package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// Issue 10: the reader never waits for a job. Messages read while the
// job's Accepted is still being handled wait in its mailbox and come in
// order; of the progress reports, the newest is kept and older ones may be
// dropped, never the last.
func TestEventsKeepOrderWhileAcceptedIsHandled(t *testing.T) {
	const n = 50
	written := make(chan struct{})
	f := &fakeApp{join: joined("e1")}
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
		for i := range n {
			sse(w, fmt.Sprintf(`{"msg":"progress","event_id":"e1","progress_data":[{"index":%d,"length":%d,"unit":"steps","progress":null,"desc":null}]}`, i, n))
		}
		close(written)
		sse(w, `{"msg":"log","event_id":"e1","log":"done drawing","level":"info","title":"t"}`,
			done("e1", `["ok", null]`), `{"msg":"close_stream","event_id":null}`)
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	var got []string
	err := s.Stream(t.Context(), upstream.Call{Data: []any{"x"}}, func(ev upstream.Event) error {
		switch ev := ev.(type) {
		case *upstream.Accepted:
			<-written // the reader reads on meanwhile
			got = append(got, "accepted")
		case *upstream.Started:
			got = append(got, "started")
		case *upstream.Progress:
			got = append(got, fmt.Sprint(*ev.Steps[0].Index))
		case *upstream.Log:
			got = append(got, "log")
		case *upstream.Completed:
			got = append(got, "completed")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Stream() = %v", err)
	}
	if len(got) < 5 || got[0] != "accepted" || got[1] != "started" || got[len(got)-3] != fmt.Sprint(n-1) ||
		got[len(got)-2] != "log" || got[len(got)-1] != "completed" {
		t.Fatalf("events = %v, want accepted, started, progress ending with %d, log, completed", got, n-1)
	}
	last := -1
	for _, g := range got[2 : len(got)-2] {
		var i int
		fmt.Sscan(g, &i)
		if i <= last {
			t.Fatalf("events = %v: progress out of order", got)
		}
		last = i
	}
}

// A job given up while the reader is inside its fn returns only after fn
// has: fn never runs after Stream returns. The job is cancelled upstream.
func TestStreamWaitsForFnInProgress(t *testing.T) {
	f := &fakeApp{join: joined("e1")}
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		sse(w, `{"msg":"progress","event_id":"e1","progress_data":[{"index":1,"length":2,"unit":"steps","progress":null,"desc":null}]}`)
		<-r.Context().Done()
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	ctx, cancel := context.WithCancel(t.Context())
	inside := make(chan struct{})
	var running atomic.Int32
	err := s.Stream(ctx, upstream.Call{Data: []any{"x"}}, func(ev upstream.Event) error {
		if _, ok := ev.(*upstream.Progress); !ok {
			return nil
		}
		running.Add(1)
		defer running.Add(-1)
		close(inside)
		cancel()
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stream() = %v, want context.Canceled", err)
	}
	if running.Load() != 0 {
		t.Error("fn still runs after Stream returned")
	}
	s.Close()
	if f.cancels.Load() == 0 { // (Close sends the dequeue again, and waits for it)
		t.Error("the job was not cancelled upstream")
	}
}

// Each event of a stream message says when that message was read.
func TestReadAt(t *testing.T) {
	f := &fakeApp{join: joined("e1")}
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		sse(w, `{"msg":"progress","event_id":"e1","progress_data":[{"index":1,"length":2,"unit":"steps","progress":null,"desc":null}]}`)
		sse(w, done("e1", `["ok", null]`), `{"msg":"close_stream","event_id":null}`)
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	before := time.Now()
	var got []string
	err := s.Stream(t.Context(), upstream.Call{Data: []any{"x"}}, func(ev upstream.Event) error {
		at := upstream.ReadAt(ev)
		switch {
		case at.IsZero():
			got = append(got, fmt.Sprintf("%T:none", ev))
		case at.Before(before) || at.After(time.Now()):
			got = append(got, fmt.Sprintf("%T:%v out of range", ev, at))
		default:
			got = append(got, fmt.Sprintf("%T:read", ev))
		}
		return nil
	})
	want := "[*upstream.Accepted:none *upstream.Progress:read *upstream.Completed:read]"
	if err != nil || fmt.Sprint(got) != want {
		t.Errorf("Stream() = %v; events %v, want %s", err, got, want)
	}
}

// Issue 12: a generator's last output comes once, as the Completed: a
// partial followed by the completion within the hold is not handed on;
// one that waited longer is, and so is one a newer partial followed.
func TestLastPartialComesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: joined("e1"), stream: func(w http.ResponseWriter, r *http.Request) {
			gen := func(v string) string {
				return fmt.Sprintf(`{"msg":"process_generating","event_id":"e1","success":true,"output":{"data":[%q, null]}}`, v)
			}
			sse(w, gen("a"))
			time.Sleep(time.Second) // a step
			sse(w, gen("b"))
			time.Sleep(10 * time.Millisecond) // the Space ends the job
			sse(w, done("e1", `["b", null]`))
		}}
		c, err := upstream.New(upstream.Config{Target: "http://fake.invalid", HTTP: inMemory(f)})
		if err != nil {
			t.Fatal(err)
		}
		s := c.NewSession(nil)
		defer s.Close()
		evs, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		result(t, evs, err)
		var got []string
		for _, ev := range evs {
			switch ev := ev.(type) {
			case *upstream.Partial:
				got = append(got, fmt.Sprint("partial ", ev.Data))
			case *upstream.Completed:
				got = append(got, fmt.Sprint("completed ", ev.Data))
			}
		}
		if want := "[partial [a] completed [b]]"; fmt.Sprint(got) != want {
			t.Errorf("events = %v, want %s", got, want)
		}
	})
}
