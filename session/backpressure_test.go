package session_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

func progress(i int) *upstream.Progress {
	idx, n := float64(i), float64(10000)
	return &upstream.Progress{Steps: []upstream.ProgressStep{{Index: &idx, Length: &n}}}
}

// A browser that reads slowly gets the newest progress, never all of it,
// and never loses the job's accepted, started or result.
func TestSlowBrowserGetsNewestProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			emit(&upstream.Started{})
			for i := range 10000 {
				if err := emit(progress(i)); err != nil {
					return err
				}
			}
			return emit(&upstream.Completed{Data: []any{"done"}})
		}}
		h := start(t, up, session.Config{WriteTimeout: 10 * time.Second})
		h.expect("hello")
		h.send(`{"type":"submit","id":"p","data":["x"]}`)
		var types []string
		last := -1.0
		for {
			time.Sleep(time.Second) // a slow page, well within the write timeout
			m := h.recv()
			types = append(types, m["type"].(string))
			if m["type"] == "progress" {
				idx := m["steps"].([]any)[0].(map[string]any)["index"].(float64)
				if idx <= last {
					t.Fatalf("progress %v after %v", idx, last)
				}
				last = idx
			}
			if m["type"] == "result" {
				break
			}
		}
		if types[0] != "accepted" || types[1] != "started" {
			t.Errorf("messages start %v, want accepted, started", types[:2])
		}
		if len(types) > 10 {
			t.Errorf("%d messages for 10000 progress steps read slowly, want the superseded ones dropped", len(types))
		}
	})
}

// A browser that takes nothing is disconnected after the write timeout,
// however much the job produces.
func TestStuckBrowserIsDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			for i := 0; ; i++ {
				if err := emit(progress(i)); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
		}}
		h := start(t, up, session.Config{WriteTimeout: 10 * time.Second})
		h.expect("hello")
		h.send(`{"type":"submit","id":"p","data":["x"]}`)
		begin := time.Now()
		err := <-h.ended
		h.ended <- nil
		if !errors.Is(err, session.ErrSlowConsumer) {
			t.Errorf("Run() = %v, want ErrSlowConsumer", err)
		}
		if d := time.Since(begin); d > 11*time.Second {
			t.Errorf("disconnected after %v, want within the 10s write timeout", d)
		}
		if up.closes() != 1 {
			t.Errorf("upstream session closed %d times, want 1", up.closes())
		}
	})
}

func TestKeepalive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{PingInterval: 30 * time.Second})
		h.expect("hello")
		// A page that reads answers pings: still there after ten minutes.
		readErr := make(chan error, 1)
		rctx, stopReading := context.WithCancel(context.Background())
		go func() {
			_, _, err := h.browser.Read(rctx)
			readErr <- err
		}()
		time.Sleep(10 * time.Minute)
		select {
		case err := <-h.ended:
			t.Fatalf("session ended while the page answered pings: %v", err)
		default:
		}
		stopReading() // closes the browser's end: coder/websocket closes on a read ctx
		<-readErr
		if err := <-h.ended; !errors.Is(err, session.ErrClientGone) && !errors.Is(err, session.ErrPingTimeout) {
			t.Errorf("Run() = %v", err)
		}
		h.ended <- nil
	})
}

func TestUnansweredPingsEndTheSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{PingInterval: 30 * time.Second, WriteTimeout: time.Hour})
		h.expect("hello")
		begin := time.Now()
		err := <-h.ended // the page stopped reading: no pongs
		h.ended <- nil
		// A page that reads nothing cannot even take the ping frame, and the
		// socket is closed under the session; one that reads but does not
		// answer runs out of time. Either way it ends within two intervals.
		if !errors.Is(err, session.ErrPingTimeout) && !errors.Is(err, session.ErrClientGone) {
			t.Errorf("Run() = %v, want ErrPingTimeout or ErrClientGone", err)
		}
		if d := time.Since(begin); d > time.Minute {
			t.Errorf("ended after %v, want within two ping intervals (1m)", d)
		}
	})
}

// Issue 9.12: with pings off (a negative interval: --ping-interval off), a
// page that reads nothing is never pinged, so never dropped for not
// answering.
func TestNoPingsWhenOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{PingInterval: -1, WriteTimeout: time.Hour})
		h.expect("hello")
		time.Sleep(time.Hour) // the page reads nothing
		select {
		case err := <-h.ended:
			h.ended <- err
			t.Fatalf("the session ended with pings off: %v", err)
		default:
		}
		h.send(`{"type":"ping"}`)
		h.expect("pong")
	})
}

// Under backpressure a newer progress does not wipe out a pending preview:
// each kind keeps its own newest message.
func TestSlowBrowserKeepsPreviews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			emit(&upstream.Started{})
			emit(&upstream.Partial{Data: []any{"preview"}})
			for i := range 100 {
				emit(progress(i))
			}
			return emit(&upstream.Completed{Data: []any{"done"}})
		}}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"p","data":["x"]}`)
		var partials, progresses int
		for {
			time.Sleep(time.Second)
			m := h.recv()
			switch m["type"] {
			case "partial":
				partials++
			case "progress":
				progresses++
			}
			if m["type"] == "result" {
				break
			}
		}
		if partials != 1 || progresses == 0 || progresses > 5 {
			t.Errorf("%d partials and %d progress messages, want the preview and the newest progress", partials, progresses)
		}
	})
}
