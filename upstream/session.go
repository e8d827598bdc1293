package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// ErrClosed is returned by Stream for a job of a Session that was closed.
var ErrClosed = errors.New("upstream: session closed")

// joinTimeout bounds a queue join.
const joinTimeout = 30 * time.Second

// maxEarly bounds the messages a Session keeps for event ids it does not
// know yet (a job's first messages can beat the answer to its join).
const maxEarly = 256

// Session is one visitor's upstream Gradio session: one session_hash, the
// visitor's headers, and one queue/data stream shared by all the visitor's
// jobs, opened when a job needs it and closed by the server when none is
// left. Gradio keeps a session's gr.State by its session_hash, so state
// lives exactly as long as the Session.
//
// A Session is safe for concurrent use; run each job in its own goroutine
// with Stream. Close it when the visitor leaves: that cancels what is left.
type Session struct {
	// Static after NewSession.
	c    *Client
	hash string

	mu      sync.Mutex
	header  http.Header     // the visitor's headers, sent on every join
	jobs    map[string]*job // by event id: joined, not yet completed
	early   map[string][]*message
	nEarly  int
	joining int                // joins in flight
	reading bool               // a reader goroutine runs
	stop    context.CancelFunc // ends the reader; set while reading
	closed  bool
	bg      sync.WaitGroup // the reader and cancel requests
}

// job is one joined event, as the Session's reader sees it.
type job struct {
	id      string
	fn      int
	failed  chan struct{} // closed, with err set, when the stream failed
	err     error
	backlog []*message // early messages, handled before any other

	// The job's follower (Stream): the reader hands it each message,
	// one at a time, on the reader's goroutine.
	t       *translator
	deliver func(Event) error
	call    sync.Mutex    // held while a message is handled
	over    bool          // guarded by call: the job is over for Stream
	result  error         // guarded by call: Stream's outcome, once over
	ended   chan struct{} // closed when the follower saw the job end

	// Guarded by Session.mu.
	live         bool       // the reader hands messages straight to the follower
	pending      []*message // read before the job went live
	started      bool
	cancelWanted bool
	cancelSent   bool // a cancel of the running job went out
	dequeueSent  bool // a cancel that takes the queued job out went out
	// holdQueued: the upstream cannot take a queued job out of its queue
	// (Gradio before 6.14 answers the cancel but runs the job later all
	// the same), so a queued job is cancelled when it starts.
	holdQueued bool
}

// NewSession starts a visitor's session. header holds the visitor's
// headers (their X-IP-Token); they are sent on every queue join, which is
// the request whose headers the app and ZeroGPU see. NewSession makes no
// request.
func (c *Client) NewSession(header http.Header) *Session {
	return &Session{c: c, hash: uuid.NewString(), header: header.Clone(), jobs: make(map[string]*job)}
}

// Hash returns the session's session_hash.
func (s *Session) Hash() string { return s.hash }

// SetHeader replaces the visitor's headers for the jobs submitted from now
// on (a refreshed X-IP-Token, for instance).
func (s *Session) SetHeader(h http.Header) {
	s.mu.Lock()
	s.header = h.Clone()
	s.mu.Unlock()
}

// Stream submits call and calls fn with each event of the job, in order:
// *Accepted first, then any of *Queued, *Started, *Progress, *Log and
// *Partial, and last *Completed or *Cancelled, after which it returns nil.
//
// A job that fails ends with an *Error from Stream (the app raised, ZeroGPU
// refused, the upstream went away, …). If ctx is done first, Stream asks the
// upstream to cancel the job (without waiting for the answer) and returns
// ctx.Err(). If fn returns an error, the job is cancelled the same way and
// Stream returns that error.
//
// fn is called once at a time and never after Stream returns, but not
// always on Stream's goroutine: to hand each event on without a goroutine
// switch, the session's stream reader calls it as it reads the message.
// While fn runs, no other message of the session is read, so fn should be
// quick; if it blocks, it must return once ctx is done (Close waits for
// it, too).
func (s *Session) Stream(ctx context.Context, call Call, fn func(Event) error) error {
	api, err := s.c.API(ctx)
	if err != nil {
		return err
	}
	ep, err := api.Endpoint(call.Endpoint)
	if err != nil {
		return err
	}
	data, err := ep.payload(call)
	if err != nil {
		return err
	}
	j, err := s.submit(ctx, api, ep, data, fn)
	if err != nil {
		return err
	}
	if err := fn(&Accepted{EventID: j.id}); err != nil {
		s.abandon(j)
		return err
	}
	s.catchUp(j)
	select {
	case <-j.ended:
	case <-j.failed:
	case <-ctx.Done():
	}
	return s.finish(ctx, j)
}

