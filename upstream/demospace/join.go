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
	var data []json.RawMessage
	_ = json.Unmarshal(b["data"], &data)
	ev := &event{
		id:      newEventID(),
		session: hash,
		data:    data,
		simple:  b.bool("simple_format"),
		caller:  newCaller(r.Header.Get("X-IP-Token")),
		root:    rootURL(r, apiPrefix+"/queue/join"),
	}
	fn, hasFn := b.int("fn_index")
	switch jerr := s.enqueue(ev, fn, hasFn); {
	case jerr == nil:
		writeJSON(w, http.StatusOK, object{{"event_id", ev.id}})
	case jerr.status == http.StatusInternalServerError:
		writeText(w, jerr.status, jerr.detail)
	default:
		writeDetail(w, jerr.status, jerr.detail)
	}
}

// tokenDigest is the first 12 hex digits of sha256(token), or "" for none.
func tokenDigest(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
