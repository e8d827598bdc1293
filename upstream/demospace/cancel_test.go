package demospace

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

const cancelledJSON = `{"msg":"process_completed","event_id":"ID","output":{},"success":true,"title":null,"used_cache":null,"cache_duration":null,"avg_time":null}`

func TestCancelQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		h.join("a", 0, []any{"long", 10, 8, 8})
		a := h.open("a")
		a.until(kindProgress, "")
		id := h.join("b", 0, []any{"short", 1, 8, 8})
		b := h.open("b")
		if m := b.must(); m.kind() != kindEstimation || m.fields["rank"] != 0.0 {
			t.Fatalf("first message = %s", m.raw)
		}
		h.cancel("b", 0, id)
		ms := b.rest()
		if len(ms) != 2 || ms[0].raw != strings.ReplaceAll(cancelledJSON, "ID", id) || ms[1].kind() != kindClose {
			t.Errorf("cancelled queued job: %v", ms)
		}
		if k := kinds(a.rest()); !strings.HasSuffix(k, "progress process_completed close_stream") {
			t.Errorf("the running job: %s", k)
		}
		if j := h.journalOf("long") + "|" + h.journalOf("short"); j != "started completed|" {
			t.Errorf("journals = %q", j)
		}
	})
}

func TestCancelRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		for _, fn := range []int{0, 1} {
			data := []any{"run", 40, 8, 8}
			if fn == 1 {
				data = []any{"run", 40}
			}
			id := h.join("r", fn, data)
			s := h.open("r")
			s.until(kindStarts, id)
			time.Sleep(3 * step / 2)
			h.cancel("r", fn, id)
			ms := s.rest()
			if n := len(ms); n < 2 || ms[n-2].raw != strings.ReplaceAll(cancelledJSON, "ID", id) || ms[n-1].kind() != kindClose {
				t.Errorf("fn %d: %s", fn, kinds(ms))
			}
		}
		if j := h.journalOf("run"); j != "started cancelled started cancelled" {
			t.Errorf("journal = %q", j)
		}
	})
}

// Gradio 6.31's /cancel cancels every running job of the function in the
// session, and the freed worker takes the next job before the cancelled
// event is removed from the queue: cancelling queued E2 kills running E1
// (which never completes, so the stream never closes) and E2 runs anyway.
func TestCancelSameFunctionQuirk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		e1 := h.join("s", 0, []any{"e1", 20, 8, 8})
		s := h.open("s")
		s.until(kindProgress, e1)
		e2 := h.join("s", 0, []any{"e2", 2, 8, 8})
		e3 := h.join("s", 0, []any{"e3", 1, 8, 8})
		h.cancel("s", 0, e2)

		var got []string
		name := strings.NewReplacer(e1, "E1", e2, "E2", e3, "E3")
		for _, m := range s.until(kindCompleted, e3) {
			if m.kind() == kindLog || m.kind() == kindProgress {
				continue
			}
			got = append(got, m.kind()+":"+name.Replace(m.eventID()))
		}
		want := "estimation:E2 estimation:E3 " +
			"estimation:E3 process_starts:E2 process_completed:E2 process_completed:E2 " +
			"process_starts:E3 process_completed:E3"
		if g := strings.Join(got, " "); g != want {
			t.Errorf("messages =\n%s\nwant\n%s", g, want)
		}
		if m := s.must(); m.kind() != kindHeartbeat {
			t.Errorf("after E3: %s, want a heartbeat (E1 stays pending)", m.raw)
		}
		if j := h.journalOf("e1") + "|" + h.journalOf("e2"); j != "started cancelled|started completed" {
			t.Errorf("journals = %q", j)
		}
	})
}

// When the stream drops: queued events of the session are removed, a
// running function runs on unheard, a running generator stops, and the
// session's message queue is gone.
func TestDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		h.join("d", 0, []any{"running", 5, 8, 8})
		h.join("d", 0, []any{"queued", 1, 8, 8})
		s := h.open("d")
		s.until(kindProgress, "")
		s.close()
		time.Sleep(time.Second)
		if j := h.journalOf("running") + "|" + h.journalOf("queued"); j != "started completed|" {
			t.Errorf("journals = %q", j)
		}
		if ms := h.open("d").rest(); len(ms) != 1 || ms[0].fields["session_not_found"] != true {
			t.Errorf("stream after disconnect: %v", ms)
		}

		h.join("g", 1, []any{"generator", 5})
		g := h.open("g")
		g.until(kindGenerating, "")
		g.close()
		time.Sleep(time.Second)
		if j := h.journalOf("generator"); j != "started cancelled" {
			t.Errorf("generator journal = %q", j)
		}

		// As in Gradio, the dead event stays pending: a new job in the same
		// session completes, but the stream does not close.
		h.join("d", 0, []any{"again", 1, 8, 8})
		s = h.open("d")
		s.until(kindCompleted, "")
		if m := s.must(); m.kind() != kindHeartbeat {
			t.Errorf("after the new job: %s, want a heartbeat", m.raw)
		}
	})
}

// A session whose messages nobody reads is dropped, not buffered forever.
func TestUnreadSessionIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		h.space.msgLimit = 5
		h.join("u", 0, []any{"unread", 10, 8, 8})
		h.join("u", 0, []any{"unread queued", 1, 8, 8})
		time.Sleep(2 * time.Second)
		if ms := h.open("u").rest(); len(ms) != 1 || ms[0].fields["session_not_found"] != true {
			t.Errorf("overflowed session: %v", ms)
		}
		if j := h.journalOf("unread queued"); j != "" {
			t.Errorf("queued job of the dropped session ran: %q", j)
		}
	})
}

func TestEstimations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step, Concurrency: 2})
		// Teach the averages: 1 step = 0.1 s.
		h.join("x", 0, []any{"teach", 1, 8, 8})
		h.open("x").rest()
		for i := range 2 {
			h.join("busy", 0, []any{"busy", 10, 8, 8})
			_ = i
		}
		busy := h.open("busy")
		busy.until(kindStarts, "")
		busy.until(kindStarts, "")
		time.Sleep(step / 2)
		id := h.join("w", 0, []any{"waiting", 1, 8, 8})
		m := h.open("w").must()
		// Free in 0.1 - 0.05 = 0.05 s, then its own 0.1 s.
		if m.raw != `{"msg":"estimation","event_id":"`+id+`","rank":0,"queue_size":1,"rank_eta":0.15000000000000002}` &&
			m.raw != `{"msg":"estimation","event_id":"`+id+`","rank":0,"queue_size":1,"rank_eta":0.15}` {
			t.Errorf("estimation = %s", m.raw)
		}
	})
}
