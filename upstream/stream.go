package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// errStreamDone ends a stream that the server has finished with.
var errStreamDone = errors.New("stream done")

// maxEmptyReopens bounds reopening a stream that closes at once although
// jobs are still registered (the server no longer knows them).
const maxEmptyReopens = 3

// ensureReader starts the session's stream reader unless one runs.
// Called with mu held.
func (s *Session) ensureReader(api *API) {
	if s.reading || s.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.reading, s.stop = true, cancel
	s.bg.Add(1)
	go s.readLoop(ctx, api)
}

// readLoop reads the session's queue/data stream, reopening it after a
// close_stream if jobs are still registered, until none is left, the
// stream breaks, or Close stops it.
func (s *Session) readLoop(ctx context.Context, api *API) {
	defer s.bg.Done()
	empty := 0
	for {
		got, err := s.readStream(ctx, api)
		if got > 0 {
			empty = 0
		} else if err == nil {
			empty++
		}
		if err == nil && empty > maxEmptyReopens {
			err = &Error{Code: CodeUnavailable, Message: "the upstream keeps closing the stream of unfinished jobs"}
		}
		s.mu.Lock()
		if err == nil && ctx.Err() == nil && (len(s.jobs) > 0 || s.joining > 0) {
			s.mu.Unlock()
			continue // a job joined as the stream closed: its messages wait upstream
		}
		if err != nil && ctx.Err() == nil {
			s.failAll(err)
		}
		s.reading = false
		s.stop()
		s.stop = nil
		s.mu.Unlock()
		return
	}
}

// readStream opens the stream once and dispatches its messages. It returns
// how many job messages it read, and nil when the server ended the stream
// properly.
func (s *Session) readStream(ctx context.Context, api *API) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := s.c.cfg.StreamIdleTimeout
	var silent atomic.Bool
	timer := time.AfterFunc(idle, func() { silent.Store(true); cancel() })
	defer timer.Stop()

	u := api.BaseURL + api.Prefix + "/queue/data?session_hash=" + s.hash
	req, err := s.c.request(ctx, http.MethodGet, u, nil, http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return 0, err
	}
	resp, err := s.c.do(req, "stream")
	if err == nil {
		defer resp.Body.Close()
		got := 0
		body := &idleReader{r: resp.Body, t: timer, d: idle}
		err = parseSSE(body, s.c.cfg.MaxEventBytes, func(data []byte) error {
			m, err := decodeMessage(data)
			if err != nil {
				return &Error{Code: CodeUnavailable, Message: "stream: a message is not valid JSON", Err: err}
			}
			m.read = body.last
			if m.EventID != nil {
				got++
			}
			timer.Stop() // a slow consumer is not a silent upstream
			err = s.dispatch(api, m)
			timer.Reset(idle)
			return err
		})
		if err == nil {
			err = &Error{Code: CodeUnavailable, Message: "stream: the upstream ended the stream with jobs unfinished"}
		}
		if errors.Is(err, errStreamDone) {
			return got, nil
		}
		return got, s.streamError(ctx, err, &silent)
	}
	return 0, s.streamError(ctx, err, &silent)
}

func (s *Session) streamError(ctx context.Context, err error, silent *atomic.Bool) error {
	switch {
	case silent.Load():
		return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("stream: the upstream was silent for %v", s.c.cfg.StreamIdleTimeout)}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return unavailable("stream", err)
}

// dispatch hands a message to its job, or handles a stream-level one.
func (s *Session) dispatch(api *API, m *message) error {
	if m.EventID == nil {
		switch m.Msg {
		case "close_stream":
			return errStreamDone
		case "unexpected_error":
			return streamFailure(m)
		}
		return nil // heartbeat, and anything new
	}
	id := *m.EventID
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil {
		// A completion is always kept: without it a job would wait forever.
		if s.joining > 0 && (s.nEarly < maxEarly || m.Msg == "process_completed") {
			if s.early == nil {
				s.early = make(map[string][]*message)
			}
			s.early[id] = append(s.early[id], m)
			s.nEarly++
		}
		s.mu.Unlock()
		return nil
	}
	end := false
	switch m.Msg {
	case "process_starts":
		j.started = true
		if j.cancelWanted {
			s.flushCancels() // a job held back until it started
		}
	case "process_completed":
		delete(s.jobs, id)
		s.flushCancels()
		end = !api.closeStream && len(s.jobs) == 0 && s.joining == 0
	}
	live := j.live
	if !live && !j.cancelWanted {
		j.pending = append(j.pending, m) // Stream has not caught up yet
	}
	s.mu.Unlock()
	if live {
		j.call.Lock()
		s.handle(j, m)
		j.call.Unlock()
	}
	if end {
		return errStreamDone // old protocols: nothing pending, nothing will close it
	}
	return nil
}

func streamFailure(m *message) *Error {
	if m.SessionNotFound {
		return &Error{Code: CodeUnavailable, Message: "the upstream lost this session (it restarted, or it runs several replicas without sticky sessions)"}
	}
	msg := str(m.Message)
	if msg == "" {
		msg = "the upstream reported an unexpected error"
	}
	return &Error{Code: CodeUnavailable, Message: msg}
}

// idleReader pushes the stream's idle deadline back on every read that
// brings data, and notes when it did.
type idleReader struct {
	r    io.Reader
	t    *time.Timer
	d    time.Duration
	last time.Time // the last read that brought data
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.last = time.Now()
		r.t.Reset(r.d)
	}
	return n, err
}
