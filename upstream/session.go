package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"time"

	"github.com/google/uuid"
)

// ErrClosed is returned by Stream for a job of a Session that was closed.
var ErrClosed = errors.New("upstream: session closed")

// Session is one visitor's upstream Gradio session: one session_hash, the
// visitor's headers and cookies, and one queue/data stream shared by all
// the visitor's jobs, opened when a job needs it and closed by the server
// when none is left. Gradio keeps a session's gr.State by its
// session_hash, so state lives exactly as long as the Session.
//
// One goroutine owns a Session's state (run): its jobs, the messages that
// came before their job was known, its cancels and its stream. Every other
// goroutine reaches it through requests that run was made to take at once
// (ctl), and run never waits on anybody: requests to the upstream (joins,
// cancels, the stream) run in goroutines of their own and report back.
//
// Submit each job, and Follow it on a goroutine of the caller's. Close
// the Session when the visitor leaves: that cancels what is left.
type Session struct {
	// Static after NewSession.
	c    *Client
	hash string
	http *http.Client    // c's transport, with this visitor's own cookie jar
	ctl  chan func()     // work for run
	msgs chan fromReader // the stream readers' messages and ends, for run
	done chan struct{}   // closed when run returns
	// requests is the parent of the session's joins and cancels: Close
	// ends it (cutRequests) at its bound, abandoning what is still out.
	requests    context.Context
	cutRequests context.CancelFunc

	// Owned by run.
	header   http.Header     // the visitor's headers, for requests from now on
	jobs     map[string]*job // by event id: joined and not completed
	joins    []*joinReq      // waiting to join, in the order Stream was called; the first may be in flight
	early    map[string][]*message
	nEarly   int
	reader   *reader                    // the open queue/data stream, or nil
	readers  int                        // streams opened so far
	fnCancel map[int]int                // running-job cancels in flight, by function index
	cancels  int                        // cancels in flight
	busy     int                        // goroutines of the session that have not reported back, direct calls included
	directs  map[int]context.CancelFunc // direct calls in flight, by a number of their own
	nDirect  int                        // direct calls made so far
	close    closeState
	watch    *time.Timer // the next check for a stuck stream, or nil
	watchAt  time.Time
}

// job is one joined event of a Session.
type job struct {
	// Static after the join.
	id         string
	fn         int
	api        *API   // the API it joined with: its stream rules, where its cancel goes
	token      string // the visitor's token its join carried, kept out of its errors
	box        *mailbox
	reg        int  // the first stream its messages can come on
	holdQueued bool // the upstream cannot take it out of its queue (Gradio < 6.14)

	// Owned by run.
	started      bool
	abandoned    bool // its Stream has returned: nobody takes its mailbox
	cancelWanted bool
	cancelSent   bool      // a cancel of the running job went out
	dequeueSent  bool      // a cancel that takes the queued job out went out
	cancelled    time.Time // when a cancel of it was answered, while its completion is awaited
	seen         int       // the last stream that brought a message of it
	ran          float64   // the seconds its steps ran, as the upstream measured them (a generator's)
}

// NewSession starts a visitor's session. header holds the visitor's
// headers (their X-IP-Token); they are sent on every request of the
// session: the queue join is the one whose headers the app and ZeroGPU
// see. NewSession makes no request. Close the Session when done: it owns a
// goroutine until then.
func (c *Client) NewSession(header http.Header) *Session {
	jar, _ := cookiejar.New(nil) // never fails without options
	hc := *c.http
	hc.Jar = jar // the visitor's cookies are the visitor's alone
	s := &Session{
		c: c, hash: uuid.NewString(), http: &hc,
		ctl:    make(chan func()),
		msgs:   make(chan fromReader),
		done:   make(chan struct{}),
		header: header.Clone(),
		jobs:   make(map[string]*job),
	}
	s.requests, s.cutRequests = context.WithCancel(context.Background())
	go s.run()
	return s
}

// Hash returns the session's session_hash.
func (s *Session) Hash() string { return s.hash }

