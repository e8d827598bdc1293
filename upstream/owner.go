package upstream

import (
	"context"
	"net/http"
	"slices"
	"time"
)

// Bounds of a session's requests and of the messages it keeps.
const (
	joinTimeout = 30 * time.Second // one queue join
	// maxEarly bounds the messages a Session keeps for event ids it does
	// not know yet (a job's first messages can beat the answer to its
	// join).
	maxEarly = 256
	// staleAfter: a stream that has said nothing for this long has missed
	// a heartbeat (Gradio sends one every 15 s), with 5 s to spare for the
	// network. A job about to join does not wait on it: it is replaced
	// (see Client.staleAfter).
	staleAfter = 20 * time.Second
	// cancelEcho: after the upstream has answered a cancel, the job's
	// completion comes on the stream at once. A stream that brings
	// nothing at all for this long after is stuck, and is replaced.
	cancelEcho = 2 * time.Second
)

// errStalled fails the jobs of a stream that stopped answering.
var errStalled = &Error{Code: CodeUnavailable, Message: "The connection to the Space stalled."}

// errDropped fails a job that the upstream forgot: its stream ended, and
// a new one, without a word of it.
var errDropped = &Error{Code: CodeAppError, Message: "The Space ended this job without a result."}

// A joinReq is a submitted job waiting to join the queue, or joining.
type joinReq struct {
	// Static after Submit.
	api   *API
	ep    *Endpoint
	data  []any
	ctx   context.Context // the job's: only to know whether it is still wanted
	reply chan joinReply  // capacity 1: run sends on it once

	// Owned by run.
	stop     context.CancelFunc // ends its request, once it is out
	job      *job               // once joined
	flying   bool               // its request is out
	joined   bool               // its request was answered
	handedOn bool               // its Stream has handed on Accepted, or given up: the next may go
}

type joinReply struct {
	j   *job
	err error
}

// run is the owner of the session's state: it takes requests, routes the
// stream's messages, and returns once the session is closed and every
// goroutine it started has reported back.
func (s *Session) run() {
	defer close(s.done)
	for !s.finished() {
		select {
		case f := <-s.ctl:
			f()
		case m := <-s.msgs:
			s.fromReader(m)
		case <-s.watchC():
			s.watch = nil
			s.checkStuck()
		case <-s.close.timerC():
			s.closeDue()
		}
	}
	if s.watch != nil {
		s.watch.Stop()
	}
	s.close.stopTimer()
	s.cutRequests() // (they have all ended: this only frees the context)
}

func (s *Session) watchC() <-chan time.Time {
	if s.watch == nil {
		return nil
	}
	return s.watch.C
}

// spawn runs f in a goroutine of the session's; f's report runs on the
// owner.
func (s *Session) spawn(f func() func()) {
	s.busy++
	go func() {
		report := f()
		s.ctl <- func() {
			s.busy--
			report()
		}
	}()
}

// awaitJoin waits for a submitted job's turn and its join's answer. next
// lets the following job join; it must be called once the job's Accepted
// has been handed on.
func (s *Session) awaitJoin(ctx context.Context, req *joinReq) (*job, func(), error) {
	next := func() { s.do(func() { req.handedOn = true; s.popJoin(req) }) }
	select {
	case r := <-req.reply:
		if r.err != nil {
			next()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err() // the reason it was taken out
			}
			return nil, nil, r.err
		}
		return r.j, next, nil
	case <-ctx.Done():
		// A job the upstream queued, now or when its join is answered,
		// is cancelled.
		s.do(func() {
			req.handedOn = true
			if req.job != nil {
				s.abandon(req.job)
			}
			s.popJoin(req)
		})
		return nil, nil, ctx.Err()
	}
}

func (s *Session) addJoin(req *joinReq) {
	if s.close.begun {
		req.reply <- joinReply{err: ErrClosed}
		return
	}
	s.joins = append(s.joins, req)
	s.startJoin()
}

// startJoin sends the first waiting join, unless one is in flight or a
// cancel of its function's running jobs is: that cancel would end it too,
// should it start at once.
func (s *Session) startJoin() {
	if len(s.joins) == 0 {
		return
	}
	req := s.joins[0]
	if req.flying || req.joined || s.fnCancel[req.ep.fnIndex] > 0 {
		return
	}
	if s.stuck(time.Now()) {
		s.replaceStream(errStalled)
	}
	req.flying = true
	header := s.header.Clone()
	token := header.Get("X-Ip-Token")
	// The join runs to its end even if Stream gives up: a job the upstream
	// queued must be known, to be cancelled. Only Close cuts it short
	// (closeJoinWait).
	ctx, stop := context.WithTimeout(s.requests, joinTimeout)
	req.stop = stop
	s.spawn(func() func() {
		id, err := s.postJoin(ctx, req, header)
		stop()
		return func() { s.joinAnswered(req, id, token, err) }
	})
}

