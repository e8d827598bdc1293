package relay_test

import (
	"context"
	"errors"
	"fmt"
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

// TestReadyz checks /readyz's JSON through discovery's states: starting
// (no answer yet), unavailable with the upstream's message for people
// (or a neutral one), ready, and draining.
func TestReadyz(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		results := make(chan error)
		api := func(ctx context.Context) (*upstream.API, error) {
			select {
			case err := <-results:
				if err == nil {
					return testAPI, nil
				}
				return nil, err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		s := &relay.Server{Upstream: &fakeUpstream{}, API: api, Logger: slog.New(slog.DiscardHandler)}
		s.Start()
		check := func(wantStatus int, want string) {
			t.Helper()
			synctest.Wait()
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if w.Code != wantStatus || strings.TrimSpace(w.Body.String()) != want {
				t.Errorf("/readyz = %d %s, want %d %s", w.Code, w.Body, wantStatus, want)
			}
			if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
				t.Errorf("/readyz: Content-Type %q, Cache-Control %q; want application/json, no-store", ct, cc)
			}
		}
		check(503, `{"ready":false,"state":"starting","message":"the relay is fetching the Space's API","retry_after":5}`)
		asleep := &upstream.Error{Code: upstream.CodeUnavailable, Title: "Space not running",
			Message: "Space owner/x is asleep; it wakes when someone opens its page on huggingface.co, which takes a minute or so"}
		results <- fmt.Errorf("discovery: %w", asleep)
		check(503, `{"ready":false,"state":"unavailable","message":"Space owner/x is asleep; it wakes when someone opens its page on huggingface.co, which takes a minute or so","retry_after":5}`)
		time.Sleep(time.Second)
		results <- errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
		check(503, `{"ready":false,"state":"unavailable","message":"the Space cannot be reached right now","retry_after":5}`)
		time.Sleep(2 * time.Second)
		results <- nil
		check(200, `{"ready":true,"state":"ready","message":"the relay is ready"}`)
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		check(503, `{"ready":false,"state":"draining","message":"the relay is shutting down","retry_after":5}`)
	})
}
