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
	msgs    chan *message // reader to Stream
	gone    chan struct{} // closed when Stream stops listening
	failed  chan struct{} // closed, with err set, when the stream failed
	err     error
	backlog []*message // early messages, read by Stream before msgs

	// Guarded by Session.mu.
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
	j, err := s.submit(ctx, api, ep, data)
	if err != nil {
		return err
	}
	if err := fn(&Accepted{EventID: j.id}); err != nil {
		s.abandon(j)
		return err
	}
	return s.follow(ctx, j, &translator{api: api, ep: ep}, fn)
}

// submit joins the queue and registers the job with the reader.
func (s *Session) submit(ctx context.Context, api *API, ep *Endpoint, data []any) (*job, error) {
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
		s.mu.Unlock()
		s.c.cancel(s.hash, ep.fnIndex, id)
		s.mu.Lock()
		return nil, ErrClosed
	}
	j := &job{id: id, fn: ep.fnIndex, msgs: make(chan *message, 16),
		gone: make(chan struct{}), failed: make(chan struct{}), holdQueued: !api.dequeues}
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
		close(j.gone)
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

// follow relays the job's messages to fn until the job ends.
func (s *Session) follow(ctx context.Context, j *job, t *translator, fn func(Event) error) error {
	handle := func(m *message) (bool, error) {
		ev, err := t.event(m)
		if err != nil && m.Msg != "process_completed" {
			s.abandon(j) // an unreadable update: the job cannot go on
		}
		if err != nil || ev == nil {
			return err != nil, err
		}
		if err := fn(ev); err != nil {
			s.abandon(j)
			return true, err
		}
		return isTerminal(ev), nil
	}
	for _, m := range j.backlog {
		if done, err := handle(m); done {
			return err
		}
	}
	j.backlog = nil
	for {
		select {
		case m := <-j.msgs:
			if done, err := handle(m); done {
				return err
			}
		case <-j.failed:
			for { // what arrived before the failure still counts
				select {
				case m := <-j.msgs:
					if done, err := handle(m); done {
						return err
					}
				default:
					return j.err
				}
			}
		case <-ctx.Done():
			s.abandon(j)
			return ctx.Err()
		}
	}
}

func isTerminal(ev Event) bool {
	switch ev.(type) {
	case *Completed, *Cancelled:
		return true
	}
	return false
}

// abandon stops listening to j and, if it is unfinished, cancels it
// upstream.
func (s *Session) abandon(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(j.gone)
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