func (s *Session) postJoin(ctx context.Context, req *joinReq, header http.Header) (string, error) {
	body := map[string]any{
		"data": req.data, "fn_index": req.ep.fnIndex, "session_hash": s.hash,
		"event_data": nil, "trigger_id": nil, "simple_format": true,
	}
	if header == nil {
		header = http.Header{}
	}
	header.Set("X-Gradio-User", "api")
	var r struct {
		EventID string `json:"event_id"`
	}
	api := req.api
	if err := s.c.postJSON(ctx, s.http, api.BaseURL+api.Prefix+"/queue/join", "join", body, header, &r); err != nil {
		return "", err
	}
	if r.EventID == "" {
		return "", &Error{Code: CodeUnavailable, Message: msgBadAnswer, Err: errNoEventID}
	}
	return r.EventID, nil
}

// joinAnswered registers the joined job, or reports the failed join.
func (s *Session) joinAnswered(req *joinReq, id, token string, err error) {
	req.flying, req.joined = false, true
	switch {
	case err != nil:
		req.reply <- joinReply{err: err}
		s.dropEarly()
	default:
		j := &job{id: id, fn: req.ep.fnIndex, api: req.api, token: token, box: newMailbox(), holdQueued: !req.api.dequeues}
		j.reg = s.readers
		if s.reader == nil {
			j.reg++ // its messages come on the stream opened for it
		}
		req.job = j
		s.register(req.api, j)
		if req.ctx.Err() != nil || s.close.begun { // given up, or closing: take it out
			req.reply <- joinReply{err: ErrClosed}
			s.abandon(j)
		} else {
			req.reply <- joinReply{j: j}
		}
		s.flushCancels() // a running sibling's cancel may have waited for this join
	}
	s.popJoin(req)
	s.advanceClose()
}

// popJoin forgets req once it is answered (or never sent) and its Stream
// is done with it, and lets the next join go.
func (s *Session) popJoin(req *joinReq) {
	if !req.handedOn || req.flying {
		return
	}
	if i := slices.Index(s.joins, req); i >= 0 {
		s.joins = slices.Delete(s.joins, i, i+1)
	}
	s.startJoin()
}

// register makes j known to the stream: its early messages go to its
// mailbox, and a stream is opened if none is.
func (s *Session) register(api *API, j *job) {
	early := s.early[j.id]
	s.nEarly -= len(early)
	delete(s.early, j.id)
	s.jobs[j.id] = j
	if len(early) > 0 {
		j.seen = s.readers // they came on the stream open now, or one before
	}
	for _, m := range early {
		s.deliver(j, m)
	}
	s.dropEarly()
	if s.jobs[j.id] == j {
		s.ensureReader(api)
	}
}

// dropEarly forgets early messages once no join is in flight: nobody can
// claim them any more.
func (s *Session) dropEarly() {
	if s.nEarly > 0 && !s.joinFlying() {
		s.early, s.nEarly = nil, 0
	}
}

func (s *Session) joinFlying() bool {
	return len(s.joins) > 0 && s.joins[0].flying
}

// keepEarly keeps a message for an event id not known yet, if a join is
// in flight (it may be that join's). A completion is kept past the bound:
// without it a job would wait forever.
func (s *Session) keepEarly(id string, m *message) {
	if !s.joinFlying() || s.nEarly >= maxEarly && (m.Msg != "process_completed" || s.nEarly >= 2*maxEarly) {
		return
	}
	if s.early == nil {
		s.early = make(map[string][]*message)
	}
	s.early[id] = append(s.early[id], m)
	s.nEarly++
}

// abandon forgets j's follower and cancels j upstream unless it has
// completed.
func (s *Session) abandon(j *job) {
	j.abandoned = true
	if s.jobs[j.id] == j && !j.cancelWanted {
		j.cancelWanted = true
		s.flushCancels()
	}
}

// deliver takes a message of j: its state, then its mailbox.
func (s *Session) deliver(j *job, m *message) {
	api := j.api
	switch m.Msg {
	case "process_starts":
		j.started = true
		switch {
		case s.close.begun && s.close.step >= stepCancels && !j.cancelSent:
			// It started after Close sent its cancels of running jobs
			// (its dequeue came too late): it is cancelled now, and Close
			// waits for that as for the others.
			j.cancelSent = true
			s.sendCancel(j, j.fn)
		case j.cancelWanted:
			s.flushCancels() // a job held back until it started
		}
	case "process_generating", "process_streaming":
		j.ran += m.step // a dropped partial's too
	case "process_completed":
		m.ran = j.ran
		delete(s.jobs, j.id)
		s.flushCancels()
	}
	if j.abandoned {
		return
	}
	supersedes := ""
	if m.Msg == "process_completed" && m.Success && api.droppable(&message{Msg: "process_generating"}) {
		supersedes = "process_generating"
	}
	if !j.box.put(m, api.droppable(m), supersedes) {
		j.box.fail(errMailboxFull)
		s.abandon(j)
	}
}

