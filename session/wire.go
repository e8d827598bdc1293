package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream"
)

// inbound is a browser message (PROTOCOL.md sections 3 and 9).
type inbound struct {
	Type     string          `json:"type"`
	ID       *string         `json:"id"`
	Endpoint string          `json:"endpoint"`
	Data     json.RawMessage `json:"data"`
	Inputs   json.RawMessage `json:"inputs"`
	// upload
	Name string `json:"name"`
	MIME string `json:"mime"`
	Size *int64 `json:"size"`
}

// fromBrowser is what the read loop hands to Run: a decoded message, a
// message that could not be decoded (bad), a binary frame, or the end of
// reading (err). size is a text message's length.
type fromBrowser struct {
	m      *inbound
	bad    string
	binary []byte
	size   int
	err    error
}

func decodeInbound(typ websocket.MessageType, b []byte) fromBrowser {
	if typ != websocket.MessageText {
		if b == nil {
			b = []byte{}
		}
		return fromBrowser{binary: b}
	}
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		return fromBrowser{bad: whyUndecodable(err), size: len(b)}
	}
	if m.Type == "" {
		return fromBrowser{bad: `the message has no string field "type"`, size: len(b)}
	}
	return fromBrowser{m: &m, size: len(b)}
}

// whyUndecodable says, for people, why a text message is not one of ours.
func whyUndecodable(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return fmt.Sprintf("the message is a JSON %s, not an object", typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q of the message must be %s, not a JSON %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	case strings.Contains(err.Error(), "exceeded max depth"):
		return "the message nests too deeply"
	case errors.As(err, &syntaxErr):
		return "the message is not valid JSON"
	}
	return "the message is not a JSON object"
}

// jsonKind names the JSON value a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a number"
}

var jobID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// newID returns the id of a submit or upload, and whether it may start:
// well formed, and held by no unfinished job or upload (one namespace).
func (s *Session) newID(m *inbound) (string, bool) {
	if m.ID == nil || !jobID.MatchString(*m.ID) {
		return "", false
	}
	id := *m.ID
	if _, busy := s.jobs[id]; busy {
		return id, false
	}
	if u := s.uploads[id]; u != nil && !u.over {
		return id, false
	}
	return id, true
}

// idProblem says what is wrong with the id of a refused submit or upload.
func idProblem(what string, m *inbound) string {
	id := ""
	if m.ID != nil {
		id = *m.ID
	}
	if !jobID.MatchString(id) {
		return fmt.Sprintf("%s: id %q must be 1 to 64 characters of A-Z a-z 0-9 _ . : -", what, id)
	}
	return fmt.Sprintf("%s: id %q is held by an unfinished job or upload", what, id)
}

