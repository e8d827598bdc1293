package upstream

import (
	"context"
	"sync"
	"time"
)

// maxMailbox bounds the messages a job's mailbox keeps that may not be
// dropped (process_starts, log, process_completed…). A job whose
// follower falls that far behind fails instead of growing its mailbox.
const maxMailbox = 256

// errMailboxFull fails a job whose follower fell maxMailbox messages behind.
var errMailboxFull = &Error{Code: CodeUnavailable,
	Message: "The Space sent this job's updates faster than they could be passed on."}

// mailbox holds what the session's owner routed to one job and the job's
// follower (its Stream call) has not taken yet. The owner puts and never
// waits; the follower takes. The newest message of a droppable kind
// (estimation, progress, a full-valued partial output) replaces an older
// one of its kind that is still waiting; nothing else is dropped.
type mailbox struct {
	mu    sync.Mutex // guards the fields below, nothing else
	queue []*message // in the order they came, droppable ones included
	kept  int        // messages in queue that may not be dropped
	err   error      // set once: after queue, the job ends with it

	ready chan struct{} // capacity 1: something to take, a signal that never blocks
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// put adds m. A droppable m replaces a waiting message of its kind; a
// message that may not be dropped first removes the waiting message of
// kind supersedes, if given (a completion carries the values of the last
// partial output). put reports false, and adds nothing, when the mailbox
// is full.
func (b *mailbox) put(m *message, droppable bool, supersedes string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return true // the follower is leaving: nothing more matters
	}
	switch {
	case droppable:
		b.dropKind(kindOf(m))
	case b.kept >= maxMailbox:
		return false
	default:
		if supersedes != "" {
			b.dropKind(supersedes)
		}
		b.kept++
	}
	b.queue = append(b.queue, m)
	b.signal()
	return true
}

// dropKind removes the waiting droppable message of kind k, if any. Called
// with mu held.
func (b *mailbox) dropKind(k string) {
	for i := len(b.queue) - 1; i >= 0; i-- {
		if kindOf(b.queue[i]) == k {
			copy(b.queue[i:], b.queue[i+1:])
			b.queue[len(b.queue)-1] = nil
			b.queue = b.queue[:len(b.queue)-1]
			return
		}
	}
}

// kindOf names the kind of m for replacement: the two partial messages
// are one kind.
func kindOf(m *message) string {
	if m.Msg == "process_streaming" {
		return "process_generating"
	}
	return m.Msg
}

// fail ends the job with err once the follower has taken what is waiting.
// The first error wins.
func (b *mailbox) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
		b.signal()
	}
}

func (b *mailbox) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take waits for messages and returns them all, in order, handing spare
// (emptied) to the mailbox for the next ones. Once the mailbox has failed
// and nothing is left, it returns the error; if ctx ends first, ctx's; if
// wake fires first, nothing.
func (b *mailbox) take(ctx context.Context, spare []*message, wake <-chan time.Time) ([]*message, error) {
	for {
		b.mu.Lock()
		if len(b.queue) > 0 {
			msgs := b.queue
			clear(spare)
			b.queue, b.kept = spare[:0], 0
			b.mu.Unlock()
			return msgs, nil
		}
		err := b.err
		b.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-b.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
			return nil, nil
		}
	}
}
