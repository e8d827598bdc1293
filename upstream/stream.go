package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// errStreamDone ends a stream that the server has finished with.
var errStreamDone = errors.New("stream done")

// reader is one queue/data stream of a session: a goroutine reads it and
// hands every message to the session's owner, which owns this struct.
type reader struct {
	seq     int                // its place among the session's streams, from 1
	api     *API               // the API it was opened with
	stop    context.CancelFunc // ends it
	last    time.Time          // when its last message (a heartbeat included) came, or it opened
	stopped bool               // the owner ended it: its end is no failure
}

// fromReader is what a stream reader hands to the owner: a message, or
// the stream's end (end, with err nil when the server ended it properly).
type fromReader struct {
	r   *reader
	m   *message
	end bool
	err error
}

// ensureReader opens the session's stream unless one is open.
func (s *Session) ensureReader(api *API) {
	if s.reader != nil || s.close.streamClosed {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	s.readers++
	r := &reader{seq: s.readers, api: api, stop: stop, last: time.Now()}
	s.reader = r
	s.busy++
	header := s.header.Clone()
	go s.read(ctx, r, api, header)
}

// stopReader ends the stream on purpose.
func (s *Session) stopReader() {
	if s.reader != nil {
		s.reader.stopped = true
		s.reader.stop()
	}
}

// replaceStream gives up a stream that stopped answering: its jobs fail
// with err (the upstream drops what it still had of them when it notices
// the stream gone), and the next job opens a new one.
func (s *Session) replaceStream(err error) {
	s.stopReader()
	s.reader = nil // its end is not waited for
	s.failAll(err)
}

// fromReader takes what a stream reader handed over.
func (s *Session) fromReader(f fromReader) {
	r := f.r
	if f.end {
		s.busy--
		if s.reader == r {
			s.reader = nil
			s.streamEnded(r, f.err)
		}
		s.advanceClose()
		return
	}
	if s.reader != r {
		return // a stream given up, still talking
	}
	r.last = time.Now()
	m := f.m
	if m.EventID == nil {
		return // a heartbeat, and anything new
	}
	j := s.jobs[*m.EventID]
	if j == nil {
		s.keepEarly(*m.EventID, m)
		return
	}
	j.seen = r.seq
	s.deliver(j, m)
	if !r.api.closeStream && len(s.jobs) == 0 && !s.joinFlying() {
		s.stopReader() // old protocols: nothing pending, nothing will close it
	}
}

// streamEnded handles the end of the session's stream. A stream that broke
// fails every job. One the server ended properly is reopened for the jobs
// left; but a job that was known before this stream opened and got no
// word on it has been forgotten by the server: it fails.
func (s *Session) streamEnded(r *reader, err error) {
	if err != nil && !r.stopped {
		s.failAll(err)
		return
	}
	for id, j := range s.jobs {
		if j.reg < r.seq && j.seen != r.seq {
			delete(s.jobs, id)
			if !j.abandoned {
				j.box.fail(errDropped)
			}
		}
	}
	if !s.close.begun && (len(s.jobs) > 0 || s.joinFlying()) {
		s.ensureReader(r.api)
	}
}

// read reads one stream to its end and hands each message to the owner.
func (s *Session) read(ctx context.Context, r *reader, api *API, header http.Header) {
	err := s.readStream(ctx, r, api, header)
	if errors.Is(err, errStreamDone) {
		err = nil
	}
	s.msgs <- fromReader{r: r, end: true, err: err}
}

func (s *Session) readStream(ctx context.Context, r *reader, api *API, header http.Header) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := s.c.cfg.StreamIdleTimeout
	var silent atomic.Bool
	timer := time.AfterFunc(idle, func() { silent.Store(true); cancel() })
	defer timer.Stop()

	if header == nil {
		header = http.Header{}
	}
	header.Set("Accept", "text/event-stream")
	u := api.BaseURL + api.Prefix + "/queue/data?session_hash=" + s.hash
	req, err := s.c.request(ctx, http.MethodGet, u, nil, header)
	if err != nil {
		return err
	}
	resp, err := s.c.send(s.http, req, "stream")
	if err != nil {
		return s.streamError(ctx, err, &silent)
	}
	defer resp.Body.Close()
	body := &idleReader{r: resp.Body, t: timer, d: idle}
	err = parseSSE(body, s.c.cfg.MaxEventBytes, func(data []byte) error {
		m, err := decodeMessage(data)
		if err != nil {
			return &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: err}
		}
		m.read = body.last
		switch {
		case m.EventID != nil:
			if m.Msg == "process_generating" || m.Msg == "process_streaming" {
				m.step = m.stepDuration() // here, not on the owner: it reads the whole output
			}
		case m.Msg == "close_stream":
			return errStreamDone
		case m.Msg == "unexpected_error":
			e := streamFailure(m)
			redact(e, s.c.cfg.HFToken, header.Get("X-Ip-Token"))
			return e
		}
		select {
		case s.msgs <- fromReader{r: r, m: m}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err == nil {
		err = &Error{Code: CodeUnavailable, Message: msgStreamBroke, Err: errors.New("stream: the upstream ended the stream with jobs unfinished")}
	}
	if errors.Is(err, errStreamDone) {
		return err
	}
	return s.streamError(ctx, err, &silent)
}

func (s *Session) streamError(ctx context.Context, err error, silent *atomic.Bool) error {
	switch {
	case silent.Load():
		return &Error{Code: CodeUnavailable, Message: msgStreamSilent}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: CodeUnavailable, Message: msgStreamBroke, Err: err}
}

func streamFailure(m *message) *Error {
	if m.SessionNotFound {
		return &Error{Code: CodeUnavailable, Message: msgSessionLost, Err: ErrSessionLost}
	}
	// The Space's own words ("Server stopped unexpectedly."), if it said any.
	if msg := cleanText(str(m.Message)); msg != "" {
		return &Error{Code: CodeUnavailable, Message: truncate(msg, maxBodyMessage), Err: errors.New("stream: unexpected_error")}
	}
	return &Error{Code: CodeUnavailable, Message: msgStreamBroke, Err: errors.New("stream: unexpected_error without a message")}
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
