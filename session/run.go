package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// maxBad is how many bad messages in a row end a session (a flood).
const maxBad = 16

// Session is one browser session. Make it with New and call Run once.
type Session struct {
	// Static after New.
	cfg  Config
	conn Conn
	up   Upstream

	// Owned by Run.
	visitor Visitor
	jobs    map[string]*job
	nJobs   int // jobs submitted in all
	// lastJoin is closed when the last submitted job has joined the
	// upstream queue (or given up): the next job joins after it.
	lastJoin chan struct{}
	bad      int // bad messages in a row

	// Channels from the helpers to Run.
	in    chan fromBrowser
	items chan item
	wake  chan *job
	done  chan struct{} // closed when Run stops listening

	fileSeq atomic.Int64 // file ids, shared by the jobs' Stream callbacks
	helpers sync.WaitGroup
	pongs   chan error // the answer to the ping in flight
	pinging bool       // owned by Run
	// writeTimer bounds the write in progress; owned by Run.
	writeTimer *time.Timer
	ticks      int // owned by Run; starts at a random phase
	jobsGroup  sync.WaitGroup
}

// New returns a session for conn. cfg.API must be set.
func New(cfg Config, conn Conn, up Upstream) *Session {
	cfg.setDefaults()
	return &Session{
		cfg: cfg, conn: conn, up: up,
		jobs:  make(map[string]*job),
		in:    make(chan fromBrowser),
		items: make(chan item),
		wake:  make(chan *job, cfg.MaxJobs),
		done:  make(chan struct{}),
		pongs: make(chan error, 1),
		ticks: rand.IntN(Phases),
	}
}

