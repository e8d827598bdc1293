package session_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// Issue 12: a generator's final image crosses the socket once. When its
// last preview went out as a partial all the same (the Space ended the
// job after the upstream's hold), the result refers to that preview's
// file instead of sending its bytes again.
func TestResultReusesTheLastPartialsFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{files: map[string][]byte{"/last.png": []byte("png"), "/first.png": []byte("png0")},
			script: func(ctx context.Context, _ upstream.Call, emit func(upstream.Event) error) error {
				emit(&upstream.Partial{Data: []any{file("/first.png")}})
				time.Sleep(time.Second) // a step
				emit(&upstream.Partial{Data: []any{file("/last.png")}})
				time.Sleep(time.Second)
				return emit(&upstream.Completed{Data: []any{file("/last.png")}})
			}}
		h := start(t, up, session.Config{})
		h.expect("hello")
		h.send(`{"type":"submit","id":"g","data":["x"]}`)
		msgs := h.until("result")
		var files []string
		var partialRef any
		for _, m := range msgs {
			switch m["type"] {
			case "file":
				files = append(files, m["file"].(string))
			case "partial":
				partialRef = m["data"].([]any)[0]
			}
		}
		res := msgs[len(msgs)-1]
		if len(files) != 2 {
			t.Errorf("%d files for two previews and a result equal to the last, want 2", len(files))
		}
		if got := res["data"].([]any)[0]; got.(map[string]any)["file"] != partialRef.(map[string]any)["file"] {
			t.Errorf("result %v, want it to refer to the last preview's file %v", got, partialRef)
		}
	})
}
