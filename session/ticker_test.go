package session_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/session"
)

// One Ticker ticks Phases times per interval, for every session at once.
func TestTickerTicksPhasesPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tk := session.NewTicker(8 * time.Second)
		defer tk.Stop()
		start := time.Now()
		for range 2 * session.Phases {
			<-tk.C()
		}
		if d := time.Since(start); d != 16*time.Second {
			t.Errorf("%d ticks took %v, want 16s", 2*session.Phases, d)
		}
		tk.Stop()
		select {
		case <-tk.C():
			t.Error("a stopped Ticker ticked")
		case <-time.After(time.Minute):
		}
	})
}