// SetHeader replaces the visitor's headers (a refreshed X-IP-Token, for
// instance) for the requests the session makes from its return on; a
// request already on its way keeps the headers it went with.
func (s *Session) SetHeader(h http.Header) {
	h = h.Clone()
	s.do(func() { s.header = h })
}

// do runs f on the session's owner and waits until it has. It reports
// false, without running f, if the owner has ended (after Close).
func (s *Session) do(f func()) bool {
	ran := make(chan struct{})
	select {
	case s.ctl <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-s.done:
		return false
	}
}

// snapshot returns the visitor's current headers, for a request.
func (s *Session) snapshot() (http.Header, bool) {
	var h http.Header
	ok := s.do(func() { h = s.header.Clone() })
	return h, ok
}

// Stream submits call and follows the job to its end: Submit, then
// Follow.
func (s *Session) Stream(ctx context.Context, call Call, fn func(Event) error) error {
	j, err := s.Submit(ctx, call)
	if err != nil {
		return err
	}
	return j.Follow(fn)
}

// A Job is a call submitted to a Session. Follow it to its end.
type Job struct {
	// Static after Submit; Follow reads them on the caller's goroutine.
	// (What run keeps of the job is in req, and in the job it joins.)
	s    *Session
	ctx  context.Context
	api  *API
	ep   *Endpoint
	data []any
	req  *joinReq // nil for a direct call
}

// Submit checks call against the endpoint and queues it to join the
// upstream queue after the calls submitted before it; it returns at once.
// ctx governs the job: once it is done, the job is cancelled upstream.
// The error is the call's own (an unknown endpoint, inputs the endpoint
// does not take), or ErrClosed. Follow the job, always: the session's
// next job joins once this one's Accepted has been handed on.
func (s *Session) Submit(ctx context.Context, call Call) (*Job, error) {
	api, err := s.c.API(ctx)
	if err != nil {
		return nil, err
	}
	ep, err := api.Endpoint(call.Endpoint)
	if err != nil {
		return nil, err
	}
	data, err := ep.payload(call)
	if err != nil {
		return nil, err
	}
	j := &Job{s: s, ctx: ctx, api: api, ep: ep, data: data}
	if ep.direct() {
		return j, nil
	}
	j.req = &joinReq{api: api, ep: ep, data: data, ctx: ctx, reply: make(chan joinReply, 1)}
	if !s.do(func() { s.addJoin(j.req) }) {
		return nil, ErrClosed
	}
	return j, nil
}

// Follow calls fn with each event of the job, in order: *Accepted first,
// then any of *Queued, *Started, *Progress, *Log and *Partial, and last
// *Completed or *Cancelled, after which it returns nil. fn runs on
// Follow's own goroutine, and never after Follow returns.
//
// Otherwise Follow returns an error, and no terminal event reached fn:
// the error is the job's end, for the caller to report. A job that fails
// ends with an *Error (the app raised, ZeroGPU refused, the upstream went
// away, …); a session closed under it with ErrClosed. If the job's
// context is done first, Follow asks the upstream to cancel the job
// (without waiting for the answer) and returns the context's error. If fn
// returns an error, the job is cancelled the same way and Follow returns
// that error.
//
// While fn runs, the job's next messages wait in a mailbox of the job's,
// where the newest *Queued, *Progress and *Partial replaces an older one
// not yet handed over; nothing else is dropped, and other jobs of the
// session go on meanwhile. A generator's last output comes once, as the
// *Completed (see partialHold).
func (j *Job) Follow(fn func(Event) error) error {
	err := j.follow(fn)
	if errors.Is(err, ErrClosed) && j.ctx.Err() != nil {
		return j.ctx.Err() // both came: the job's own end is the reason
	}
	return err
}

func (j *Job) follow(fn func(Event) error) error {
	s := j.s
	if j.req == nil {
		return s.direct(j.ctx, j.api, j.ep, j.data, fn)
	}
	job, next, err := s.awaitJoin(j.ctx, j.req)
	if err != nil {
		return err
	}
	err = fn(&Accepted{EventID: job.id})
	next() // the next job may join
	if err != nil {
		s.giveUp(job)
		return err
	}
	return s.follow(j.ctx, j.api, j.ep, job, fn)
}

