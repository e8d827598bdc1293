package session

import (
	"context"
	"time"

	"golang.org/x/sync/semaphore"
)

// A Budget bounds the bytes of files that all the sessions of a relay hold
// in memory at once: results waiting to be written to a browser, and
// upload chunks waiting to go upstream. A nil *Budget bounds nothing. It
// is safe for concurrent use.
type Budget struct {
	sem  *semaphore.Weighted
	size int64
}

// NewBudget returns a Budget of n bytes.
func NewBudget(n int64) *Budget {
	return &Budget{sem: semaphore.NewWeighted(n), size: n}
}

// budgetWait bounds how long a job waits for room for a file.
const budgetWait = 30 * time.Second

// errNoRoom fails a file that found no room in the relay's budget.
var errNoRoom = &refusal{code: "over_capacity",
	message: "The relay is busy passing on other files; try again in a moment."}

// acquire takes n bytes, waiting for room at most budgetWait (or until ctx
// ends). n over the whole budget never fits.
func (b *Budget) acquire(ctx context.Context, n int64) error {
	if b == nil || n <= 0 {
		return nil
	}
	if n > b.size {
		return errNoRoom
	}
	ctx, cancel := context.WithTimeout(ctx, budgetWait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return errNoRoom
		}
		return err
	}
	return nil
}

// tryAcquire takes n bytes if there is room now.
func (b *Budget) tryAcquire(n int64) bool {
	return b == nil || n <= 0 || b.sem.TryAcquire(n)
}

// release gives back n bytes.
func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.sem.Release(n)
	}
}
