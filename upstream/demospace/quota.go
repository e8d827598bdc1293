package demospace

import (
	"fmt"
	"sync"
)

// quotas holds the GPU seconds left per token digest ("" is the shared pool
// of token-less callers). A token forgotten by the LRU starts afresh.
// Make one with newQuotas.
type quotas struct {
	seconds int // a new token's allowance

	mu   sync.Mutex
	left *lru[string, int]
}

func newQuotas(seconds, maxTokens int) *quotas {
	return &quotas{seconds: seconds, left: newLRU[string, int](maxTokens)}
}

// take spends steps seconds of token's quota. If fewer are left, it spends
// nothing and returns ok=false and what is left.
func (q *quotas) take(token string, steps int) (left int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	left, found := q.left.get(token)
	if !found {
		left = q.seconds
	}
	if steps > left {
		return left, false
	}
	q.left.put(token, left-steps)
	return left - steps, true
}

// quotaError is the ZeroGPU quota error of SPEC.md.
func quotaError(steps, left int) *appError {
	return &appError{
		title: "ZeroGPU quota exceeded",
		message: fmt.Sprintf("You have exceeded your free ZeroGPU quota (%ds requested vs. %ds left). Try again in %s.",
			steps, left, timedelta(int64(steps-left)*10)),
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
