package upstream_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// A Space that answers no cancel holds Close for CloseBound, not for a
// CancelTimeout per step: the relay's shutdown ends within its grace with
// every session's end logged. The queued job is still taken out before
// the running one is cancelled, and the requests still out at the bound
// are abandoned (their goroutines end: the bubble would deadlock).
func TestCloseIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: byPrompt(map[string]string{"a": "e1", "b": "e2"})}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`,
				`{"msg":"estimation","event_id":"e2","rank":0,"queue_size":1,"rank_eta":null}`)
			<-r.Context().Done()
		}
		var mu sync.Mutex
		var cancels []string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/gradio_api/cancel" {
				f.ServeHTTP(w, r)
				return
			}
			var body map[string]any
			json.NewDecoder(r.Body).Decode(&body)
			mu.Lock()
			cancels = append(cancels, fmt.Sprintf("%v/%v", body["event_id"], body["fn_index"]))
			mu.Unlock()
			<-r.Context().Done() // never answers
		})
		s := newMemClient(t, h).NewSession(nil)
		for _, p := range []string{"a", "b"} { // a runs, b is queued
			go run(t.Context(), s, upstream.Call{Data: []any{p}})
			synctest.Wait()
		}
		start := time.Now()
		s.Close()
		if d := time.Since(start); d > upstream.CloseBound {
			t.Errorf("Close took %v, want at most CloseBound (%v)", d, upstream.CloseBound)
		}
		mu.Lock()
		defer mu.Unlock()
		if want := "[e2/-1 e1/0]"; fmt.Sprint(cancels) != want {
			t.Errorf("cancels sent = %v, want %s: the queued job's dequeue, then the running job's cancel", cancels, want)
		}
	})
}
