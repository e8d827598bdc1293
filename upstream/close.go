package upstream

import "time"

// CloseBound bounds Session.Close, whatever the upstream does (given an
// HTTP transport that ends a request when its context ends, as Go's
// does). The relay's shutdown waits for each session's Close before the
// session counts as ended and is logged, all within its grace, 10 s by
// default (relay.DefaultShutdownGrace): 6 s leaves the rest of the
// shutdown 4 s. Each third of it is
// far more than a healthy Space needs to answer a join or a cancel
// (milliseconds).
const CloseBound = 6 * time.Second

// Close's deadlines after its start, CloseBound in thirds; at CloseBound
// itself every request still out is abandoned and the stream closed.
// Each step keeps what the one before left of the bound.
const (
	// A join in flight is cut: its job, not known yet, cannot be taken
	// out of the queue.
	closeJoinWait = CloseBound / 3
	// The dequeues are no longer waited for (they run on, to the bound):
	// the running jobs are cancelled.
	closeDequeueWait = 2 * CloseBound / 3
)

// closeState is where a closing session is: Close's steps, each waiting
// for the one before, or for its deadline.
type closeState struct {
	begun        bool
	step         int           // the step Close waits on
	streamClosed bool          // no stream may open any more
	passed       time.Duration // the last of Close's deadlines passed, or 0
	due          time.Duration // the next, which timer fires at
	timer        *time.Timer
}

// cut reports whether CloseBound has passed: no request may go out.
func (c *closeState) cut() bool { return c.passed == CloseBound }

func (c *closeState) timerC() <-chan time.Time {
	if c.timer == nil {
		return nil
	}
	return c.timer.C
}

func (c *closeState) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// Close's steps, in order.
const (
	stepJoins    = iota // joins in flight are answered (or cut at the first deadline)
	stepDequeues        // queued jobs are taken out of the queue (waited for until the second)
	stepCancels         // running jobs are cancelled
	stepStream          // the stream is closed
	stepDone
)

// beginClose starts closing the session: no job may join from now on, and
// every job's Stream returns ErrClosed.
func (s *Session) beginClose() {
	if s.close.begun {
		return
	}
	s.close.begun = true
	for _, cancel := range s.directs {
		cancel() // nothing to take out of a queue: the request is all there is
	}
	waiting := s.joins[:0]
	for _, req := range s.joins {
		switch {
		case req.flying:
			waiting = append(waiting, req)
		case !req.joined: // still waiting for its turn
			req.reply <- joinReply{err: ErrClosed}
		}
		// (A join answered has had its one reply; its job, if any, is in
		// s.jobs and fails below.)
	}
	s.joins = waiting
	for _, j := range s.jobs {
		j.box.fail(ErrClosed)
		j.abandoned, j.cancelWanted = true, true
	}
	s.closeAt(closeJoinWait)
	s.advanceClose()
}

// closeDue runs at each of Close's deadlines: Close stops waiting for
// what that deadline bounds.
func (s *Session) closeDue() {
	s.close.timer = nil
	switch s.close.passed = s.close.due; s.close.passed {
	case closeJoinWait:
		for _, req := range s.joins {
			if req.flying {
				req.stop() // it reports back, and Close goes on
			}
		}
		s.closeAt(closeDequeueWait)
	case closeDequeueWait:
		s.closeAt(CloseBound)
	case CloseBound:
		// Every request still out ends at once and reports back: their
		// goroutines end with them.
		s.cutRequests()
		s.close.streamClosed = true
		s.stopReader()
	}
	s.advanceClose()
}

// closeAt sets Close's timer for its deadline d.
func (s *Session) closeAt(d time.Duration) {
	s.close.timer = time.NewTimer(d - s.close.passed)
	s.close.due = d
}

// advanceClose takes the closing session as far as it can go now; each
// report of a request it waits for calls it again.
func (s *Session) advanceClose() {
	for s.close.begun && s.close.step < stepDone {
		switch s.close.step {
		case stepJoins:
			if s.joinFlying() {
				return
			}
			s.close.step = stepDequeues
			if !s.dequeueAll() {
				// Nothing to take out: the stream can go at once, which on
				// Gradio before 6.14 drops the session's queued jobs.
				s.close.streamClosed = true
				s.stopReader()
			}
		case stepDequeues:
			if s.cancels > 0 && s.close.passed < closeDequeueWait {
				return // (past the deadline they run on, to the bound)
			}
			s.close.step = stepCancels
			for _, j := range s.jobs {
				if j.started && !j.cancelSent {
					j.cancelSent = true
					s.sendCancel(j, j.fn)
				}
			}
		case stepCancels:
			if s.cancels > 0 {
				return
			}
			s.close.step = stepStream
			s.close.streamClosed = true
			s.stopReader()
		case stepStream:
			if s.reader != nil {
				return
			}
			s.close.step = stepDone
			s.failAll(ErrClosed)
		}
	}
}

// dequeueAll takes every queued job out of the upstream queue, and
// reports whether there was any.
func (s *Session) dequeueAll() bool {
	any := false
	for _, j := range s.jobs {
		if j.started || j.holdQueued || j.cancelSent {
			continue
		}
		any = true
		if !j.dequeueSent {
			j.dequeueSent = true
			s.sendCancel(j, noFunction)
		}
	}
	return any
}

// finished reports whether the session is closed and every goroutine of
// it has reported back.
func (s *Session) finished() bool {
	return s.close.step == stepDone && s.busy == 0
}
