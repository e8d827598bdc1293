package upstream

import "time"

// closeState is where a closing session is: Close's steps, each waiting
// for the one before.
type closeState struct {
	begun        bool
	step         int  // the step Close waits on
	streamClosed bool // no stream may open any more
}

// Close's steps, in order.
const (
	stepJoins    = iota // joins in flight are answered (or cut after closeJoinWait)
	stepDequeues        // queued jobs are taken out of the queue
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
			req.bound = time.AfterFunc(closeJoinWait, req.stop)
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
	s.advanceClose()
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
			if s.cancels > 0 {
				return
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
