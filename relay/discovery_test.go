package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/relay"
	"github.com/spacerelay/spacerelay/upstream"
)

func readyz(s *relay.Server) int {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return w.Code
}

// TestDiscoveryBackoff checks the waits between discovery attempts (1 s,
// doubling, at most 30 s), that a failure is logged once per change, and
// /readyz before and after discovery and while draining.
func TestDiscoveryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var attempts []time.Duration
		errs := []string{"down", "down", "down", "asleep", "asleep", "asleep", "asleep", "asleep"}
		api := func(ctx context.Context) (*upstream.API, error) {
			attempts = append(attempts, time.Since(start))
			if len(attempts) <= len(errs) {
				return nil, errors.New(errs[len(attempts)-1])
			}
			return testAPI, nil
		}
		logs := &logBuffer{}
		s := &relay.Server{Upstream: &fakeUpstream{}, API: api, Logger: slog.New(slog.NewTextHandler(logs, nil))}
		s.Start()
		synctest.Wait()
		if got := readyz(s); got != http.StatusServiceUnavailable {
			t.Errorf("/readyz before discovery = %d, want 503", got)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if got := readyz(s); got != http.StatusOK {
			t.Errorf("/readyz after discovery = %d, want 200", got)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		if got := readyz(s); got != http.StatusServiceUnavailable {
			t.Errorf("/readyz while draining = %d, want 503", got)
		}
		want := []time.Duration{0, 1, 3, 7, 15, 31, 61, 91, 121}
		for i := range want {
			want[i] *= time.Second
		}
		if !slices.Equal(attempts, want) {
			t.Errorf("attempts at %v, want %v", attempts, want)
		}
		if n := strings.Count(logs.String(), "upstream discovery failed"); n != 2 {
			t.Errorf("%d failure lines, want 2 (one per change):\n%s", n, logs)
		}
		if !strings.Contains(logs.String(), "upstream ready") {
			t.Errorf("no ready line:\n%s", logs)
		}
	})
}

// TestDiscoveryStopsOnShutdown checks that Shutdown ends a discovery that
// never succeeds, both while it waits and while it calls.
func TestDiscoveryStopsOnShutdown(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			api := func(ctx context.Context) (*upstream.API, error) {
				if blocking {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return nil, errors.New("down")
			}
			s := &relay.Server{Upstream: &fakeUpstream{}, API: api, Logger: slog.New(slog.DiscardHandler)}
			s.Start()
			time.Sleep(10 * time.Second)
			if err := s.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown() = %v", err)
			}
		}) // synctest.Test fails if a goroutine of the bubble is left
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	t.Parallel()
	s := &relay.Server{Upstream: &fakeUpstream{}, API: func(context.Context) (*upstream.API, error) {
		panic("discovery after Shutdown")
	}}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	s.Start()
	if got := readyz(s); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", got)
	}
}
