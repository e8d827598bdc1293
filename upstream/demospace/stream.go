package demospace

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// sseWriter writes SSE frames, each flushed and under its own deadline.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	_ = sw.rc.Flush()
	return sw
}

// data writes "data: <body>\n\n". A client too slow to take it within
// writeTimeout is given up on.
func (sw *sseWriter) data(body []byte) error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	buf := make([]byte, 0, len(body)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, body...)
	buf = append(buf, "\n\n"...)
	if _, err := sw.w.Write(buf); err != nil {
		return err
	}
	if err := sw.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// streamState says what the stream should do next.
type streamState int

const (
	streamSend     streamState = iota // write the message
	streamWait                        // nothing yet: wait for a change
	streamNotFound                    // the session has no message queue
)

// serveData answers GET {P}/queue/data?session_hash=: the session's
// messages as SSE, a heartbeat every 15 s, and close_stream after the
// process_completed of the session's last pending event. If the client
// goes away first, the session is cleaned up as in Gradio (see
// dropQueueLocked).
func (s *Space) serveData(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	q := r.URL.Query()
	if !q.Has("session_hash") {
		writeDetail(w, http.StatusUnprocessableEntity, []any{missing("query", "session_hash", nil)})
		return
	}
	s.serveStream(w, r, q.Get("session_hash"), queueFrame)
}

// A frameFunc writes one message of a session's stream to the client, in
// the framing of its route; it may write nothing.
type frameFunc func(sw *sseWriter, m outMsg) error

// queueFrame is /queue/data's framing: "data: <message>".
func queueFrame(sw *sseWriter, m outMsg) error { return sw.data(m.body) }

// serveStream streams the messages of session hash, framed by frame.
func (s *Space) serveStream(w http.ResponseWriter, r *http.Request, hash string, frame frameFunc) {
	if !s.track() {
		_ = frame(newSSEWriter(w), stoppedMsg)
		return
	}
	defer s.wg.Done()
	sw := newSSEWriter(w)
	if err := s.stream(r, sw, hash, frame); err != nil {
		s.disconnect(hash)
	}
}

// errGone reports a client that went away.
var errGone = errors.New("demospace: client gone")

// stream runs the message loop. It returns errGone if the client left.
func (s *Space) stream(r *http.Request, sw *sseWriter, hash string, frame frameFunc) error {
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	for {
		msg, state, wake := s.next(hash)
		switch state {
		case streamNotFound:
			_ = frame(sw, notFoundMsg)
			return nil
		case streamSend:
			if err := frame(sw, msg); err != nil {
				return errGone
			}
			if msg.kind == kindCompleted && msg.eventID != "" && s.delivered(hash, msg.eventID) {
				_ = frame(sw, closeMsg)
				return nil
			}
			continue
		}
		select {
		case <-wake:
		case <-heartbeat.C:
			if err := frame(sw, heartbeatMsg); err != nil {
				return errGone
			}
		case <-r.Context().Done():
			return errGone
		case <-s.done:
			_ = frame(sw, stoppedMsg)
			return nil
		}
	}
}

// next takes the session's next message, or says why there is none.
func (s *Space) next(hash string) (outMsg, streamState, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions.get(hash)
	if !ok || !sess.hasQueue {
		return outMsg{}, streamNotFound, nil
	}
	if msg, ok := sess.popLocked(); ok {
		return msg, streamSend, nil
	}
	return outMsg{}, streamWait, sess.waitChan()
}

// delivered records that the completion of id reached the client and
// tells whether that was the session's last pending event.
func (s *Space) delivered(hash, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions.peek(hash)
	if !ok {
		return true
	}
	delete(sess.pending, id)
	return len(sess.pending) == 0
}

// disconnect cleans up after a stream whose client went away.
func (s *Space) disconnect(hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions.peek(hash); ok && sess.hasQueue {
		s.dropQueueLocked(sess)
	}
}

// serveHeartbeat answers GET {P}/heartbeat/<session>: "data: ALIVE" now
// and every 15 s, until the client leaves or the Space closes.
func (s *Space) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	if strings.TrimPrefix(r.URL.Path, apiPrefix+"/heartbeat/") == "" {
		writeDetail(w, http.StatusNotFound, "Not Found")
		return
	}
	if !s.track() {
		return
	}
	defer s.wg.Done()
	sw := newSSEWriter(w)
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		if err := sw.writeRaw("data: ALIVE\n\n"); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

func (sw *sseWriter) writeRaw(s string) error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := sw.w.Write([]byte(s)); err != nil {
		return err
	}
	if err := sw.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
