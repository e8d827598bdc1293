package demospace

import (
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"
)

// simpleBody is SimplePredictBody of gradio/data_classes.py, the body of
// POST {P}/call/<api>.
var simpleBody = []field{
	{"data", kindList, true, false},
	{"session_hash", kindStr, false, true},
}

// endpointNamed returns the endpoint of api_name name, or nil.
func (s *Space) endpointNamed(name string) *endpoint {
	for _, e := range s.endpoints {
		if e.name == name {
			return e
		}
	}
	return nil
}

// serveCall answers Gradio's REST API (GRADIO.md section 3):
//
//	POST {P}/call/<api>             {"data": [...]} -> {"event_id"}
//	POST {P}/call/v2/<api>          {"<parameter>": ...} -> {"event_id"}
//	GET  {P}/call[/v2]/<api>/<id>   the job as "event: <name>\ndata: <json>"
//
// A call's job is queued as a join with simple_format (full values, never
// diffs) whose session is the event id unless the body names one.
func (s *Space) serveCall(w http.ResponseWriter, r *http.Request, p string) {
	rest, v2 := strings.CutPrefix(p, "v2/")
	name, id, hasID := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case hasID && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveStream(w, r, s.callSession(id), callFrame)
	case hasID:
		methodNotAllowed(w)
	case r.Method != http.MethodPost:
		methodNotAllowed(w)
	default:
		s.serveCallPost(w, r, name, v2)
	}
}

func (s *Space) serveCallPost(w http.ResponseWriter, r *http.Request, name string, v2 bool) {
	e := s.endpointNamed(name)
	var data []json.RawMessage
	var hash string
	if v2 {
		var named map[string]json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodySize)).Decode(&named); err != nil {
			writeDetail(w, http.StatusUnprocessableEntity, "Invalid JSON body.")
			return
		}
		if e != nil {
			data = e.positional(named)
		}
	} else {
		b, ok := readBody(w, r, simpleBody)
		if !ok {
			return
		}
		_ = json.Unmarshal(b["data"], &data)
		hash, _ = b.str("session_hash")
	}
	if e == nil {
		writeText(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	ev := &event{id: newEventID(), data: e.withStateSlots(data), simple: true,
		caller: newCaller(r.Header.Get("X-IP-Token")), root: rootURL(r, apiPrefix+"/call/"+name)}
	ev.session = hash
	if hash == "" {
		ev.session = ev.id
	}
	if jerr := s.enqueue(ev, e.index, true); jerr != nil {
		writeDetail(w, jerr.status, jerr.detail)
		return
	}
	s.mu.Lock()
	s.calls.put(ev.id, ev.session)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"event_id", ev.id}})
}

// callSession is the session a call's GET streams: the one its POST used.
func (s *Space) callSession(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hash, ok := s.calls.get(id); ok {
		return hash
	}
	return id
}

// withStateSlots inserts nulls for the State inputs when data has exactly
// one value per API parameter (Gradio's prepare_simple_api_data).
func (e *endpoint) withStateSlots(data []json.RawMessage) []json.RawMessage {
	visible := 0
	for _, id := range e.inputs {
		if componentByID(id).api != nil {
			visible++
		}
	}
	if len(data) != visible || visible == len(e.inputs) {
		return data
	}
	out := make([]json.RawMessage, 0, len(e.inputs))
	for _, id := range e.inputs {
		if componentByID(id).api == nil {
			out = append(out, json.RawMessage("null"))
			continue
		}
		out, data = append(out, data[0]), data[1:]
	}
	return out
}

// positional maps /call/v2's named values to the function's inputs: a
// missing parameter takes its default (null if it has none).
func (e *endpoint) positional(named map[string]json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, len(e.inputs))
	for i, id := range e.inputs {
		c := componentByID(id)
		out[i] = json.RawMessage("null")
		if c.api == nil {
			continue
		}
		if v, ok := named[e.params[i]]; ok {
			out[i] = v
		} else if def := c.props.get("value"); def != nil {
			out[i] = encodeJSON(def)
		}
	}
	return out
}

