package upstream_test

import (
	"context"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// run streams call to its end and returns every event and the error.
func run(ctx context.Context, s *upstream.Session, call upstream.Call) ([]upstream.Event, error) {
	var evs []upstream.Event
	err := s.Stream(ctx, call, func(ev upstream.Event) error {
		evs = append(evs, ev)
		return nil
	})
	return evs, err
}

func result(t *testing.T, evs []upstream.Event, err error) *upstream.Completed {
	t.Helper()
	if err != nil {
		t.Fatalf("Stream() = %v, want a result", err)
	}
	c, ok := evs[len(evs)-1].(*upstream.Completed)
	if !ok {
		t.Fatalf("last event = %T, want *Completed", evs[len(evs)-1])
	}
	return c
}

// complete runs call and returns its result, failing the test otherwise.
func complete(t *testing.T, ctx context.Context, s *upstream.Session, call upstream.Call) *upstream.Completed {
	t.Helper()
	evs, err := run(ctx, s, call)
	return result(t, evs, err)
}
