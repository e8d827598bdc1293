package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream"
)

// job is one browser job. Its goroutine (follow) waits for the uploads it
// names, runs the job upstream, and hands each of its messages to Run.
type job struct {
	// Static after submit.
	id       string
	endpoint string
	ctx      context.Context // ends the job upstream once done
	cancel   context.CancelFunc
	start    time.Time

	// Owned by the job's goroutine (follow): the last partial output
	// handed on, as the upstream gave it and as the page got it.
	lastPartial []any
	lastRefs    []any

	// Owned by Run.
	started   time.Time
	cancelled bool          // the browser asked to cancel
	call      upstream.Call // while it waits for uploads
	waits     []*upload     // the uploads it waits for, until it is submitted
}

// outgoing is one message to the browser, with the files it refers to
// written before it.
type outgoing struct {
	files    []outFile
	held     int64 // bytes of files taken from the relay's budget
	msg      []byte
	kind     string // the message's type
	terminal bool
	code     string    // the error code, for an error
	err      error     // the failure, for an error
	received time.Time // when the upstream event arrived, for Hooks.Relayed
}

type outFile struct {
	id     string
	src    upstream.FileData // where it came from upstream
	header []byte            // the file message
	data   []byte            // its binary frame
}

// item is what a job's goroutine hands to Run: a message, or the job's end
// (done, with the error its Stream returned).
type item struct {
	j    *job
	out  *outgoing
	done bool
	err  error
}

func (s *Session) submit(ctx context.Context, m *inbound) error {
	id, ok := s.newID(m)
	if !ok {
		return s.refuse(&errorMsg{Code: "bad_request", Message: idProblem("submit", m)})
	}
	s.bad = 0
	if len(s.jobs) >= s.cfg.MaxJobs {
		return s.sendError(&errorMsg{ID: id, Code: "too_many_jobs", Message: fmt.Sprintf("At most %d unfinished jobs per session.", s.cfg.MaxJobs)})
	}
	name := m.Endpoint
	if name == "" {
		name = s.cfg.DefaultEndpoint
	}
	ep, err := s.cfg.API.Endpoint(name)
	if err != nil {
		return s.sendError(upstreamError(id, err))
	}
	call, err := m.call(ep.Name)
	if err != nil {
		return s.sendError(&errorMsg{ID: id, Code: "bad_request", Message: err.Error()})
	}
	waits, err := s.resolveCall(ep, &call)
	if err != nil {
		return s.sendError(upstreamError(id, err))
	}
	if s.token.expired(s.cfg.Now()) {
		return s.sendError(&errorMsg{ID: id, Code: "token_expired", Title: "Session expired",
			Message: "The visitor's token has expired; the page must refresh it, or reload."})
	}
	jctx, cancel := context.WithCancel(ctx)
	j := &job{id: id, endpoint: ep.Name, ctx: jctx, cancel: cancel, start: s.cfg.Now()}
	if s.jobs == nil {
		s.jobs = make(map[string]*job)
	}
	if len(waits) > 0 { // it joins once its files are in
		j.call, j.waits = call, waits
		s.jobs[id] = j
		s.nJobs++
		return s.submitWaiting() // (at once, with its error, if an upload has failed)
	}
	v := s.open()
	vj, err := v.Submit(jctx, call)
	if err != nil {
		cancel()
		return s.sendError(upstreamError(id, err))
	}
	s.jobs[id] = j
	s.nJobs++
	s.jobsGroup.Go(func() { s.follow(j, v, vj) })
	return nil
}

// submitWaiting submits the jobs whose uploads are all in, in the order
// they came; a job whose upload failed ends with the upload's error.
func (s *Session) submitWaiting() error {
	for _, j := range s.waitingJobs() {
		var failed error
		done := true
		for _, u := range j.waits {
			done = done && u.over
			if u.over && u.err != nil && failed == nil {
				failed = u.err
			}
		}
		if !done && failed == nil {
			continue
		}
		j.waits = nil
		if failed != nil {
			if errors.Is(failed, context.Canceled) {
				failed = &refusal{code: "invalid_input", message: "An upload this job needs was cancelled."}
			}
			if err := s.endEarly(j, failed); err != nil {
				return err
			}
			continue
		}
		fillUploads(&j.call)
		v := s.open()
		vj, err := v.Submit(j.ctx, j.call)
		j.call = upstream.Call{}
		if err != nil {
			if err := s.endEarly(j, err); err != nil {
				return err
			}
			continue
		}
		s.jobsGroup.Go(func() { s.follow(j, v, vj) })
	}
	return nil
}

// waitingJobs returns the jobs waiting for uploads, in submit order.
func (s *Session) waitingJobs() []*job {
	var w []*job
	for _, j := range s.jobs {
		if len(j.waits) > 0 {
			w = append(w, j)
		}
	}
	slices.SortFunc(w, func(a, b *job) int { return a.start.Compare(b.start) })
	return w
}

// endEarly ends a job that never reached the upstream, with err (or
// cancelled, if the page cancelled it).
func (s *Session) endEarly(j *job, err error) error {
	if j.cancelled {
		err = context.Canceled
	}
	out := s.ending(j, err)
	s.end(j, out.kind, out.code, out.err)
	return s.writeOut(out)
}

