package session

import (
	"sync"
	"time"
)

// A Ticker tells many sessions when to ping their browsers, with one timer
// for all of them: an idle session then costs no timer and no goroutine of
// its own. It ticks Phases times per interval, and each session pings on
// one tick in Phases of its own choosing, so that ten thousand sessions do
// not all ping at once. The zero Ticker never ticks; make one with
// NewTicker.
type Ticker struct {
	interval time.Duration // between two pings of one session

	mu      sync.Mutex
	ch      chan struct{} // closed at the next tick
	timer   *time.Timer
	stopped bool
}

// Phases is how many ticks a Ticker makes per interval.
const Phases = 8

// NewTicker returns a Ticker for pings every interval, until Stop.
func NewTicker(interval time.Duration) *Ticker {
	t := &Ticker{interval: interval, ch: make(chan struct{})}
	t.mu.Lock() // the first tick may come before AfterFunc returns
	defer t.mu.Unlock()
	t.timer = time.AfterFunc(t.period(), t.tick)
	return t
}

func (t *Ticker) period() time.Duration { return max(t.interval/Phases, time.Millisecond) }

func (t *Ticker) tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	close(t.ch)
	t.ch = make(chan struct{})
	t.timer.Reset(t.period())
}

// C returns a channel that is closed at the next tick. Nil for a zero
// Ticker: it blocks for ever.
func (t *Ticker) C() <-chan struct{} {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

// Interval returns the time between two pings of one session.
func (t *Ticker) Interval() time.Duration {
	if t == nil {
		return 0
	}
	return t.interval
}

// Stop stops the Ticker; it never ticks again.
func (t *Ticker) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.timer.Stop()
}
