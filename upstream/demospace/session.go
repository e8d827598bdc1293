package demospace

// session is what the Space keeps per session_hash: Gradio's message queue
// (pending_messages_per_session) and pending event ids
// (pending_event_ids_session). All of it is guarded by Space.mu.
type session struct {
	hash string

	// hasQueue tells whether Gradio would have a message queue for the
	// session: from a join until the stream drops. Without one, the
	// stream answers session_not_found.
	hasQueue bool
	msgs     []outMsg // undelivered, oldest first

	// pending holds the events whose process_completed has not been
	// delivered yet; the stream closes when it becomes empty.
	pending map[string]struct{}

	wake chan struct{} // closed and cleared when msgs or hasQueue change
}

// sessionLocked returns the session of hash, making it (and its message
// queue) if needed. A new session may push the least recently used one out.
func (s *Space) sessionLocked(hash string) *session {
	sess, ok := s.sessions.get(hash)
	if !ok {
		sess = &session{hash: hash, pending: make(map[string]struct{})}
		if old, evicted := s.sessions.put(hash, sess); evicted {
			s.dropQueueLocked(old.val)
		}
	}
	sess.hasQueue = true
	return sess
}

// changed wakes the streams waiting on the session.
func (sess *session) changed() {
	if sess.wake != nil {
		close(sess.wake)
		sess.wake = nil
	}
}

// waitChan returns a channel that is closed at the session's next change.
func (sess *session) waitChan() <-chan struct{} {
	if sess.wake == nil {
		sess.wake = make(chan struct{})
	}
	return sess.wake
}

// emitLocked queues msg for the stream of ev's session, unless the event
// is dead (its stream dropped) or the session has no queue any more.
func (s *Space) emitLocked(ev *event, msg outMsg) {
	if !ev.alive {
		return
	}
	sess, ok := s.sessions.peek(ev.session)
	if !ok || !sess.hasQueue {
		return
	}
	s.pushLocked(sess, msg)
}

func (s *Space) emit(ev *event, msg outMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emitLocked(ev, msg)
}

// coalesceAfter is the backlog from which a new estimation replaces an
// undelivered one of the same event just before it (a client reading
// along never sees the difference).
const coalesceAfter = 16

// pushLocked appends msg to the session's queue. A queue nobody reads may
// not grow without bound: estimations coalesce, and past msgLimit messages
// the session's events are dropped as if its stream had disconnected.
func (s *Space) pushLocked(sess *session, msg outMsg) {
	if n := len(sess.msgs); n >= coalesceAfter && msg.kind == kindEstimation {
		if last := &sess.msgs[n-1]; last.kind == kindEstimation && last.eventID == msg.eventID {
			*last = msg
			return
		}
	}
	if len(sess.msgs) >= s.msgLimit {
		s.dropQueueLocked(sess)
		return
	}
	sess.msgs = append(sess.msgs, msg)
	sess.changed()
}

// popLocked takes the oldest undelivered message of the session.
func (sess *session) popLocked() (outMsg, bool) {
	if len(sess.msgs) == 0 {
		return outMsg{}, false
	}
	msg := sess.msgs[0]
	sess.msgs[0] = outMsg{}
	sess.msgs = sess.msgs[1:]
	if len(sess.msgs) == 0 {
		sess.msgs = nil
	}
	return msg, true
}

// dropQueueLocked is what Gradio does when a session's stream drops
// (queue_data_helper on CancelledError): the message queue is deleted, the
// session's queued events are removed, and its running events are marked
// dead: their messages are dropped, generators stop after the current
// step, other functions run on. The ids of running events stay pending.
func (s *Space) dropQueueLocked(sess *session) {
	for _, ev := range s.running {
		if ev.session == sess.hash {
			ev.alive = false
		}
	}
	for _, ev := range s.removeWaitingLocked(func(ev *event) bool { return ev.session == sess.hash }) {
		delete(sess.pending, ev.id)
	}
	sess.hasQueue = false
	sess.msgs = nil
	sess.changed()
	if len(sess.pending) == 0 {
		if cur, ok := s.sessions.peek(sess.hash); ok && cur == sess {
			s.sessions.remove(sess.hash)
		}
	}
}