// call decodes a submit's inputs into an upstream call.
func (m *inbound) call(endpoint string) (upstream.Call, error) {
	c := upstream.Call{Endpoint: endpoint}
	hasData, hasInputs := present(m.Data), present(m.Inputs)
	if hasData == hasInputs {
		return c, fmt.Errorf(`submit: give exactly one of "data" (an array) or "inputs" (an object)`)
	}
	if hasData {
		if err := decodeNumbers(m.Data, &c.Data); err != nil || c.Data == nil {
			return c, fmt.Errorf(`submit: "data" must be a JSON array`)
		}
		return c, nil
	}
	if err := decodeNumbers(m.Inputs, &c.Inputs); err != nil || c.Inputs == nil {
		return c, fmt.Errorf(`submit: "inputs" must be a JSON object`)
	}
	return c, nil
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

func decodeNumbers(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// errorMsg is an error message to the browser.
type errorMsg struct {
	Type       string `json:"type"`
	ID         string `json:"id,omitempty"`
	Code       string `json:"code"`
	Title      string `json:"title,omitempty"`
	Message    string `json:"message"`
	RetryAfter *int   `json:"retry_after,omitempty"`
}

// A refusal is a failure the relay decides itself, with its code and a
// message for people.
type refusal struct {
	code    string
	message string
}

func (r *refusal) Error() string { return "session: " + r.code + ": " + r.message }

// upstreamError turns a job's failure into an error message, for people:
// never an address or a Go error chain (those are for the log).
func upstreamError(id string, err error) *errorMsg {
	e := &errorMsg{Type: "error", ID: id, Code: "internal", Message: "The relay failed; try again."}
	var ref *refusal
	if errors.As(err, &ref) {
		e.Code, e.Message = ref.code, ref.message
		return e
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return e
	}
	e.Code, e.Title, e.Message = string(ue.Code), ue.Title, ue.Message
	if ue.Code == upstream.CodeUnauthorized {
		e.Code = "upstream_unavailable" // the relay's credentials, not the visitor's
	}
	if e.Message == "" {
		e.Message = e.Title
	}
	if ue.RetryAfter > 0 {
		s := int((ue.RetryAfter + time.Second - 1) / time.Second)
		e.RetryAfter = &s
	}
	return e
}

// hello, the first message of every session, is {"type":"hello","protocol":…,"session":…,"endpoints":[…],
// "limits":{…},"token":{…},"features":[…]}: helloHead, the endpoints, helloTail.
type (
	helloHead struct {
		Type     string `json:"type"`
		Protocol int    `json:"protocol"`
		Session  string `json:"session"`
		Relay    string `json:"relay,omitempty"`
	}
	helloTail struct {
		Limits   helloLimits `json:"limits"`
		Token    helloToken  `json:"token"`
		Features []string    `json:"features"`
	}
)

// features are the optional parts of the protocol this relay speaks.
var features = []string{"upload", "token_refresh"}

type helloEndpoint struct {
	Name      string            `json:"name"`
	Generator bool              `json:"generator,omitempty"`
	Inputs    []upstream.Param  `json:"inputs"`
	Outputs   []upstream.Output `json:"outputs"`
}

type helloLimits struct {
	MaxJobs               int   `json:"max_jobs"`
	MaxMessageBytes       int64 `json:"max_message_bytes"`
	MaxFileBytes          int64 `json:"max_file_bytes"`
	MaxUploadBytes        int64 `json:"max_upload_bytes"`
	MaxSessionUploadBytes int64 `json:"max_session_upload_bytes"`
	UploadChunkBytes      int64 `json:"upload_chunk_bytes"`
	UploadWindow          int   `json:"upload_window"`
}

type helloToken struct {
	Present   bool          `json:"present"`
	ExpiresAt *time.Time    `json:"expires_at"`
	ExpiresIn *int64        `json:"expires_in"`
	Refresh   *helloRefresh `json:"refresh,omitempty"`
}

type helloRefresh struct {
	URL string `json:"url"`
	Key string `json:"key"`
}

func (s *Session) hello() ([]byte, error) {
	eps, err := endpointsJSON(s.cfg.API)
	if err != nil {
		return nil, err
	}
	// The endpoints, encoded once, are spliced in: handed to json.Marshal
	// as a RawMessage they would be checked and compacted again for every
	// session (9% of the relay's CPU per handshake).
	head, err := json.Marshal(helloHead{Type: "hello", Protocol: 1, Session: s.cfg.ID, Relay: s.cfg.Version})
	if err != nil {
		return nil, err
	}
	c := &s.cfg
	tok := helloToken{Present: s.token.value != "", ExpiresAt: s.token.exp, ExpiresIn: s.token.expiresIn(c.Now())}
	if c.Refresh != nil {
		tok.Refresh = &helloRefresh{URL: c.Refresh.URL, Key: c.Refresh.Key}
	}
	tail, err := json.Marshal(helloTail{
		Limits: helloLimits{c.MaxJobs, c.MaxMessageBytes, c.MaxFileBytes,
			c.MaxUploadBytes, c.MaxSessionUploadBytes, c.UploadChunkBytes, uploadWindow},
		Token:    tok,
		Features: features,
	})
	if err != nil {
		return nil, err
	}
	b := helloBufs.Get().(*[]byte)
	*b = slices.Grow((*b)[:0], len(head)+len(eps)+len(tail)+len(`,"endpoints":,`))
	return appendHello(*b, head, eps, tail), nil
}

// helloBufs holds hello's buffers for reuse: a Space with many endpoints
// (a Chatbot's schema alone is 5 KB) has a hello of many KB, which every
// session would otherwise allocate and drop.
var helloBufs = sync.Pool{New: func() any { return new([]byte) }}

// putHello gives back a buffer hello returned, once written, cleared: it
// holds the session's refresh key.
func putHello(b []byte) {
	clear(b)
	b = b[:0]
	helloBufs.Put(&b)
}

func appendHello(b, head, eps, tail []byte) []byte {
	b = append(b, head[:len(head)-1]...) // without its }
	b = append(b, `,"endpoints":`...)
	b = append(b, eps...)
	b = append(b, ',')
	return append(b, tail[1:]...) // without its {
}

// endpointsCache holds the endpoints of hello for the API seen last,
// encoded once: every session of a relay says the same (and after a
// redeploy, the sessions of the new API do).
var endpointsCache atomic.Pointer[encodedEndpoints]

type encodedEndpoints struct {
	api *upstream.API
	b   []byte
}

func endpointsJSON(api *upstream.API) ([]byte, error) {
	if c := endpointsCache.Load(); c != nil && c.api == api {
		return c.b, nil
	}
	eps := make([]helloEndpoint, 0, len(api.Endpoints))
	for _, ep := range api.Endpoints {
		in, out := ep.Inputs, ep.Outputs
		if in == nil {
			in = []upstream.Param{}
		}
		if out == nil {
			out = []upstream.Output{} // a State-only output: none a page sees
		}
		eps = append(eps, helloEndpoint{Name: ep.Name, Generator: ep.Generator, Inputs: in, Outputs: out})
	}
	b, err := json.Marshal(eps)
	if err == nil {
		endpointsCache.Store(&encodedEndpoints{api, b})
	}
	return b, err
}