// submit joins the queue and registers the job with the reader.
func (s *Session) submit(ctx context.Context, api *API, ep *Endpoint, data []any, fn func(Event) error) (*job, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.joining++
	header := s.header.Clone()
	s.mu.Unlock()

	// The join runs to its end even if ctx ends: a job the upstream queued
	// must be known, to be cancelled.
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), joinTimeout)
	id, err := s.join(jctx, api, ep, data, header)
	cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.joining--
	if err != nil {
		s.dropEarly()
		return nil, err
	}
	if s.closed { // Close did not know this job: cancel it here
		fn := ep.fnIndex // (Gradio before 6.14: all it can do)
		if api.dequeues {
			fn = noFunction // just queued: taken out, no running sibling touched
		}
		s.mu.Unlock()
		s.c.cancel(s.hash, fn, id)
		s.mu.Lock()
		return nil, ErrClosed
	}
	j := &job{id: id, fn: ep.fnIndex, failed: make(chan struct{}), holdQueued: !api.dequeues,
		t: &translator{api: api, ep: ep}, deliver: fn, ended: make(chan struct{})}
	j.backlog = s.early[id]
	s.nEarly -= len(j.backlog)
	delete(s.early, id)
	s.dropEarly()
	for _, m := range j.backlog {
		switch m.Msg {
		case "process_starts":
			j.started = true
		case "process_completed":
			return j, nil // over before it was known: the reader has nothing more for it
		}
	}
	s.jobs[id] = j
	s.ensureReader(api)
	if ctx.Err() != nil { // given up while joining
		j.cancelWanted = true
		s.flushCancels()
		return nil, ctx.Err()
	}
	return j, nil
}

// dropEarly forgets early messages once no join is in flight: nobody can
// claim them any more. Called with mu held.
func (s *Session) dropEarly() {
	if s.joining == 0 && s.nEarly > 0 {
		s.early, s.nEarly = nil, 0
	}
}

