package demospace

import (
	"fmt"
	"sync"
	"time"
)

// quotas holds the GPU seconds left per token digest ("" is the shared pool
// of token-less callers). A token forgotten by the LRU starts afresh.
// Make one with newQuotas.
type quotas struct {
	seconds int           // a new token's allowance
	refill  time.Duration // a spent allowance comes back this long after its first use; 0: never
	now     func() time.Time

	mu   sync.Mutex
	left *lru[string, allowance]
}

type allowance struct {
	left  int
	since time.Time // first use in this window
}

func newQuotas(seconds int, refill time.Duration, now func() time.Time, maxTokens int) *quotas {
	return &quotas{seconds: seconds, refill: refill, now: now, left: newLRU[string, allowance](maxTokens)}
}

// take spends steps seconds of token's quota. If fewer are left, it spends
// nothing and returns ok=false, what is left, and when it comes back (0
// when it never does).
func (q *quotas) take(token string, steps int) (left int, wait time.Duration, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	a, found := q.left.get(token)
	if !found || (q.refill > 0 && now.Sub(a.since) >= q.refill) {
		a = allowance{left: q.seconds, since: now}
	}
	if steps > a.left {
		if q.refill > 0 {
			wait = a.since.Add(q.refill).Sub(now)
		}
		return a.left, wait, false
	}
	a.left -= steps
	q.left.put(token, a)
	return a.left, 0, true
}

// quotaError is the ZeroGPU quota error of SPEC.md. wait is when the quota
// comes back; 0 means SPEC.md's (steps - left) * 10 seconds.
func quotaError(steps, left int, wait time.Duration) *appError {
	secs := int64(steps-left) * 10
	if wait > 0 {
		secs = int64((wait + time.Second - 1) / time.Second)
	}
	return &appError{
		title: "ZeroGPU quota exceeded",
		message: fmt.Sprintf("You have exceeded your free ZeroGPU quota (%ds requested vs. %ds left). Try again in %s.",
			steps, left, timedelta(secs)),
	}
}

// timedelta writes a number of seconds as Python's str(timedelta) does:
// "0:02:30", "1 day, 2:03:04", "-1 day, 23:59:50".
func timedelta(secs int64) string {
	days := secs / 86400
	rem := secs % 86400
	if rem < 0 {
		days--
		rem += 86400
	}
	hms := fmt.Sprintf("%d:%02d:%02d", rem/3600, rem%3600/60, rem%60)
	switch days {
	case 0:
		return hms
	case 1, -1:
		return fmt.Sprintf("%d day, %s", days, hms)
	}
	return fmt.Sprintf("%d days, %s", days, hms)
}

// counters is the per-session gr.State of /count.
type counters struct {
	mu sync.Mutex
	n  *lru[string, int]
}

// incr adds one to the count of session and returns it.
func (c *counters) incr(session string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, _ := c.n.get(session)
	c.n.put(session, n+1)
	return n + 1
}

// reset sets the count of session back to zero.
func (c *counters) reset(session string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n.put(session, 0)
}
