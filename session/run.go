package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// maxBad is how many bad messages in a row end a session (a flood).
const maxBad = 16

// How long closing the socket may wait for its close frame to go out and
// the browser's reply; then the connection is cut. A slow consumer, which
// has already kept a write waiting for the whole write timeout, gets less.
const (
	closeBound     = time.Second
	slowCloseBound = 500 * time.Millisecond
)

// Session is one browser session. Make it with New and call Run once.
type Session struct {
	// Static after New.
	cfg  Config
	conn Conn
	up   Upstream

	// Owned by Run.
	visitor  Visitor
	jobs     map[string]*job    // unfinished jobs, by id
	uploads  map[string]*upload // by id, unfinished and finished
	current  *upload            // the upload the next binary frames are for
	files    fileRefs           // the files sent, for {"file":…} inputs
	token    tokenState
	nJobs    int   // jobs submitted in all
	uploaded int64 // bytes of the session's uploads, in all
	discard  int64 // bytes of frames to let pass for an upload refused at its announcement
	// held is a frame of the current upload that came past its window: it
	// waits for the upstream to take a chunk, and Run reads no more of
	// the browser's messages meanwhile (see hold). holdTimer ends a hold
	// the upstream does not move (see checkHold); holds counts them, for
	// ping.
	held      []byte
	holdSent  int64     // the upload's sent when the hold began or last moved
	holdMoved time.Time // and when
	holdTimer *time.Timer
	holds     int64
	bad       int // bad messages in a row
	pinging   bool
	ticks     int // starts at a random phase
	// writeTimer bounds the write in progress: it cuts the connection if
	// the write takes too long (see write).
	writeTimer *time.Timer

	// Channels to Run.
	in     chan fromBrowser
	work   chan func() error // from the helpers: a job's message or end, an upload's end, a pong, a token
	upWake chan struct{}     // capacity 1: an upload sent bytes upstream; made at the first upload
	done   chan struct{}     // closed when Run stops listening
	cut    chan struct{}     // closed once a slow consumer's connection is closed

	// Shared, safe for any goroutine.
	fileSeq atomic.Int64 // file ids, shared by the jobs' goroutines

	// Run starts helpers in these and, tearing down, waits for them.
	helpers   sync.WaitGroup // the read loop and pings
	jobsGroup sync.WaitGroup // jobs and uploads
}

// New returns a session for conn. cfg.API must be set.
func New(cfg Config, conn Conn, up Upstream) *Session {
	cfg.setDefaults()
	return &Session{
		cfg: cfg, conn: conn, up: up,
		in:    make(chan fromBrowser),
		work:  make(chan func() error),
		done:  make(chan struct{}),
		cut:   make(chan struct{}),
		ticks: rand.IntN(Phases),
		token: newTokenState(cfg.Token),
	}
}

// Defaults of Config's limits: the one place they are written (the
// relay's flags take theirs from here).
const (
	DefaultMaxJobs               = 2
	DefaultMaxMessageBytes       = 64 << 10
	DefaultMaxFileBytes          = 20 << 20
	DefaultMaxJobBytes           = 64 << 20
	DefaultMaxUploadBytes        = 50 << 20
	DefaultMaxSessionUploadBytes = 200 << 20
	DefaultUploadChunkBytes      = 256 << 10
	DefaultWriteTimeout          = 10 * time.Second
	DefaultPingInterval          = 30 * time.Second
	DefaultTokenRefreshMargin    = 30 * time.Second
)

func (c *Config) setDefaults() {
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxFileBytes <= 0 {
		c.MaxFileBytes = DefaultMaxFileBytes
	}
	if c.MaxJobBytes <= 0 {
		c.MaxJobBytes = DefaultMaxJobBytes
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = DefaultMaxUploadBytes
	}
	// The Space's own limit (its max_file_size), when lower: hello says
	// it, and a file over it is refused before any byte goes upstream
	// rather than after, by the Space.
	if c.API != nil && c.API.MaxFileSize > 0 {
		c.MaxUploadBytes = min(c.MaxUploadBytes, c.API.MaxFileSize)
	}
	if c.MaxSessionUploadBytes <= 0 {
		c.MaxSessionUploadBytes = DefaultMaxSessionUploadBytes
	}
	if c.UploadChunkBytes <= 0 {
		c.UploadChunkBytes = DefaultUploadChunkBytes
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.TokenRefreshMargin <= 0 {
		c.TokenRefreshMargin = DefaultTokenRefreshMargin
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// open opens the visitor's upstream session, at the first job or upload:
// an idle session costs the upstream nothing.
func (s *Session) open() Visitor {
	if s.visitor == nil {
		s.visitor = s.up.Open(s.token.header())
	}
	return s.visitor
}

// Jobs returns how many jobs the session accepted for submission. Call it
// after Run has returned.
func (s *Session) Jobs() int { return s.nJobs }

// Run serves the session until the browser leaves, the session fails, or
// ctx is done: the relay shutting down (close code 1001), or, when ctx's
// cause is ErrUpstreamChanged, the Space redeployed (1012). It closes the
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
	s.teardown(err, stopHelpers)
	return err
}

// teardown ends the session once loop has returned err: the socket closed
// with err's code, the jobs cancelled upstream, every helper waited for.
// (A function of its own, as loop is: what they need lives in their own
// frames, not in Run's, which an idle session keeps on its stack.)
func (s *Session) teardown(err error, stopHelpers context.CancelFunc) {
	close(s.done)
	s.token.stop()
	if s.holdTimer != nil {
		s.holdTimer.Stop()
	}
	s.cfg.Budget.release(int64(len(s.held))) // a frame still held (nothing if none)
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
	for _, u := range s.uploads { // their goroutines are over: what they held goes back
		s.drain(u)
	}
	s.endAll()
}

// close closes the socket with the code for err, within closeBound.
func (s *Session) close(err error) {
	if errors.Is(err, ErrSlowConsumer) {
		<-s.cut // the write timer closes it (see write)
		return
	}
	code, reason := CloseCode(err), ""
	switch {
	case errors.Is(err, ErrShutdown):
		reason = "relay shutting down"
	case errors.Is(err, ErrUpstreamChanged):
		reason = "the Space was updated"
	case errors.Is(err, ErrProtocol):
		reason = "too many bad messages"
	case errors.Is(err, ErrPingTimeout):
		reason = "ping timeout"
	case code == websocket.StatusInternalError:
		reason = "internal error"
	}
	CloseWithin(s.conn, code, reason, closeBound)
}

// CloseWithin closes c with code and reason, and cuts it if the close
// frame cannot go out, or the peer does not answer it, within bound: the
// WebSocket library alone would wait up to 5 s for each.
func CloseWithin(c interface {
	Close(websocket.StatusCode, string) error
	CloseNow() error
}, code websocket.StatusCode, reason string, bound time.Duration) {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = c.Close(code, reason)
	}()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-closed:
		return
	case <-t.C:
	}
	_ = c.CloseNow() // this unblocks Close
	<-closed
}