// partialHold is how long a partial output may wait before it is handed
// on: if the job's completion comes meanwhile, the partial is dropped, so
// that a generator's last output (which the completion carries again)
// reaches fn once, as the *Completed.
const partialHold = 50 * time.Millisecond

// follow hands the job's messages to fn until the job ends.
func (s *Session) follow(ctx context.Context, api *API, ep *Endpoint, j *job, fn func(Event) error) error {
	f := follower{t: &translator{api: api, ep: ep, secrets: []string{j.token, s.c.cfg.HFToken}}, fn: fn}
	defer f.stopHold()
	var msgs []*message
	for {
		var err error
		if msgs, err = j.box.take(ctx, msgs, f.holdC()); err == nil && msgs == nil {
			err = f.release() // held long enough
		}
		for i := 0; err == nil && i < len(msgs); i++ {
			err = f.handle(msgs[i])
		}
		if err == nil {
			continue
		}
		if err == errJobOver {
			return nil
		}
		s.giveUp(j) // (nothing to cancel if the job has completed upstream)
		return err
	}
}

// errJobOver ends follow: the job's terminal event was handed on.
var errJobOver = errors.New("job over")

// follower is one Stream's state while it hands events to fn.
type follower struct {
	// Owned by the goroutine that calls Follow (the caller's): made,
	// used and dropped by Session.follow, which nothing else reaches.
	t    *translator
	fn   func(Event) error
	held *Partial    // a partial output waiting (see partialHold)
	hold *time.Timer // fires when held has waited long enough
}

func (f *follower) handle(m *message) error {
	ev, err := f.t.event(m)
	if err != nil || ev == nil {
		return err
	}
	if p, ok := ev.(*Partial); ok {
		if f.held == nil {
			f.hold = time.NewTimer(partialHold)
		}
		f.held = p // a newer one replaces it: it is superseded
		return nil
	}
	if _, ok := ev.(*Completed); ok {
		f.stopHold() // the completion carries the held values again
	} else if err := f.release(); err != nil {
		return err
	}
	if err := f.fn(ev); err != nil {
		return err
	}
	if isTerminal(ev) {
		return errJobOver
	}
	return nil
}

// release hands on the held partial, if any.
func (f *follower) release() error {
	p := f.held
	f.stopHold()
	if p == nil {
		return nil
	}
	return f.fn(p)
}

func (f *follower) stopHold() {
	if f.hold != nil {
		f.hold.Stop()
	}
	f.held, f.hold = nil, nil
}

func (f *follower) holdC() <-chan time.Time {
	if f.hold == nil {
		return nil
	}
	return f.hold.C
}

func isTerminal(ev Event) bool {
	switch ev.(type) {
	case *Completed, *Cancelled:
		return true
	}
	return false
}

// giveUp tells the owner that nobody follows j any more: it is cancelled
// upstream unless it has completed.
func (s *Session) giveUp(j *job) {
	s.do(func() { s.abandon(j) })
}

// Close cancels the session's unfinished jobs upstream, closes its stream
// and returns once the session's own requests (joins, cancels, direct
// calls, the stream) and goroutines have ended, within CloseBound: a join
// in flight is waited for (for the first third of it) so that its job is
// cancelled too, and what is still out at the bound is abandoned (its
// request ended, its goroutine gone). Downloads and uploads are not
// tracked: Close neither waits for nor ends them (their contexts do), and
// after it new ones return ErrClosed. Streams still running return
// ErrClosed at once. Close is idempotent.
//
// Queued jobs are taken out of the queue first (waited for until two
// thirds of the bound), then the running ones are cancelled, then the
// stream closes: in any other order a queued job can start, and spend GPU
// time, on the way out. (Gradio before 6.14 cannot take a job out of its
// queue: there the stream is closed first, which drops the session's
// queued jobs once Gradio notices.)
func (s *Session) Close() error {
	s.do(s.beginClose)
	<-s.done
	return nil
}
