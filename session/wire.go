package session

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream"
)

// inbound is a browser message (PROTOCOL.md section 3).
type inbound struct {
	Type     string          `json:"type"`
	ID       *string         `json:"id"`
	Endpoint string          `json:"endpoint"`
	Data     json.RawMessage `json:"data"`
	Inputs   json.RawMessage `json:"inputs"`
}

// fromBrowser is what the read loop hands to Run: a decoded message, a
// message that could not be decoded (bad), or the end of reading (err).
type fromBrowser struct {
	m   *inbound
	bad string
	err error
}

func decodeInbound(typ websocket.MessageType, b []byte) fromBrowser {
	if typ != websocket.MessageText {
		return fromBrowser{bad: "binary messages are not accepted from the browser"}
	}
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil {
		return fromBrowser{bad: "the message is not a JSON object"}
	}
	if m.Type == "" {
		return fromBrowser{bad: `the message has no string field "type"`}
	}
	return fromBrowser{m: &m}
}

var jobID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

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

// upstreamError turns a job's failure into an error message.
func upstreamError(id string, err error) *errorMsg {
	e := &errorMsg{Type: "error", ID: id, Code: "internal", Message: "the relay failed; try again"}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		return e
	}
	e.Code, e.Title, e.Message = string(ue.Code), ue.Title, ue.Message
	if ue.Code == upstream.CodeUnauthorized {
		e.Code = "upstream_unavailable" // the relay's credentials, not the visitor's
	}
	if e.Message == "" {
		e.Message = ue.Error()
	}
	if ue.RetryAfter > 0 {
		s := int((ue.RetryAfter + time.Second - 1) / time.Second)
		e.RetryAfter = &s
	}
	return e
}

// hello, the first message of every session, is {"type":"hello","protocol":…,"session":…,"endpoints":[…],
// "limits":{…},"token":{…}}: helloHead, the endpoints, helloTail.
type (
	helloHead struct {
		Type     string `json:"type"`
		Protocol int    `json:"protocol"`
		Session  string `json:"session"`
	}
	helloTail struct {
		Limits helloLimits `json:"limits"`
		Token  helloToken  `json:"token"`
	}
)

type helloEndpoint struct {
	Name    string            `json:"name"`
	Inputs  []upstream.Param  `json:"inputs"`
	Outputs []upstream.Output `json:"outputs"`
}

type helloLimits struct {
	MaxJobs         int   `json:"max_jobs"`
	MaxMessageBytes int64 `json:"max_message_bytes"`
	MaxFileBytes    int64 `json:"max_file_bytes"`
}

type helloToken struct {
	Present   bool       `json:"present"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (s *Session) hello() ([]byte, error) {
	eps, err := endpointsJSON(s.cfg.API)
	if err != nil {
		return nil, err
	}
	// The endpoints, encoded once, are spliced in: handed to json.Marshal
	// as a RawMessage they would be checked and compacted again for every
	// session (9% of the relay's CPU per handshake).
	head, err := json.Marshal(helloHead{Type: "hello", Protocol: 1, Session: s.cfg.ID})
	if err != nil {
		return nil, err
	}
	tail, err := json.Marshal(helloTail{
		Limits: helloLimits{s.cfg.MaxJobs, s.cfg.MaxMessageBytes, s.cfg.MaxFileBytes},
		Token:  helloToken{Present: s.cfg.Token != "", ExpiresAt: tokenExpiry(s.cfg.Token)},
	})
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(head)+len(eps)+len(tail)+len(`,"endpoints":,`))
	b = append(b, head[:len(head)-1]...) // without its }
	b = append(b, `,"endpoints":`...)
	b = append(b, eps...)
	b = append(b, ',')
	return append(b, tail[1:]...), nil // without its {
}

// endpointsCache holds the endpoints of hello, encoded once per API: every
// session of a relay says the same.
var endpointsCache sync.Map // *upstream.API → []byte

func endpointsJSON(api *upstream.API) ([]byte, error) {
	if b, ok := endpointsCache.Load(api); ok {
		return b.([]byte), nil
	}
	eps := make([]helloEndpoint, 0, len(api.Endpoints))
	for _, ep := range api.Endpoints {
		in := ep.Inputs
		if in == nil {
			in = []upstream.Param{}
		}
		eps = append(eps, helloEndpoint{Name: ep.Name, Inputs: in, Outputs: ep.Outputs})
	}
	b, err := json.Marshal(eps)
	if err == nil {
		endpointsCache.Store(api, b)
	}
	return b, err
}

// tokenExpiry reads the exp claim of a JWT; nil if tok is not a JWT with
// one. The signature is not checked: the Space checks it; this only tells
// the page when to refresh.
func tokenExpiry(tok string) *time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return nil
	}
	t := time.Unix(int64(*claims.Exp), 0).UTC()
	return &t
}
