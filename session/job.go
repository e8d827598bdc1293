package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/spacerelay/spacerelay/upstream"
)

// job is one browser job. Its goroutine joins it upstream; its messages
// reach Run from the upstream stream reader (see stream).
type job struct {
	// Static after submit.
	id       string
	endpoint string
	cancel   context.CancelFunc
	start    time.Time

	// Owned by whoever runs the job's Stream callback (one at a time).
	seq int

	// Shared with the job's Stream callback.
	slots     [nSlots]atomic.Pointer[outgoing] // the newest droppable message of each kind, not yet written
	signalled atomic.Bool                      // Run has been told to look at the slots

	// Owned by Run.
	started   time.Time
	cancelled bool // the browser asked to cancel
}

// outgoing is one message to the browser, with the files it refers to
// written before it.
type outgoing struct {
	files    []outFile
	msg      []byte
	kind     string // the message's type
	seq      int    // its place among the job's messages
	terminal bool
	code     string    // the error code, for an error
	received time.Time // when the upstream event arrived, for Hooks.Relayed
}

type outFile struct {
	header []byte // the file message
	data   []byte // its binary frame
}

// item is what a job's helpers hand to Run: a message that must not be
// dropped, or the job's end (done, with the error Stream returned).
type item struct {
	j    *job
	out  *outgoing
	done bool
	err  error
}

func (s *Session) submit(ctx context.Context, m *inbound) error {
	id := ""
	if m.ID != nil {
		id = *m.ID
	}
	if !jobID.MatchString(id) {
		return s.refuse(&errorMsg{Code: "bad_request", Message: fmt.Sprintf("submit: id %q must be 1 to 64 characters of A-Z a-z 0-9 _ . : -", id)})
	}
	if _, busy := s.jobs[id]; busy {
		return s.refuse(&errorMsg{Code: "bad_request", Message: fmt.Sprintf("submit: id %q is held by an unfinished job", id)})
	}
	s.bad = 0
	if len(s.jobs) >= s.cfg.MaxJobs {
		return s.sendError(&errorMsg{ID: id, Code: "too_many_jobs", Message: fmt.Sprintf("at most %d unfinished jobs per session", s.cfg.MaxJobs)})
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
	if exp := tokenExpiry(s.cfg.Token); exp != nil && !s.cfg.Now().Before(*exp) {
		return s.sendError(&errorMsg{ID: id, Code: "token_expired", Title: "Session expired",
			Message: "The visitor's token has expired; reload the page to get a fresh one."})
	}
	visitor := s.open()
	jctx, cancel := context.WithCancel(ctx)
	j := &job{id: id, endpoint: ep.Name, cancel: cancel, start: s.cfg.Now()}
	s.jobs[id] = j
	s.nJobs++
	prev, joined := s.lastJoin, make(chan struct{})
	s.lastJoin = joined
	s.jobsGroup.Go(func() { s.follow(jctx, visitor, j, call, prev, joined) })
	return nil
}

func (s *Session) cancel(m *inbound) error {
	id := ""
	if m.ID != nil {
		id = *m.ID
	}
	j, ok := s.jobs[id]
	if !ok { // not a bad message: the job may just have ended
		return s.sendError(&errorMsg{ID: id, Code: "unknown_job", Message: fmt.Sprintf("cancel: no unfinished job %q", id)})
	}
	s.bad = 0
	j.cancelled = true
	j.cancel() // the job's Stream ends it: cancelled, or what was on its way
	return nil
}

// relay writes what a job's helpers handed over.
func (s *Session) relay(it item) error {
	j := it.j
	if s.jobs[j.id] != j {
		return nil // over already
	}
	if err := s.flushOlder(j, it); err != nil {
		return err
	}
	out := it.out
	if it.done {
		out = s.ending(j, it.err)
	}
	if out.kind == "started" {
		j.started = s.cfg.Now()
	}
	if out.terminal {
		s.end(j, out)
	}
	return s.writeOut(out)
}

// ending makes the terminal message of a job whose Stream returned
// without one.
func (s *Session) ending(j *job, err error) *outgoing {
	if err == nil { // an upstream that ended without a terminal event
		err = &upstream.Error{Code: "internal", Message: "the upstream ended the job without a result"}
	}
	if j.cancelled && errors.Is(err, context.Canceled) {
		out := encode("cancelled", j.id, idMsg{"cancelled", j.id})
		out.terminal = true
		return out
	}
	e := upstreamError(j.id, err)
	e.Type = "error"
	out := encode("error", j.id, e)
	out.code, out.terminal = e.Code, true
	return out
}

// end forgets a finished job and reports it.
func (s *Session) end(j *job, out *outgoing) {
	delete(s.jobs, j.id)
	j.cancel()
	if s.cfg.Hooks.JobEnded == nil {
		return
	}
	st := JobStats{Endpoint: j.endpoint, Code: out.code, Duration: s.cfg.Now().Sub(j.start)}
	switch out.kind {
	case "result":
		st.Outcome = "completed"
	case "cancelled":
		st.Outcome = "cancelled"
	default:
		st.Outcome = "error"
	}
	if !j.started.IsZero() {
		st.QueueWait = j.started.Sub(j.start)
	}
	s.cfg.Hooks.JobEnded(st)
}

// The kinds of droppable messages: a newer one replaces an older one of
// the same kind only.
const (
	slotQueued = iota
	slotProgress
	slotPartial
	nSlots
)

func slotOf(kind string) int {
	switch kind {
	case "queued":
		return slotQueued
	case "progress":
		return slotProgress
	}
	return slotPartial
}

// flushOlder writes the job's droppable messages that came before it:
// messages of a job keep their order.
func (s *Session) flushOlder(j *job, it item) error {
	var older []*outgoing
	for i := range j.slots {
		old := j.slots[i].Load()
		if old == nil || (!it.done && old.seq > it.out.seq) || !j.slots[i].CompareAndSwap(old, nil) {
			continue // none, or newer: it comes after, through wake
		}
		older = append(older, old)
	}
	return s.writeInOrder(j, older)
}

// flushSlots writes the job's newest droppable messages, if any.
func (s *Session) flushSlots(j *job) error {
	var outs []*outgoing
	for i := range j.slots {
		if out := j.slots[i].Swap(nil); out != nil {
			outs = append(outs, out)
		}
	}
	return s.writeInOrder(j, outs)
}

func (s *Session) writeInOrder(j *job, outs []*outgoing) error {
	if len(outs) == 0 || s.jobs[j.id] != j {
		return nil
	}
	slices.SortFunc(outs, func(a, b *outgoing) int { return a.seq - b.seq })
	for _, out := range outs {
		if err := s.writeOut(out); err != nil {
			return err
		}
	}
	return nil
}

// writeOut writes a message and, before it, the files it refers to.
func (s *Session) writeOut(out *outgoing) error {
	for _, f := range out.files {
		if err := s.write(websocket.MessageText, f.header); err != nil {
			return err
		}
		if err := s.write(websocket.MessageBinary, f.data); err != nil {
			return err
		}
	}
	if err := s.write(websocket.MessageText, out.msg); err != nil {
		return err
	}
	if s.cfg.Hooks.Relayed != nil && !out.received.IsZero() {
		s.cfg.Hooks.Relayed(s.cfg.Now().Sub(out.received))
	}
	return nil
}

// follow runs a job upstream; it is the job's goroutine. Jobs join the
// upstream queue in the order they were submitted: each waits until the
// one before it has joined (prev), and then tells the next (joined).
func (s *Session) follow(ctx context.Context, v Visitor, j *job, call upstream.Call, prev <-chan struct{}, joined chan struct{}) {
	isJoined := false
	join := func() {
		if !isJoined {
			isJoined = true
			close(joined)
		}
	}
	defer join()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
		}
	}
	err := ctx.Err() // given up while waiting its turn
	if err == nil {
		err = s.stream(ctx, v, j, call, join)
	}
	select {
	case s.items <- item{j: j, done: true, err: err}:
	case <-s.done:
	}
}

