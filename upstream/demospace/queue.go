package demospace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
)

// event is one queued or running job, as Gradio's queueing.Event.
type event struct {
	// Static after join.
	id      string
	session string
	fn      *endpoint
	data    []json.RawMessage
	simple  bool   // simple_format: full values instead of diffs
	caller  caller // who the join's X-IP-Token names
	root    string // public root URL, for file URLs

	// Guarded by Space.mu.
	alive   bool // false once the session's stream dropped: messages are dropped
	started time.Time
	cancel  context.CancelFunc // cancels the job's context (Gradio: task.cancel)
	done    chan struct{}      // closed when the job has finished
	// cancelled is set by /cancel, which then starts the next jobs itself.
	cancelled bool
}

// fnStats are the running averages Gradio reports.
type fnStats struct {
	callTime  float64 // seconds in successful process_api calls
	calls     int
	eventTime float64 // seconds from start to end of successful events
	events    int
}

// addCall counts one call and returns the new average_duration.
func (f *fnStats) addCall(d float64) float64 {
	f.callTime += d
	f.calls++
	return f.callTime / float64(f.calls)
}

// eventAvg is the average event duration (the eta of process_starts).
func (f *fnStats) eventAvg() (float64, bool) {
	if f.events == 0 {
		return 0, false
	}
	return f.eventTime / float64(f.events), true
}

func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // a version 4 UUID, written as uuid4().hex
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// joinError is a failed join: the HTTP status and FastAPI detail.
type joinError struct {
	status int
	detail string
}

// enqueue queues ev as function fn (if the join gave one), with the
// checks of Gradio's queue_join and Queue.push, in their order.
func (s *Space) enqueue(ev *event, fn int, hasFn bool) *joinError {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return &joinError{http.StatusServiceUnavailable, "Queue is stopped."}
	case !hasFn:
		return &joinError{http.StatusBadRequest, "No function index provided."}
	case len(s.waiting) >= s.cfg.MaxQueue:
		return &joinError{http.StatusServiceUnavailable,
			fmt.Sprintf("Queue is full. Max size is %d and size is %d.", s.cfg.MaxQueue, len(s.waiting))}
	case fn < 0 || fn >= len(s.endpoints):
		return &joinError{http.StatusInternalServerError, "Internal Server Error"}
	}
	ev.fn = s.endpoints[fn]
	sess := s.sessionLocked(ev.session)
	sess.pending[ev.id] = struct{}{}
	ev.alive = true
	s.waiting = append(s.waiting, ev)
	s.broadcastLocked(len(s.waiting) - 1)
	s.dispatchLocked()
	return nil
}

// dispatchLocked starts queued jobs while workers are free.
func (s *Space) dispatchLocked() {
	for !s.closed && len(s.running) < s.cfg.Concurrency && len(s.waiting) > 0 {
		ev := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		ev.started = s.now()
		s.running = append(s.running, ev)
		// Like Gradio: the estimates go out before the job's process_starts.
		s.broadcastLocked(0)
		s.startLocked(ev)
	}
}

func (s *Space) startLocked(ev *event) {
	var eta *float64
	if avg, ok := s.stats[ev.fn.index].eventAvg(); ok {
		eta = &avg
	}
	s.emitLocked(ev, startsMsg(ev.id, eta))
	ctx, cancel := context.WithCancel(context.Background())
	ev.cancel = cancel
	ev.done = make(chan struct{})
	s.wg.Add(1)
	go s.runJob(ctx, ev)
}

// broadcastLocked sends an estimation to every waiting event from rank
// after on, with Gradio's rank_eta: the event's average run time, plus the
// time until a worker frees up, plus the queue ahead of it divided over
// the workers. Any unknown average makes it null.
func (s *Space) broadcastLocked(after int) {
	till, known := s.tillFreeLocked()
	wait, waitKnown := 0.0, true
	for rank, ev := range s.waiting {
		pt, ok := s.stats[ev.fn.index].eventAvg()
		var eta *float64
		if ok && waitKnown && known {
			v := pt + wait + till
			eta = &v
		}
		if rank >= after {
			s.emitLocked(ev, estimationMsg(ev.id, rank, len(s.waiting), eta))
		}
		if ok && waitKnown {
			wait += pt / float64(s.cfg.Concurrency)
		} else {
			waitKnown = false
		}
	}
}

// tillFreeLocked estimates the seconds until a worker is free.
func (s *Space) tillFreeLocked() (float64, bool) {
	if len(s.running) < s.cfg.Concurrency {
		return 0, true
	}
	now := s.now()
	first := math.Inf(1)
	for _, ev := range s.running {
		avg, ok := s.stats[ev.fn.index].eventAvg()
		if !ok {
			return 0, false
		}
		first = min(first, avg-now.Sub(ev.started).Seconds())
	}
	return max(first, 0), true
}

// finishLocked ends a job: it leaves the workers and the next one starts
// (unless /cancel ended it: then /cancel starts the next one).
func (s *Space) finishLocked(ev *event) {
	if i := slices.Index(s.running, ev); i >= 0 {
		s.running = slices.Delete(s.running, i, i+1)
	}
	ev.cancel()
	close(ev.done)
	if !ev.cancelled {
		s.dispatchLocked()
	}
}

// removeWaitingLocked drops the queued events for which drop is true and
// returns them.
func (s *Space) removeWaitingLocked(drop func(*event) bool) []*event {
	var removed []*event
	s.waiting = slices.DeleteFunc(s.waiting, func(ev *event) bool {
		if drop(ev) {
			removed = append(removed, ev)
			return true
		}
		return false
	})
	return removed
}

// serveStatus answers {P}/queue/status.
func (s *Space) serveStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.waiting)
	s.mu.Unlock()
	msg := newMsg(kindEstimation, "", member{"rank", nil}, member{"queue_size", n}, member{"rank_eta", nil})
	writeJSON(w, http.StatusOK, json.RawMessage(msg.body))
}
