package demospace

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
)

// serveJoin answers POST {P}/queue/join as Gradio's queue_join: 422 for a
// body that is not a PredictBody, 400 "Session hash not found." or "No
// function index provided.", 503 when the queue is full or stopped, a
// plain 500 for an unknown fn_index, else {"event_id": ...}.
//
// The job sees the X-IP-Token of this request (as a Gradio function sees
// the join's gr.Request), and its file URLs use this request's root URL.
func (s *Space) serveJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	b, ok := readBody(w, r, predictBody)
	if !ok {
		return
	}
	hash, ok := b.str("session_hash")
	if !ok {
		writeDetail(w, http.StatusBadRequest, "Session hash not found.")
		return
	}
	ev, jerr := s.newEvent(r, b, hash)
	if jerr == nil {
		jerr = s.enqueue(ev)
	}
	switch {
	case jerr == nil:
		writeJSON(w, http.StatusOK, object{{"event_id", ev.id}})
	case jerr.status == http.StatusInternalServerError:
		writeText(w, jerr.status, jerr.detail)
	default:
		writeDetail(w, jerr.status, jerr.detail)
	}
}

// newEvent makes the event of a join, checking what Queue.push checks
// before the queue size.
func (s *Space) newEvent(r *http.Request, b body, hash string) (*event, *joinError) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, &joinError{http.StatusServiceUnavailable, "Queue is stopped."}
	}
	fn, ok := b.int("fn_index")
	if !ok {
		return nil, &joinError{http.StatusBadRequest, "No function index provided."}
	}
	if fn < 0 || fn >= len(s.endpoints) {
		return nil, &joinError{http.StatusInternalServerError, "Internal Server Error"}
	}
	var data []json.RawMessage
	_ = json.Unmarshal(b["data"], &data)
	return &event{
		id:      newEventID(),
		session: hash,
		fn:      s.endpoints[fn],
		data:    data,
		simple:  b.bool("simple_format"),
		token:   tokenDigest(r.Header.Get("X-IP-Token")),
		root:    rootURL(r, apiPrefix+"/queue/join"),
	}, nil
}

// tokenDigest is the first 12 hex digits of sha256(token), or "" for none.
func tokenDigest(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
