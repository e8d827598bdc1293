package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// direct reports whether calls of ep bypass the queue (a queue=False
// event).
func (ep *Endpoint) direct() bool { return !ep.Queue }

// direct runs a call of an endpoint that does not use the queue (Gradio's
// queue=False events): one POST {prefix}/run/{api_name} with the
// visitor's headers and session_hash, answered with the outputs or the
// app's error. fn gets *Accepted as the request goes out, then
// *Completed; there is no queue position and no progress.
func (s *Session) direct(ctx context.Context, api *API, ep *Endpoint, data []any, fn func(Event) error) error {
	call, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		id     int
		header http.Header
		ok     bool
	)
	if !s.do(func() { id, header, ok = s.trackDirect(cancel) }) || !ok {
		return ErrClosed
	}
	defer s.do(func() { s.untrackDirect(id) })
	if err := fn(&Accepted{}); err != nil {
		return err
	}
	out, err := s.postDirect(call, api, ep, data, header)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case call.Err() != nil:
			return ErrClosed // Close cut it
		}
		return err
	}
	c := &Completed{Data: ep.outputs(out.Data)}
	if out.Duration != nil {
		c.Duration = *out.Duration
	}
	return fn(c)
}

// trackDirect counts a direct call as a request of the session, which
// Close cuts; it returns the call's number and the visitor's headers, or
// false when closing.
func (s *Session) trackDirect(cancel context.CancelFunc) (int, http.Header, bool) {
	if s.close.begun {
		return 0, nil, false
	}
	s.busy++
	s.nDirect++
	if s.directs == nil {
		s.directs = make(map[int]context.CancelFunc)
	}
	s.directs[s.nDirect] = cancel
	return s.nDirect, s.header.Clone(), true
}

func (s *Session) untrackDirect(id int) {
	s.busy--
	delete(s.directs, id)
	s.advanceClose()
}

func (s *Session) postDirect(ctx context.Context, api *API, ep *Endpoint, data []any, header http.Header) (output, error) {
	var out output
	body, err := json.Marshal(map[string]any{
		"data": data, "fn_index": ep.fnIndex, "session_hash": s.hash,
		"event_data": nil, "trigger_id": nil,
	})
	if err != nil {
		return out, fmt.Errorf("upstream: direct call: %w", err)
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json")
	header.Set("X-Gradio-User", "api")
	u := api.BaseURL + api.Prefix + "/run/" + strings.TrimPrefix(ep.Name, "/")
	req, err := s.c.request(ctx, http.MethodPost, u, bytes.NewReader(body), header)
	if err != nil {
		return out, err
	}
	resp, err := roundTrip(s.http, req, "direct call")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	switch {
	case err != nil:
		return out, unavailable("direct call", err)
	case len(b) > maxAnswerBytes:
		return out, &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: fmt.Errorf("direct call: the answer is over %d MiB", maxAnswerBytes>>20)}
	}
	if resp.StatusCode/100 == 2 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			return out, &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: fmt.Errorf("direct call: %w", err)}
		}
		return out, nil
	}
	// The app's own failure is a 500 with Gradio's error payload.
	if resp.StatusCode == http.StatusInternalServerError {
		var e output
		if json.Unmarshal(b, &e) == nil && e.Data == nil && bytes.Contains(b, []byte(`"error"`)) {
			ae := appError(str(e.Title), e.Error, api.legacyQuoted)
			redact(ae, s.c.cfg.HFToken, header.Get("X-Ip-Token")) // an app may echo what it got
			return out, ae
		}
	}
	herr := httpError("direct call", resp.StatusCode, resp.Header, b)
	redact(herr, s.c.cfg.HFToken, header.Get("X-Ip-Token"))
	return out, herr
}
