package session_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
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

// Sessions that share a Ticker ping once per interval each, but not all
// in the same instant.
func TestSharedTickerSpreadsPings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tk := session.NewTicker(8 * time.Second)
		defer tk.Stop()
		start := time.Now()
		pinged := make(chan time.Duration, 64)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range 16 {
			browser, relay := wsPipeWith(t, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
				pinged <- time.Since(start)
				return true
			}})
			s := session.New(session.Config{API: testAPI, Pings: tk}, relay, &fakeUpstream{})
			wg.Go(func() { s.Run(ctx) })
			wg.Go(func() {
				for {
					if _, _, err := browser.Read(context.Background()); err != nil {
						return
					}
				}
			})
		}
		time.Sleep(8*time.Second + 500*time.Millisecond) // one interval, and the last tick's pings
		stop()
		wg.Wait()
		close(pinged)
		at := map[time.Duration]int{}
		n := 0
		for d := range pinged {
			at[d]++
			n++
			if d > 8*time.Second {
				t.Errorf("a ping at %v, want every session's first within the 8s interval", d)
			}
		}
		if n != 16 || len(at) < 2 {
			t.Errorf("%d pings at %d distinct instants (%v), want 16 spread over several", n, len(at), at)
		}
	})
}
