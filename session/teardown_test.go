package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// Issue 9: a page that reads, but not within the write timeout, is told
// why: close code 1008 "slow consumer", since its connection can still
// carry the close frame.
func TestSlowConsumerGetsItsCloseCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
			for i := 0; ; i++ { // notices: none may be dropped
				if err := emit(&upstream.Log{Level: "info", Message: fmt.Sprint(i)}); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
		}}
		h := start(t, up, session.Config{WriteTimeout: 10 * time.Second})
		h.expect("hello")
		h.send(`{"type":"submit","id":"p","data":["x"]}`)
		time.Sleep(10*time.Second + 200*time.Millisecond) // a page that has stopped reading, for a while
		var err error
		for err == nil {
			_, _, err = h.browser.Read(context.Background())
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "slow consumer" {
			t.Errorf("the page read %v, want close 1008 slow consumer", err)
		}
		if err := <-h.ended; !errors.Is(err, session.ErrSlowConsumer) {
			t.Errorf("Run() = %v, want ErrSlowConsumer", err)
		}
		h.ended <- nil
	})
}

// Issue 9: on shutdown, a page that takes nothing more holds its session
// for the close bound (1 s), not the WebSocket library's 5 s: shutdown
// ends well inside its grace, with every session's end reported.
func TestShutdownClosesWithinTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{})
		h.expect("hello") // and reads nothing more
		begin := time.Now()
		h.cancel()
		if err := <-h.ended; !errors.Is(err, session.ErrShutdown) {
			t.Errorf("Run() = %v, want ErrShutdown", err)
		}
		h.ended <- nil
		if d := time.Since(begin); d > time.Second {
			t.Errorf("Run returned %v after shutdown, want within 1s", d)
		}
	})
}

// Issue 9: every job ends in exactly one outcome: one that a dropped
// socket or a shutdown ends is reported as "ended".
func TestTornDownJobsAreCounted(t *testing.T) {
	for _, how := range []string{"drop", "shutdown"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := start(t, &fakeUpstream{script: script(true, &upstream.Started{})}, session.Config{})
				h.expect("hello")
				h.send(`{"type":"submit","id":"a","data":["x"]}`)
				h.send(`{"type":"submit","id":"b","data":["y"]}`)
				for range 4 { // accepted and started, of each
					h.recv()
				}
				if how == "drop" {
					h.browser.CloseNow()
				} else {
					h.cancel()
				}
				<-h.ended
				h.ended <- nil
				got := map[string]string{}
				for range 2 {
					st := <-h.stats
					got[st.Job] = st.Outcome
				}
				if got["a"] != "ended" || got["b"] != "ended" {
					t.Errorf("outcomes = %v, want both ended", got)
				}
				select {
				case st := <-h.stats:
					t.Errorf("another report: %+v", st)
				default:
				}
			})
		})
	}
}

// Issue 9: a message of the wrong shape is answered with what is wrong
// with it.
func TestBadMessagesSayWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, &fakeUpstream{}, session.Config{MaxMessageBytes: 65536})
		h.expect("hello")
		for _, tc := range []struct{ msg, want string }{
			{`{"type":5}`, `field "type" of the message must be a string, not a JSON number`},
			{`[1,2]`, "the message is a JSON array, not an object"},
			{`{"type":`, "the message is not valid JSON"},
			{`{"type":"submit","id":7}`, `field "id" of the message must be a string`},
			{`{"type":"x","data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, "the message nests too deeply"},
		} {
			h.send(tc.msg)
			if m := h.expect("error")[0]; !strings.Contains(fmt.Sprint(m["message"]), tc.want) || m["code"] != "bad_request" {
				t.Errorf("%.40s: %v, want bad_request %q", tc.msg, m, tc.want)
			}
		}
	})
}

// Issue 9: a job cancelled before the upstream has it (waiting its turn to
// join) ends with cancelled alone: the project's protocol says accepted
// comes only once the upstream queue took the job.
func TestCancelBeforeAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{joinDelay: map[any]time.Duration{"slow": time.Minute}, script: script(true)}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"a","data":["slow"]}`)
		h.send(`{"type":"submit","id":"b","data":["next"]}`) // waits for a's join
		time.Sleep(time.Second)
		h.send(`{"type":"cancel","id":"b"}`)
		if m := h.expect("cancelled")[0]; m["id"] != "b" {
			t.Errorf("got %v, want b cancelled", m)
		}
		if st := <-h.stats; st.Job != "b" || st.Outcome != "cancelled" {
			t.Errorf("stats = %+v", st)
		}
	})
}