func (c *Config) setDefaults() {
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	if c.TokenHeader == "" {
		c.TokenHeader = "X-IP-Token"
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 2
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 65536
	}
	if c.MaxFileBytes <= 0 {
		c.MaxFileBytes = 20 << 20
	}
	if c.MaxJobBytes <= 0 {
		c.MaxJobBytes = 64 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// open opens the visitor's upstream session, at the first job: an idle
// session costs the upstream nothing.
func (s *Session) open() Visitor {
	if s.visitor == nil {
		h := http.Header{}
		if s.cfg.Token != "" {
			h.Set(s.cfg.TokenHeader, s.cfg.Token)
		}
		s.visitor = s.up.Open(h)
	}
	return s.visitor
}

// Jobs returns how many jobs the session accepted for submission. Call it
// after Run has returned.
func (s *Session) Jobs() int { return s.nJobs }

// Run serves the session until the browser leaves, the session fails, or
// ctx is done (the relay shutting down: close code 1001). It closes the
// socket with the code for its reason, cancels every unfinished job
// upstream, waits for all its goroutines, and returns the reason: one of
// the Err values of this package, or another error for an internal
// failure (close code 1011).
func (s *Session) Run(ctx context.Context) error {
	// The jobs' and pings' context: not ctx, whose end (shutdown) must let
	// Run close the socket with 1001 before its helpers stop.
	hctx, stopHelpers := context.WithCancel(context.WithoutCancel(ctx))
	s.helpers.Go(s.readLoop) // ends when the socket closes, never by ctx
	if s.cfg.Pings == nil && s.cfg.PingInterval > 0 {
		s.cfg.Pings = NewTicker(s.cfg.PingInterval)
		defer s.cfg.Pings.Stop()
	}

	err := s.loop(ctx, hctx)

	close(s.done)
	upstreamClosed := make(chan struct{})
	go func() { // cancels the jobs upstream, queued ones first
		if s.visitor != nil {
			s.visitor.Close()
		}
		close(upstreamClosed)
	}()
	s.close(err)
	<-upstreamClosed // its jobs' streams have ended: nothing is cancelled out of order
	stopHelpers()
	s.helpers.Wait()
	s.jobsGroup.Wait()
	return err
}

// close closes the socket with the code for err.
func (s *Session) close(err error) {
	code, reason := CloseCode(err), ""
	switch {
	case errors.Is(err, ErrShutdown):
		reason = "relay shutting down"
	case errors.Is(err, ErrSlowConsumer):
		reason = "slow consumer"
	case errors.Is(err, ErrProtocol):
		reason = "too many bad messages"
	case errors.Is(err, ErrPingTimeout):
		reason = "ping timeout"
	case code == websocket.StatusInternalError:
		reason = "internal error"
	}
	_ = s.conn.Close(code, reason)
}

// loop is the owner's loop: it returns the reason the session ends.
func (s *Session) loop(ctx, hctx context.Context) error {
	if err := s.sendHello(); err != nil { // (not here: its bytes would live on in this frame)
		return err
	}
	tick := s.cfg.Pings.C()
	for {
		var err error
		select {
		case <-ctx.Done():
			return ErrShutdown
		case <-tick:
			tick = s.cfg.Pings.C()
			if s.ticks++; s.ticks%Phases == 0 {
				s.ping(hctx)
			}
		case err = <-s.pongs:
			s.pinging = false
		case m := <-s.in:
			err = s.handle(hctx, m)
		case it := <-s.items:
			err = s.relay(it)
		case j := <-s.wake:
			j.signalled.Store(false)
			err = s.flushSlots(j)
		}
		if err != nil {
			return err
		}
	}
}

func (s *Session) sendHello() error {
	hello, err := s.hello()
	if err != nil {
		return fmt.Errorf("session: hello: %w", err)
	}
	return s.write(websocket.MessageText, hello)
}

// handle acts on one browser message.
func (s *Session) handle(ctx context.Context, m fromBrowser) error {
	if m.err != nil {
		return m.err
	}
	if m.m == nil {
		return s.refuse(&errorMsg{Code: "bad_request", Message: m.bad})
	}
	switch m.m.Type {
	case "submit":
		return s.submit(ctx, m.m)
	case "cancel":
		return s.cancel(m.m)
	case "ping":
		s.bad = 0
		return s.write(websocket.MessageText, []byte(`{"type":"pong"}`))
	}
	return s.refuse(&errorMsg{Code: "bad_request", Message: fmt.Sprintf("unknown message type %q", m.m.Type)})
}

// refuse answers a bad message; a flood of them ends the session.
func (s *Session) refuse(e *errorMsg) error {
	s.bad++
	if s.bad > maxBad {
		return ErrProtocol
	}
	return s.sendError(e)
}

func (s *Session) sendError(e *errorMsg) error {
	e.Type = "error"
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("session: encode error: %w", err)
	}
	return s.write(websocket.MessageText, b)
}

// write writes one message within the write timeout. The timeout is one
// timer of the session's own, reset for each write, which closes the
// socket if it fires (as the WebSocket library does when a write's context
// ends, without a context and a timer per message).
func (s *Session) write(typ websocket.MessageType, p []byte) error {
	if s.writeTimer == nil {
		s.writeTimer = time.AfterFunc(s.cfg.WriteTimeout, func() { _ = s.conn.CloseNow() })
	} else {
		s.writeTimer.Reset(s.cfg.WriteTimeout)
	}
	err := s.conn.Write(context.Background(), typ, p)
	if !s.writeTimer.Stop() {
		return ErrSlowConsumer
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrClientGone, err)
	}
	if s.cfg.Hooks.Sent != nil {
		kind := "text"
		if typ == websocket.MessageBinary {
			kind = "file"
		}
		s.cfg.Hooks.Sent(kind, len(p))
	}
	return nil
}

// readLoop hands the browser's messages to Run until the socket closes.
func (s *Session) readLoop() {
	for {
		typ, b, err := s.conn.Read(context.Background())
		m := fromBrowser{err: readError(err)}
		if err == nil {
			m = decodeInbound(typ, b)
		}
		select {
		case s.in <- m:
		case <-s.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func readError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, websocket.ErrMessageTooBig):
		return ErrTooBig
	}
	return fmt.Errorf("%w: %v", ErrClientGone, err)
}

// ping pings the browser in the background, unless a ping is in flight:
// its answer comes to Run on pongs. No answer within the interval ends
// the session.
func (s *Session) ping(ctx context.Context) {
	if s.pinging {
		return
	}
	s.pinging = true
	s.helpers.Go(func() {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.Pings.Interval())
		defer cancel()
		err := s.conn.Ping(pctx)
		switch {
		case err == nil || ctx.Err() != nil:
			err = nil
		case errors.Is(err, context.DeadlineExceeded):
			err = fmt.Errorf("%w: %v", ErrPingTimeout, err)
		default:
			err = fmt.Errorf("%w: %v", ErrClientGone, err)
		}
		s.pongs <- err // buffered: one ping at a time
	})
}