// callFrame is the framing of GET {P}/call/<api>/<id>: "event: <name>" and
// the data as Python's json.dumps writes it; only outputs, errors and
// heartbeats are sent.
func callFrame(sw *sseWriter, m outMsg) error {
	var msg struct {
		Output  map[string]json.RawMessage `json:"output"`
		Success bool                       `json:"success"`
		Message string                     `json:"message"`
	}
	_ = json.Unmarshal(m.body, &msg)
	var name string
	var data []byte
	switch m.kind {
	case kindCompleted, kindGenerating:
		name = map[string]string{kindCompleted: "complete", kindGenerating: "generating"}[m.kind]
		data = msg.Output["data"]
		if !msg.Success {
			name, data = "error", encodeJSON(orderedOutput(m.body))
		}
	case kindHeartbeat:
		name = "heartbeat"
	case kindUnexpected:
		name, data = "error", encodeJSON(msg.Message)
	default:
		return nil
	}
	if len(data) == 0 {
		data = []byte("null")
	}
	return sw.writeRaw("event: " + name + "\ndata: " + string(pyJSON(data)) + "\n\n")
}

// orderedOutput is the "output" member of a message, its keys in order.
func orderedOutput(body []byte) json.RawMessage {
	const key = `"output":`
	i := strings.Index(string(body), key)
	if i < 0 {
		return json.RawMessage("null")
	}
	d := json.NewDecoder(strings.NewReader(string(body[i+len(key):])))
	var raw json.RawMessage
	if d.Decode(&raw) != nil {
		return json.RawMessage("null")
	}
	return raw
}

// pyJSON rewrites compact JSON the way Python's json.dumps writes it:
// ", " and ": " between items, every non-ASCII character as \uXXXX.
func pyJSON(compact []byte) []byte {
	out := make([]byte, 0, len(compact)+len(compact)/8)
	inString := false
	for i := 0; i < len(compact); {
		c := compact[i]
		switch {
		case inString && c == '\\':
			out = append(out, compact[i:min(i+2, len(compact))]...)
			i += 2
			continue
		case inString && c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(compact[i:])
			out = appendUnicodeEscape(out, r)
			i += size
			continue
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\n' || c == '\t' || c == '\r'):
			i++
			continue
		case !inString && (c == ',' || c == ':'):
			out = append(out, c, ' ')
			i++
			continue
		}
		out = append(out, c)
		i++
	}
	return out
}

func appendUnicodeEscape(b []byte, r rune) []byte {
	if r > 0xffff {
		r -= 0x10000
		b = appendUnicodeEscape(b, 0xd800+(r>>10))
		return appendUnicodeEscape(b, 0xdc00+(r&0x3ff))
	}
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// serveRun answers POST {P}/run/<api> and {P}/api/<api>, the direct route:
// a queue=False function runs at once and its output dict is the answer
// (500 with the error payload if it fails). A queued function answers 404,
// as on Hugging Face Spaces, where Gradio disables this route for them.
func (s *Space) serveRun(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	e := s.endpointNamed(strings.TrimSuffix(name, "/"))
	if e == nil {
		writeText(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	if !e.direct {
		writeDetail(w, http.StatusNotFound, "This API endpoint does not accept direct HTTP POST requests. Please join the queue to use this API.")
		return
	}
	b, ok := readBody(w, r, predictBody)
	if !ok {
		return
	}
	if !s.track() {
		writeDetail(w, http.StatusServiceUnavailable, "Queue is stopped.")
		return
	}
	defer s.wg.Done()
	var data []json.RawMessage
	_ = json.Unmarshal(b["data"], &data)
	hash, _ := b.str("session_hash")
	ev := &event{id: newEventID(), session: hash, fn: e, data: data, simple: true,
		caller: newCaller(r.Header.Get("X-IP-Token")), root: rootURL(r, apiPrefix+"/run/"+name)}
	c := &call{s: s, ev: ev, ctx: r.Context(), begin: s.now()}
	out, err := e.run(c)
	if err != nil {
		output, _ := errorOutput(err)
		writeJSON(w, http.StatusInternalServerError, output)
		return
	}
	s.mu.Lock()
	dur := s.since(c.begin)
	avg := s.stats[e.index].addCall(dur)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, successOutput(out, false, dur, avg))
}

// serveReset answers POST {P}/reset, a no-op Gradio keeps for old clients
// (gradio_client posts it when a job is cancelled).
func (s *Space) serveReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	writeJSON(w, http.StatusOK, object{{"success", true}})
}