// flushCancels sends the cancels that are safe to send. Gradio's /cancel
// first cancels every running job of the given function in the session,
// and only then takes the given event out of the queue. So:
//   - a queued job is taken out with a function index no job has
//     (noFunction): that touches no running job, and gives the next
//     queued one no chance to start (Gradio 6.14 and later);
//   - a running job is cancelled with its own function index once no
//     sibling of that function that is still wanted is running, or may be
//     (its join in flight); and no job of that function joins until the
//     cancel is answered, lest it start and be ended by it;
//   - on Gradio before 6.14, which cannot take a job out of its queue, a
//     queued job is cancelled when it starts.
func (s *Session) flushCancels() {
	if s.close.begun {
		return // Close sends them, in its own order
	}
	for _, j := range s.jobs {
		if !j.cancelWanted || j.cancelSent {
			continue
		}
		switch {
		case !j.started && !j.holdQueued:
			if !j.dequeueSent {
				j.dequeueSent = true
				s.sendCancel(j, noFunction)
			}
		case !j.started || s.siblingRunning(j):
		default:
			j.cancelSent = true
			s.sendCancel(j, j.fn)
		}
	}
}

// noFunction is a function index no Gradio function has: a /cancel with it
// cancels no running job and only takes its event out of the queue.
const noFunction = -1

// siblingRunning reports whether another job of j's function that is
// still wanted runs, or may: it has started, or nothing has come of it
// yet (a job queued behind j hears its estimation at once, one that
// started at once hears process_starts), or its join is in flight.
func (s *Session) siblingRunning(j *job) bool {
	for _, k := range s.jobs {
		if k != j && k.fn == j.fn && !k.cancelWanted && (k.started || k.seen == 0) {
			return true
		}
	}
	return s.joinFlying() && s.joins[0].ep.fnIndex == j.fn
}

// sendCancel posts a cancel of j with fn, in the background; not once
// Close's bound has passed, when it could only fail.
func (s *Session) sendCancel(j *job, fn int) {
	if s.close.cut() {
		return
	}
	if fn != noFunction {
		if s.fnCancel == nil {
			s.fnCancel = make(map[int]int)
		}
		s.fnCancel[fn]++
	}
	header := s.header.Clone()
	s.cancels++
	s.spawn(func() func() {
		err := s.c.cancel(s.requests, s.http, header, j.api, s.hash, fn, j.id)
		return func() { s.cancelAnswered(j, fn, err) }
	})
}

func (s *Session) cancelAnswered(j *job, fn int, err error) {
	s.cancels--
	if fn != noFunction {
		if s.fnCancel[fn]--; s.fnCancel[fn] <= 0 {
			delete(s.fnCancel, fn)
		}
	}
	if err == nil && s.jobs[j.id] == j && !s.close.begun {
		j.cancelled = time.Now()
		s.watchFor(j.cancelled.Add(cancelEcho))
	}
	s.startJoin()
	s.advanceClose()
}

// watchFor makes the owner check for a stuck stream at t.
func (s *Session) watchFor(t time.Time) {
	if s.watch != nil && !t.Before(s.watchAt) {
		return
	}
	if s.watch != nil {
		s.watch.Stop()
	}
	s.watch, s.watchAt = time.NewTimer(time.Until(t)), t
}

// stuck reports whether the stream is known to be stuck at now: it has
// missed a heartbeat, or a job it should have ended by now (a cancelled
// one: its completion comes right after the cancel's answer) was met with
// silence.
func (s *Session) stuck(now time.Time) bool {
	r := s.reader
	if r == nil {
		return false
	}
	if now.Sub(r.last) > s.c.staleAfter() {
		return true
	}
	for _, j := range s.jobs {
		if !j.cancelled.IsZero() && !now.Before(j.cancelled.Add(cancelEcho)) && !r.last.After(j.cancelled) {
			return true
		}
	}
	return false
}

// checkStuck replaces the stream if it is stuck, failing the jobs waiting
// on it at once rather than at the idle limit, and watches on while a
// cancelled job's completion is due.
func (s *Session) checkStuck() {
	if s.close.begun {
		return // Close ends the stream itself, after its cancels
	}
	now := time.Now()
	if s.stuck(now) {
		s.replaceStream(errStalled)
		return
	}
	var next time.Time
	for _, j := range s.jobs {
		if j.cancelled.IsZero() {
			continue
		}
		if due := j.cancelled.Add(cancelEcho); due.After(now) && (next.IsZero() || due.Before(next)) {
			next = due
		} else if !due.After(now) {
			j.cancelled = time.Time{} // the stream spoke since: it is alive
		}
	}
	if !next.IsZero() {
		s.watchFor(next)
	}
}

// failAll ends every job with err.
func (s *Session) failAll(err error) {
	for id, j := range s.jobs {
		j.box.fail(err)
		delete(s.jobs, id)
	}
	s.early, s.nEarly = nil, 0
}