// loop is the owner's loop: it returns the reason the session ends.
func (s *Session) loop(ctx, hctx context.Context) error {
	if err := s.sendHello(); err != nil {
		return err
	}
	tick := s.cfg.Pings.C()
	for {
		in := s.in
		if s.held != nil {
			in = nil // the browser waits for its upload's window
		}
		var err error
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrUpstreamChanged) {
				return ErrUpstreamChanged
			}
			return ErrShutdown
		case <-tick:
			tick = s.cfg.Pings.C()
			if s.ticks++; s.ticks%Phases == 0 {
				s.ping(hctx)
			}
		case m := <-in:
			err = s.handle(hctx, m)
		case f := <-s.work:
			err = f()
		case <-s.upWake:
			err = s.uploadProgress()
		}
		if err == nil && s.held != nil {
			err = s.resume()
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
	err = s.write(websocket.MessageText, hello)
	putHello(hello)
	if err != nil {
		return err
	}
	if s.cfg.Refresh != nil {
		s.cfg.Refresh.Key = "" // the page has it; the relay keeps only its hash
	}
	s.armTokenTimer()
	return nil
}

// handle acts on one browser message.
func (s *Session) handle(ctx context.Context, m fromBrowser) error {
	switch {
	case m.err != nil:
		return m.err
	case m.binary != nil:
		return s.chunk(m.binary)
	case int64(m.size) > s.cfg.MaxMessageBytes:
		return ErrTooBig
	case m.m == nil:
		return s.refuse(&errorMsg{Code: "bad_request", Message: m.bad})
	}
	switch m.m.Type {
	case "submit":
		return s.submit(ctx, m.m)
	case "cancel":
		return s.cancel(m.m)
	case "upload":
		return s.startUpload(ctx, m.m)
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
	return s.writeJSON(e)
}

func (s *Session) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("session: encode: %w", err)
	}
	return s.write(websocket.MessageText, b)
}

// write writes one message within the write timeout. The timeout is one
// timer of the session's own, reset for each write. If it fires, the
// browser is a slow consumer: the timer closes the socket with 1008 if the
// close frame can still go out within closeBound, and cuts it otherwise;
// that also ends the write.
func (s *Session) write(typ websocket.MessageType, p []byte) error {
	if s.writeTimer == nil {
		s.writeTimer = time.AfterFunc(s.cfg.WriteTimeout, func() {
			CloseWithin(s.conn, websocket.StatusPolicyViolation, "slow consumer", slowCloseBound)
			close(s.cut)
		})
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
		typ, b, err := s.read()
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

// read reads the browser's next message: a binary frame into a buffer of
// bufs, which its upload gives back.
func (s *Session) read() (websocket.MessageType, []byte, error) {
	typ, r, err := s.conn.Reader(context.Background())
	if err != nil {
		return typ, nil, err
	}
	if typ == websocket.MessageBinary {
		b, err := readFrame(r, int(s.cfg.UploadChunkBytes))
		return typ, b, err
	}
	b, err := io.ReadAll(r)
	return typ, b, err
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
// its answer comes to Run as work. No answer within the interval ends the
// session, unless Run held an upload's frame meanwhile and so read no
// pong.
func (s *Session) ping(ctx context.Context) {
	if s.pinging {
		return
	}
	s.pinging = true
	holds := s.holds
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
		select {
		case s.work <- func() error {
			s.pinging = false
			if errors.Is(err, ErrPingTimeout) && (s.held != nil || s.holds != holds) {
				// Run stopped reading for an upload's frames (see
				// chunk): the pong waits behind them, unread. A hold
				// the upstream does not move ends by itself
				// (checkHold), so this forgives no dead browser.
				return nil
			}
			return err
		}:
		case <-s.done:
		}
	})
}