func (s *Session) join(ctx context.Context, api *API, ep *Endpoint, data []any, header http.Header) (string, error) {
	body := map[string]any{
		"data": data, "fn_index": ep.fnIndex, "session_hash": s.hash,
		"event_data": nil, "trigger_id": nil,
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("X-Gradio-User", "api")
	var r struct {
		EventID string `json:"event_id"`
	}
	if err := s.c.postJSON(ctx, api.BaseURL+api.Prefix+"/queue/join", "join", body, header, &r); err != nil {
		return "", err
	}
	if r.EventID == "" {
		return "", &Error{Code: CodeUnavailable, Message: "join: the upstream gave no event id"}
	}
	return r.EventID, nil
}

// catchUp handles the job's early messages and what the reader kept for
// it since, then lets the reader hand it messages directly.
func (s *Session) catchUp(j *job) {
	j.call.Lock()
	defer j.call.Unlock()
	msgs := j.backlog
	j.backlog = nil
	for {
		for _, m := range msgs {
			s.handle(j, m)
		}
		s.mu.Lock()
		msgs, j.pending = j.pending, nil
		if len(msgs) == 0 {
			j.live = true
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// handle translates one message of the job and hands the event to the
// follower. Called with j.call held.
func (s *Session) handle(j *job, m *message) {
	if j.over {
		return
	}
	ev, err := j.t.event(m)
	if err != nil && m.Msg != "process_completed" {
		s.abandon(j) // an unreadable update: the job cannot go on
	}
	switch {
	case err != nil:
		j.end(err)
	case ev == nil:
	default:
		if err := j.deliver(ev); err != nil {
			s.abandon(j)
			j.end(err)
		} else if isTerminal(ev) {
			j.end(nil)
		}
	}
}

// end ends the job for Stream. Called with j.call held.
func (j *job) end(err error) {
	j.over, j.result = true, err
	close(j.ended)
}

// finish ends Stream: it waits for a message being handled, and returns
// the job's outcome.
func (s *Session) finish(ctx context.Context, j *job) error {
	j.call.Lock()
	defer j.call.Unlock()
	if j.over {
		return j.result
	}
	j.over = true
	select {
	case <-j.failed: // the reader has handled all it read before it failed
		return j.err
	default:
	}
	s.abandon(j)
	return ctx.Err()
}

func isTerminal(ev Event) bool {
	switch ev.(type) {
	case *Completed, *Cancelled:
		return true
	}
	return false
}

// abandon cancels j upstream if it is unfinished; the reader keeps no
// more of its messages.
func (s *Session) abandon(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[j.id] == j {
		j.cancelWanted = true
		s.flushCancels()
	}
}

// flushCancels sends the cancels that are safe to send. Gradio's /cancel
// first cancels every running job of the given function in the session,
// and only then takes the given event out of the queue. So:
//   - a queued job is taken out with a function index no job has
//     (noFunction): that touches no running job, and gives the next
//     queued one no chance to start (Gradio 6.14 and later);
//   - a running job is cancelled with its own function index, once no
//     sibling of that function that is still wanted is running: the
//     cancel waits for the sibling (with one job at a time, the job cannot
//     start meanwhile);
//   - on Gradio before 6.14, which cannot take a job out of its queue, a
//     queued job is cancelled when it starts.
//
// Called with mu held.
func (s *Session) flushCancels() {
	if s.closed {
		return
	}
	for _, j := range s.jobs {
		if !j.cancelWanted || j.cancelSent {
			continue
		}
		fn := j.fn
		switch {
		case !j.started && !j.holdQueued:
			if j.dequeueSent {
				continue
			}
			j.dequeueSent, fn = true, noFunction
		case !j.started || s.siblingRunning(j):
			continue
		default:
			j.cancelSent = true
		}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.c.cancel(s.hash, fn, j.id)
		}()
	}
}

// noFunction is a function index no Gradio function has: a /cancel with it
// cancels no running job and only takes its event out of the queue.
const noFunction = -1

func (s *Session) siblingRunning(j *job) bool {
	for _, k := range s.jobs {
		if k != j && k.fn == j.fn && k.started && !k.cancelWanted {
			return true
		}
	}
	return false
}

// failAll ends every registered job with err. Called with mu held.
func (s *Session) failAll(err error) {
	for id, j := range s.jobs {
		j.err = err
		close(j.failed)
		delete(s.jobs, id)
	}
	s.early, s.nEarly = nil, 0
}

// Close cancels the session's unfinished jobs upstream, closes its stream
// and waits (at most about twice the Client's CancelTimeout) until every
// request and goroutine of the session has ended. Streams still running
// return ErrClosed. Close is idempotent.
//
// Queued jobs are taken out of the queue first, then the running ones are
// cancelled, then the stream closes: in any other order a queued job can
// start, and spend GPU time, on the way out. (Gradio before 6.14 cannot
// take a job out of its queue: there the stream is closed first, which
// drops the session's queued jobs once Gradio notices.)
func (s *Session) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		var queued, running []*job
		for _, j := range s.jobs {
			switch {
			case j.cancelSent:
			case j.started:
				running = append(running, j)
			case !j.holdQueued:
				queued = append(queued, j)
			}
			j.cancelSent = true
		}
		stop := s.stop
		if len(queued) == 0 && stop != nil {
			stop() // nothing to take out: the stream can go now
		}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.cancelAll(queued, true)
			s.cancelAll(running, false)
			if stop != nil {
				stop()
			}
		}()
		s.failAll(ErrClosed)
	}
	s.mu.Unlock()
	s.bg.Wait()
	return nil
}

// cancelAll cancels jobs upstream, all at once, and waits for the answers:
// with dequeue, it only takes them out of the queue (see flushCancels).
func (s *Session) cancelAll(jobs []*job, dequeue bool) {
	var wg sync.WaitGroup
	for _, j := range jobs {
		fn := j.fn
		if dequeue {
			fn = noFunction
		}
		wg.Go(func() { s.c.cancel(s.hash, fn, j.id) })
	}
	wg.Wait()
}

// cancel asks the upstream to cancel one job, bounded in time. The answer
// does not matter: the job's completion, if any, comes on the stream.
func (c *Client) cancel(hash string, fn int, eventID string) {
	c.mu.Lock()
	api := c.api
	c.mu.Unlock()
	if api == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CancelTimeout)
	defer cancel()
	body := map[string]any{"session_hash": hash, "fn_index": fn, "event_id": eventID}
	_ = c.postJSON(ctx, api.BaseURL+api.Prefix+"/cancel", "cancel", body, nil, nil)
}