// stream follows the job upstream, handing its messages to Run. Its
// callback runs on the visitor's upstream stream reader (see
// upstream.Session.Stream): an event goes from the upstream's socket to
// Run with one goroutine switch. Once Run stops listening it drops what
// comes, and never blocks: the visitor's Close, which waits for it, cancels
// the session's jobs in the one safe order (queued ones first).
//
// While it fetches a message's files, no other event of the visitor is
// read (a result's files: one round of downloads per job).
func (s *Session) stream(ctx context.Context, v Visitor, j *job, call upstream.Call, joined func()) error {
	return v.Stream(ctx, call, func(ev upstream.Event) error {
		if _, ok := ev.(*upstream.Accepted); ok {
			// The next job may join once Run has this job's accepted, so
			// that the page sees them accepted in order too.
			defer joined()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.over() {
			return nil
		}
		received := upstream.ReadAt(ev) // its message off the upstream's socket
		if received.IsZero() {
			received = s.cfg.Now()
		}
		out, droppable, err := s.translateWhileListened(ctx, j, ev)
		if s.over() {
			return nil // (an error here would cancel the job before Close)
		}
		if err != nil || out == nil {
			return err
		}
		if len(out.files) == 0 {
			out.received = received
		}
		j.seq++
		out.seq = j.seq
		if droppable && !out.terminal { // (terminal: a message that could not be encoded)
			j.slots[slotOf(out.kind)].Store(out)
			if !j.signalled.Swap(true) {
				select {
				case s.wake <- j:
				case <-ctx.Done():
				case <-s.done:
				}
			}
			return nil
		}
		select {
		case s.items <- item{j: j, out: out}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			// Run has stopped listening: the message is dropped, and the
			// job is left to the visitor's Close, which cancels the
			// session's jobs in the one safe order (queued ones first).
			return nil
		}
	})
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

// translateWhileListened is translate, whose downloads also stop when Run
// stops listening: the visitor's Close waits for the stream reader that
// runs them.
func (s *Session) translateWhileListened(ctx context.Context, j *job, ev upstream.Event) (*outgoing, bool, error) {
	switch ev.(type) {
	case *upstream.Partial, *upstream.Completed:
	default:
		return s.translate(ctx, j, ev)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return s.translate(ctx, j, ev)
}