func (s *Session) cancel(m *inbound) error {
	id := ""
	if m.ID != nil {
		id = *m.ID
	}
	if u := s.uploads[id]; u != nil && !u.over {
		s.bad = 0
		u.cancelled = true
		return s.failUpload(u, context.Canceled) // the next upload may start at once
	}
	j, ok := s.jobs[id]
	if !ok { // not a bad message: the job may just have ended
		return s.sendError(&errorMsg{ID: id, Code: "unknown_job", Message: fmt.Sprintf("cancel: no unfinished job or upload %q", id)})
	}
	s.bad = 0
	j.cancelled = true
	j.cancel()            // the job's Follow ends it: cancelled, or what was on its way
	if len(j.waits) > 0 { // never submitted: it ends here
		return s.endEarly(j, context.Canceled)
	}
	return nil
}

// relay writes what a job's goroutine handed over.
func (s *Session) relay(it item) error {
	j := it.j
	out := it.out
	if s.jobs[j.id] != j {
		out.release(s.cfg.Budget)
		return nil // over already
	}
	if it.done {
		out = s.ending(j, it.err)
	}
	if out.kind == "started" {
		j.started = s.cfg.Now()
	}
	if out.terminal {
		s.end(j, out.kind, out.code, out.err)
	}
	return s.writeOut(out)
}

// ending makes the terminal message of a job whose Stream returned
// without one.
func (s *Session) ending(j *job, err error) *outgoing {
	if err == nil { // an upstream that ended without a terminal event
		err = &upstream.Error{Code: upstream.CodeAppError, Message: "The Space ended this job without a result."}
	}
	if j.cancelled && errors.Is(err, context.Canceled) {
		out := encode("cancelled", j.id, idMsg{"cancelled", j.id})
		out.terminal = true
		return out
	}
	e := upstreamError(j.id, err)
	out := encode("error", j.id, e)
	out.code, out.err, out.terminal = e.Code, err, true
	return out
}

// end forgets a finished job and reports it.
func (s *Session) end(j *job, kind, code string, err error) {
	delete(s.jobs, j.id)
	j.cancel()
	if s.cfg.Hooks.JobEnded == nil {
		return
	}
	st := JobStats{Session: s.cfg.ID, Job: j.id, Endpoint: j.endpoint, Code: code, Duration: s.cfg.Now().Sub(j.start)}
	switch kind {
	case "result":
		st.Outcome = "completed"
	case "cancelled":
		st.Outcome = "cancelled"
	case "ended":
		st.Outcome, st.Code = "ended", ""
	default:
		st.Outcome, st.Err = "error", err
	}
	if !j.started.IsZero() {
		st.QueueWait = j.started.Sub(j.start)
	}
	s.cfg.Hooks.JobEnded(st)
}

// endAll reports the jobs that the session's end left unfinished.
func (s *Session) endAll() {
	for _, j := range s.jobs {
		s.end(j, "ended", "", nil)
	}
}

// writeOut writes a message and, before it, the files it refers to.
func (s *Session) writeOut(out *outgoing) error {
	defer out.release(s.cfg.Budget)
	for _, f := range out.files {
		if err := s.write(websocket.MessageText, f.header); err != nil {
			return err
		}
		if err := s.write(websocket.MessageBinary, f.data); err != nil {
			return err
		}
		s.files.add(f.id, f.src)
	}
	if err := s.write(websocket.MessageText, out.msg); err != nil {
		return err
	}
	if s.cfg.Hooks.Relayed != nil && !out.received.IsZero() {
		s.cfg.Hooks.Relayed(s.cfg.Now().Sub(out.received))
	}
	return nil
}

// release gives back the budget out's files held.
func (out *outgoing) release(b *Budget) {
	if out != nil && out.held > 0 {
		b.release(out.held)
		out.held = 0
	}
}

// follow is the job's goroutine: it follows the job upstream and hands
// each of its messages to Run, in order. While it fetches a message's
// files or waits for Run to take a message, the job's next events wait
// upstream, in its mailbox (where the newest queue position, progress and
// preview replace older ones); other jobs go on.
func (s *Session) follow(j *job, v Visitor, vj Job) {
	err := vj.Follow(func(ev upstream.Event) error { return s.pass(j.ctx, v, j, ev) })
	it := item{j: j, done: true, err: err}
	select {
	case s.work <- func() error { return s.relay(it) }:
	case <-s.done:
	}
}

// pass translates one event of the job and hands it to Run. Once Run has
// stopped listening it drops the event and returns nil: the job is left to
// the visitor's Close, which cancels the session's jobs in the one safe
// order (queued ones first).
func (s *Session) pass(ctx context.Context, v Visitor, j *job, ev upstream.Event) error {
	received := upstream.ReadAt(ev) // its message off the upstream's socket
	if received.IsZero() {
		received = s.cfg.Now()
	}
	out, err := s.translate(ctx, v, j, ev)
	if err != nil || out == nil {
		if s.over() {
			return nil
		}
		return err
	}
	if len(out.files) == 0 {
		out.received = received
	}
	it := item{j: j, out: out}
	select {
	case s.work <- func() error { return s.relay(it) }:
		return nil
	case <-ctx.Done():
		out.release(s.cfg.Budget)
		return ctx.Err()
	case <-s.done:
		out.release(s.cfg.Budget)
		return nil
	}
}

// over reports whether Run has stopped listening.
func (s *Session) over() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
