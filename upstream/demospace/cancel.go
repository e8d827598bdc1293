package demospace

import (
	"net/http"
	"time"
)

// pollDelay is how long a freed worker takes to find its next job after a
// cancel (Gradio's start_processing polls every millisecond).
const pollDelay = time.Millisecond

// serveCancel answers POST {P}/cancel {"session_hash","fn_index","event_id"}
// with {"success": true}, doing what Gradio 6.31's cancel_event does:
//
//  1. it cancels every running job of fn_index in session_hash, not just
//     event_id, and waits for them to end (they get no completion);
//  2. about a millisecond later the workers freed in step 1 take their
//     next jobs; in Gradio they win that race against step 3, so a queued
//     event_id next in line starts (and runs) regardless, unless its
//     stream dropped in the meantime;
//  3. it removes event_id from the queue, if it is still there;
//  4. if the session still has its message queue and event_id is pending,
//     it pushes the synthetic {"msg":"process_completed","output":{},
//     "success":true,...} for it, ahead of what the new jobs say.
func (s *Space) serveCancel(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	b, ok := readBody(w, r, cancelBody)
	if !ok {
		return
	}
	hash, _ := b.str("session_hash")
	fn, _ := b.int("fn_index")
	id, _ := b.str("event_id")
	s.cancel(hash, fn, id)
	writeJSON(w, http.StatusOK, object{{"success", true}})
}

func (s *Space) cancel(hash string, fn int, id string) {
	s.mu.Lock()
	var done []chan struct{}
	for _, ev := range s.running {
		if ev.session == hash && ev.fn.index == fn {
			ev.cancelled = true
			ev.cancel()
			done = append(done, ev.done)
		}
	}
	s.mu.Unlock()
	for _, d := range done {
		<-d // a cancelled job ends at its next step
	}
	if len(done) > 0 {
		// Gradio's worker loop looks for free slots every millisecond, and
		// tears a cancelled task down slower than that. A stream that drops
		// meanwhile (a client that cancels and leaves) still removes its
		// queued events first.
		t := time.NewTimer(pollDelay)
		select {
		case <-t.C:
		case <-s.done:
		}
		t.Stop()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispatchLocked()
	s.removeWaitingLocked(func(ev *event) bool { return ev.id == id })
	sess, ok := s.sessions.peek(hash)
	if !ok || !sess.hasQueue {
		return
	}
	if _, pending := sess.pending[id]; pending {
		s.pushLocked(sess, cancelledMsg(id))
	}
}
