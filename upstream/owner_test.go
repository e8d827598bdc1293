package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// newMemClient is a Client of f, in memory: for tests in a synctest bubble.
func newMemClient(t *testing.T, f http.Handler) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Config{Target: "http://fake.invalid", HTTP: inMemory(f), StreamIdleTimeout: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// byPrompt answers each join with the event id named by its first input.
func byPrompt(ids map[string]string) func(http.ResponseWriter, *http.Request, map[string]any) {
	return func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		joined(ids[fmt.Sprint(body["data"].([]any)[0])])(w, r, body)
	}
}

// Issue 10: Close waits for a join in flight, and takes its job out of the
// queue before it returns.
func TestCloseWaitsForJoinInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		joining, release := make(chan struct{}), make(chan struct{})
		f := &fakeApp{
			join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
				close(joining)
				<-release
				joined("e1")(w, r, body)
			},
			stream: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		}
		c := newMemClient(t, f)
		s := c.NewSession(nil)
		go run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		<-joining
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		time.Sleep(upstream.CloseBound / 6) // half the join's share of the bound
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while a join was in flight")
		default:
		}
		close(release)
		<-closed
		var cancels []map[string]any
		for _, r := range f.log() {
			if r.path == "/gradio_api/cancel" {
				cancels = append(cancels, r.body)
			}
		}
		if len(cancels) != 1 || cancels[0]["event_id"] != "e1" || cancels[0]["fn_index"] != float64(-1) {
			t.Errorf("cancels before Close returned = %v, want one dequeue (fn_index -1) of e1", cancels)
		}
	})
}

// Issue 10: a join that never answers holds Close for closeJoinWait only
// (the first third of CloseBound).
func TestCloseBoundsAJoinInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		joining := make(chan struct{})
		f := &fakeApp{join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			close(joining)
			<-r.Context().Done()
		}}
		s := newMemClient(t, f).NewSession(nil)
		errc := make(chan error, 1)
		go func() { _, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}}); errc <- err }()
		<-joining
		start := time.Now()
		s.Close()
		if d, want := time.Since(start), upstream.CloseBound/3; d != want {
			t.Errorf("Close took %v, want the join's bound, %v", d, want)
		}
		if err := <-errc; err == nil {
			t.Error("the job's Stream succeeded")
		}
	})
}

// Issue 10: a job whose follower is slow (its fn downloads a large file)
// holds up no other job of the visitor.
func TestSlowFollowerDoesNotDelayOtherJobs(t *testing.T) {
	const n = 20
	f := &fakeApp{join: byPrompt(map[string]string{"slow": "e1", "quick": "e2"})}
	joins := make(chan struct{}, 2)
	inner := f.join
	f.join = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		inner(w, r, body)
		joins <- struct{}{}
	}
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		<-joins
		<-joins
		sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`,
			`{"msg":"progress","event_id":"e1","progress_data":[{"index":0,"length":1,"unit":"steps","progress":null,"desc":null}]}`)
		for i := range n {
			sse(w, fmt.Sprintf(`{"msg":"progress","event_id":"e2","progress_data":[{"index":%d,"length":%d,"unit":"steps","progress":null,"desc":null}]}`, i, n))
		}
		sse(w, done("e2", `["quick", null]`))
		<-r.Context().Done()
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stuck, release := make(chan struct{}), make(chan struct{})
	slowDone := make(chan error, 1)
	go func() {
		var once sync.Once
		slowDone <- s.Stream(ctx, upstream.Call{Data: []any{"slow"}}, func(ev upstream.Event) error {
			if _, ok := ev.(*upstream.Progress); ok {
				once.Do(func() { close(stuck) })
				<-release // a 20 MiB download to a slow page
			}
			return nil
		})
	}()
	evs, err := run(ctx, s, upstream.Call{Data: []any{"quick"}})
	res := result(t, evs, err)
	if fmt.Sprint(res.Data) != "[quick]" {
		t.Errorf("result = %v", res.Data)
	}
	<-stuck
	select {
	case err := <-slowDone:
		t.Fatalf("the slow job ended: %v", err)
	default:
	}
	close(release)
	cancel()
	<-slowDone
}

// Issue 9: a cookie the Space sets for one visitor goes on that visitor's
// requests only.
func TestCookiesArePerVisitor(t *testing.T) {
	f := &fakeApp{stream: func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("session_hash")
		sse(w, done("e-"+id, `["ok", null]`), `{"msg":"close_stream","event_id":null}`)
	}}
	f.join = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		http.SetCookie(w, &http.Cookie{Name: "visitor", Value: fmt.Sprint(body["data"].([]any)[0]), Path: "/"})
		joined("e-"+body["session_hash"].(string))(w, r, body)
	}
	c := startFake(t, f, upstream.Config{})
	for _, who := range []string{"ann", "bob"} {
		s := c.NewSession(nil)
		for range 2 {
			complete(t, t.Context(), s, upstream.Call{Data: []any{who}})
		}
		s.Close()
	}
	for _, r := range f.log() {
		if r.path != "/gradio_api/queue/join" {
			continue
		}
		who := r.body["data"].([]any)[0]
		if got := r.header.Get("Cookie"); got != "" && got != "visitor="+who.(string) {
			t.Errorf("%s's join carried cookie %q", who, got)
		}
	}
}

// Issue 9: every request of a visitor's session carries the visitor's
// headers, the cancel among them, as gradio_client's do.
func TestEveryRequestCarriesTheVisitorsToken(t *testing.T) {
	started := make(chan struct{})
	f := &fakeApp{join: joined("e1"), stream: func(w http.ResponseWriter, r *http.Request) {
		sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
		close(started)
		<-r.Context().Done()
	}}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(http.Header{"X-Ip-Token": {"tok-1"}})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-started; cancel() }()
	run(ctx, s, upstream.Call{Data: []any{"x"}})
	d, err := s.Download(t.Context(), upstream.FileData{Path: "/tmp/gradio/a.png", Size: -1}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	d.Body.Close()
	if _, err := s.Upload(t.Context(), upstream.Upload{Name: "a.txt", Size: 3, Body: strings.NewReader("abc")}, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	seen := map[string]bool{}
	for _, r := range f.log() {
		path := r.path
		if strings.HasPrefix(path, "/gradio_api/file=") {
			path = "/gradio_api/file="
		}
		seen[path] = true
		if path == "/gradio_api/info" {
			continue // discovery is the Client's, for all visitors
		}
		if strings.HasPrefix(path, "/gradio_api/") && r.header.Get("X-Ip-Token") != "tok-1" {
			t.Errorf("%s went without the visitor's token", r.path)
		}
	}
	for _, p := range []string{"/gradio_api/queue/join", "/gradio_api/queue/data", "/gradio_api/cancel", "/gradio_api/file=", "/gradio_api/upload"} {
		if !seen[p] {
			t.Errorf("no request to %s", p)
		}
	}
}

// Issue 9: a page reads why in words for people; the address and the Go
// error are for the log.
func TestFailuresAreWrittenForPeople(t *testing.T) {
	c, err := upstream.New(upstream.Config{Target: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(nil)
	defer s.Close()
	_, err = run(t.Context(), s, upstream.Call{Data: []any{"x"}})
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeUnavailable {
		t.Fatalf("Stream() = %v, want upstream_unavailable", err)
	}
	if strings.Contains(e.Message, "127.0.0.1") || strings.Contains(e.Message, "dial") || e.Message == "" {
		t.Errorf("Message = %q: not for people", e.Message)
	}
	if !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("Error() = %q: the log loses the cause", err.Error())
	}

	f := &fakeApp{join: joined("e1"), stream: func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `data: {"msg":"process_sta`) // and the connection drops
	}}
	s2 := startFake(t, f, upstream.Config{}).NewSession(nil)
	defer s2.Close()
	_, err = run(t.Context(), s2, upstream.Call{Data: []any{"x"}})
	if !errors.As(err, &e) || strings.Contains(e.Message, "sse") || strings.Contains(e.Message, "EOF") {
		t.Errorf("a cut stream: %v, want a message for people", err)
	}
}

// Issue 9: after a job is cancelled on a stream that has stalled, the next
// job does not wait on the dead stream: it gets a new one.
func TestStalledStreamIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: byPrompt(map[string]string{"first": "e1", "second": "e2"})}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			if f.streams.Load() == 1 {
				sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
				<-r.Context().Done() // stalls: not even a heartbeat
				return
			}
			sse(w, done("e2", `["second", null]`), `{"msg":"close_stream","event_id":null}`)
		}
		s := newMemClient(t, f).NewSession(nil)
		defer s.Close()
		ctx, cancel := context.WithCancel(t.Context())
		err := s.Stream(ctx, upstream.Call{Data: []any{"first"}}, func(ev upstream.Event) error {
			if _, ok := ev.(*upstream.Started); ok {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("first job: %v, want it cancelled", err)
		}
		time.Sleep(3 * time.Second) // the cancel's completion never came
		start := time.Now()
		complete(t, t.Context(), s, upstream.Call{Data: []any{"second"}})
		if d := time.Since(start); d > 0 {
			t.Errorf("the second job took %v: it waited on the stalled stream", d)
		}
	})
}

// A stream that has missed a heartbeat (nothing for staleAfter, 20 s,
// though Gradio sends one every 15 s) is not trusted with a job about to
// join: it is closed, its jobs fail, and the new job gets a stream of its
// own at once, not a failure at the 45 s idle limit.
func TestSilentStreamIsReplacedWhenAJobJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: byPrompt(map[string]string{"first": "e1", "second": "e2"})}
		firstClosed := make(chan time.Time, 1)
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			if f.streams.Load() == 1 {
				sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
				<-r.Context().Done() // silent from here: no heartbeat
				firstClosed <- time.Now()
				return
			}
			sse(w, done("e2", `["second", null]`), `{"msg":"close_stream","event_id":null}`)
		}
		s := newMemClient(t, f).NewSession(nil)
		defer s.Close()
		first := make(chan error, 1)
		go func() { _, err := run(t.Context(), s, upstream.Call{Data: []any{"first"}}); first <- err }()
		synctest.Wait()
		time.Sleep(21 * time.Second) // past staleAfter, short of the idle limit
		start := time.Now()
		complete(t, t.Context(), s, upstream.Call{Data: []any{"second"}})
		if d := time.Since(start); d > 0 {
			t.Errorf("the second job took %v: it waited on the silent stream", d)
		}
		if got := <-firstClosed; !got.Equal(start) {
			t.Errorf("the silent stream closed %v after the second job came, want at once", got.Sub(start))
		}
		if err := <-first; upstream.CodeOf(err) != upstream.CodeUnavailable {
			t.Errorf("the first job, on the silent stream: %v, want upstream_unavailable", err)
		}
		if n := f.streams.Load(); n != 2 {
			t.Errorf("%d streams, want 2", n)
		}
	})
}

// Issue 9: a job that joined just before its stream was found stuck fails
// within the cancel's echo time, not after the 45 s idle limit.
func TestJobOnAStuckStreamFailsSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: byPrompt(map[string]string{"first": "e1", "second": "e2"})}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
			<-r.Context().Done()
		}
		s := newMemClient(t, f).NewSession(nil)
		defer s.Close()
		ctx, cancel := context.WithCancel(t.Context())
		s.Stream(ctx, upstream.Call{Data: []any{"first"}}, func(ev upstream.Event) error {
			if _, ok := ev.(*upstream.Started); ok {
				cancel()
			}
			return nil
		})
		start := time.Now()
		_, err := run(t.Context(), s, upstream.Call{Data: []any{"second"}})
		if upstream.CodeOf(err) != upstream.CodeUnavailable {
			t.Errorf("second job: %v, want upstream_unavailable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the second job failed after %v, want within the 2s echo time", d)
		}
	})
}

// Issue 9: Gradio's cancel of a running job ends every running job of its
// function in the session. A running job's cancel waits while a sibling's
// join is in flight (it may be running already), and then while the
// sibling runs: the sibling gets its result.
func TestRunningCancelWaitsForASiblingsJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bJoining, bRelease := make(chan struct{}), make(chan struct{})
		f := &fakeApp{}
		f.join = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			if body["data"].([]any)[0] == "b" {
				close(bJoining)
				<-bRelease
				joined("e2")(w, r, body)
				return
			}
			joined("e1")(w, r, body)
		}
		var mu sync.Mutex
		var order []string
		note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
		aCancelled := make(chan struct{})
		f.cancel = func(body map[string]any) {
			note(fmt.Sprintf("cancel %v fn %v", body["event_id"], body["fn_index"]))
			close(aCancelled)
		}
		bStarted, bDone := make(chan struct{}), make(chan struct{})
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
			<-bStarted
			sse(w, `{"msg":"process_starts","event_id":"e2","eta":null}`)
			<-bDone
			note("e2 completed")
			sse(w, done("e2", `["b", null]`))
			<-aCancelled
			sse(w, `{"msg":"process_completed","event_id":"e1","output":{},"success":true}`,
				`{"msg":"close_stream","event_id":null}`)
		}
		s := newMemClient(t, f).NewSession(nil)
		defer s.Close()
		ctxA, cancelA := context.WithCancel(t.Context())
		aStarted := make(chan struct{})
		aDone := make(chan error, 1)
		go func() {
			aDone <- s.Stream(ctxA, upstream.Call{Data: []any{"a"}}, func(ev upstream.Event) error {
				if _, ok := ev.(*upstream.Started); ok {
					close(aStarted)
				}
				return nil
			})
		}()
		<-aStarted
		bResult := make(chan error, 1)
		go func() { _, err := run(t.Context(), s, upstream.Call{Data: []any{"b"}}); bResult <- err }()
		<-bJoining
		cancelA() // while b's join is in flight
		<-aDone
		time.Sleep(time.Second)
		close(bRelease)
		time.Sleep(time.Second)
		close(bStarted)
		time.Sleep(time.Second)
		close(bDone)
		if err := <-bResult; err != nil {
			t.Errorf("sibling b: %v, want its result", err)
		}
		<-aCancelled
		mu.Lock()
		defer mu.Unlock()
		if len(order) != 2 || order[0] != "e2 completed" || order[1] != "cancel e1 fn 0" {
			t.Errorf("upstream saw %v, want a's cancel only after b completed", order)
		}
	})
}

// Issue 9: a job the upstream forgets (its stream ends, and the next one,
// with no word of it) fails: it never waits in silence.
func TestForgottenJobFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: joined("e1")}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			if f.streams.Load() == 1 {
				sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`)
			}
			sse(w, `{"msg":"close_stream","event_id":null}`)
		}
		s := newMemClient(t, f).NewSession(nil)
		defer s.Close()
		_, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		if upstream.CodeOf(err) != upstream.CodeAppError {
			t.Errorf("Stream() = %v, want upstream_error", err)
		}
		if n := f.streams.Load(); n != 2 {
			t.Errorf("%d streams, want 2: the first, and one reopened for the job that says nothing of it", n)
		}
	})
}

// Issue 12: an upload streams its bytes with an exact Content-Length; a
// body shorter or longer than its size fails.
func TestUploadStreamsExactly(t *testing.T) {
	f := &fakeApp{}
	s := startFake(t, f, upstream.Config{}).NewSession(nil)
	defer s.Close()
	body := strings.Repeat("x", 100<<10)
	v, err := s.Upload(t.Context(), upstream.Upload{Name: "a.bin", MIME: "application/x-test", Size: int64(len(body)), Body: strings.NewReader(body)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v["path"] == nil || v["orig_name"] != "a.bin" || v["mime_type"] != "application/x-test" {
		t.Errorf("FileData = %v", v)
	}
	if meta, _ := v["meta"].(map[string]any); meta["_type"] != "gradio.FileData" {
		t.Errorf("FileData = %v: no meta", v)
	}
	for _, size := range []int64{20, 5} { // the body has 10 bytes
		_, err := s.Upload(t.Context(), upstream.Upload{Name: "b.bin", Size: size, Body: strings.NewReader("0123456789")}, 0)
		if upstream.CodeOf(err) != upstream.CodeInvalidInput {
			t.Errorf("10 bytes uploaded as %d: %v, want invalid_input", size, err)
		}
	}
	// The two failed uploads' requests reach the fake's log once its
	// handler has read what came: wait for them.
	uploads := func() int {
		n := 0
		for _, r := range f.log() {
			if strings.HasSuffix(r.path, "/upload") {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); uploads() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	before := len(f.log())
	_, err = s.Upload(t.Context(), upstream.Upload{Name: "c.bin", Size: 100, Body: strings.NewReader(body)}, 50)
	if upstream.CodeOf(err) != upstream.CodeFileTooLarge {
		t.Errorf("100 bytes with a limit of 50: %v, want file_too_large", err)
	}
	if n := len(f.log()) - before; n != 0 {
		t.Errorf("an upload over the limit made %d requests, want none", n)
	}
}

// A join already answered has had its reply: Close, coming before the
// job's Follow took it, must not send another (it would block the owner,
// and with it Close and Follow).
func TestCloseAfterAJoinWasAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{
			join:   joined("e1"),
			stream: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		}
		s := newMemClient(t, f).NewSession(nil)
		ctx, cancel := context.WithCancel(t.Context())
		j, err := s.Submit(ctx, upstream.Call{Data: []any{"x"}})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // answered; the reply waits for Follow
		cancel()        // the socket closes: the job's context ends, and Close comes
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		synctest.Wait()
		if err := j.Follow(func(upstream.Event) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("Follow = %v, want the context's error", err)
		}
		<-closed // (a deadlock here fails the bubble)
	})
}

// directApp is a Space of two queue=False events: /slow answers when its
// request is cut, /fast at once.
type directApp struct{}

func (directApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/config":
		io.WriteString(w, `{"version":"6.31.0","api_prefix":"/gradio_api","protocol":"sse_v3",
			"components":[{"id":1,"type":"textbox"}],
			"dependencies":[{"id":0,"api_name":"slow","api_visibility":"public","inputs":[],"outputs":[1],"queue":false},
			{"id":1,"api_name":"fast","api_visibility":"public","inputs":[],"outputs":[1],"queue":false}]}`)
	case "/gradio_api/info":
		io.WriteString(w, `{"named_endpoints":{"/slow":{"parameters":[],"returns":[{"label":"Out","component":"Textbox"}]},
			"/fast":{"parameters":[],"returns":[{"label":"Out","component":"Textbox"}]}},"unnamed_endpoints":{}}`)
	case "/gradio_api/run/slow":
		<-r.Context().Done()
	case "/gradio_api/run/fast":
		io.WriteString(w, `{"data":["ok"]}`)
	default:
		http.NotFound(w, r)
	}
}

// A session without visitor headers (no token) still makes direct calls.
func TestDirectCallWithoutHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemClient(t, directApp{}).NewSession(nil)
		defer s.Close()
		complete(t, t.Context(), s, upstream.Call{Endpoint: "/fast"})
	})
}

// Close cuts every direct call in flight, whichever ended before it.
func TestCloseCutsEachDirectCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemClient(t, directApp{}).NewSession(http.Header{"X-Ip-Token": {"tok"}})
		slow := make(chan error, 1)
		go func() {
			_, err := run(context.Background(), s, upstream.Call{Endpoint: "/slow"})
			slow <- err
		}()
		synctest.Wait()
		complete(t, t.Context(), s, upstream.Call{Endpoint: "/fast"}) // it ends first
		s.Close()                                                     // (a deadlock here fails the bubble)
		if err := <-slow; !errors.Is(err, upstream.ErrClosed) {
			t.Errorf("the slow call = %v, want ErrClosed", err)
		}
	})
}

// A queued job whose dequeue comes too late (it starts while Close waits
// for the cancel of a running job) is cancelled as a running job before
// Close returns: else it would run to its end on the GPU.
func TestJobStartingDuringCloseIsCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		startB := make(chan struct{})
		f := &fakeApp{join: byPrompt(map[string]string{"a": "e1", "b": "e2"})}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"msg":"process_starts","event_id":"e1","eta":null}`,
				`{"msg":"estimation","event_id":"e2","rank":0,"queue_size":1,"rank_eta":null}`)
			select {
			case <-startB:
				sse(w, `{"msg":"process_starts","event_id":"e2","eta":null}`)
			case <-r.Context().Done():
				return
			}
			<-r.Context().Done()
		}
		f.cancel = func(body map[string]any) {
			if body["event_id"] == "e1" {
				close(startB)           // Gradio starts e2 as e1 is cancelled,
				time.Sleep(time.Second) // and says so before this answer
			}
		}
		s := newMemClient(t, f).NewSession(nil)
		for _, p := range []string{"a", "b"} {
			go run(t.Context(), s, upstream.Call{Data: []any{p}})
			synctest.Wait()
		}
		s.Close()
		var got []string
		for _, r := range f.log() {
			if r.path == "/gradio_api/cancel" {
				got = append(got, fmt.Sprintf("%v/%v", r.body["event_id"], r.body["fn_index"]))
			}
		}
		if want := "[e2/-1 e1/0 e2/0]"; fmt.Sprint(got) != want {
			t.Errorf("cancels before Close returned = %v, want %s", got, want)
		}
	})
}

// An app whose error echoes the headers it got does not hand the visitor's
// token to the page.
func TestAppErrorsDoNotCarryTheToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{join: joined("e1")}
		f.stream = func(w http.ResponseWriter, r *http.Request) {
			tok := r.Header.Get("X-Ip-Token")
			sse(w, `{"msg":"process_completed","event_id":"e1","success":false,"output":{"error":"bad token `+tok+`","title":"Error"}}`)
			<-r.Context().Done()
		}
		s := newMemClient(t, f).NewSession(http.Header{"X-Ip-Token": {"visitor-secret-jwt"}})
		defer s.Close()
		_, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		var e *upstream.Error
		if !errors.As(err, &e) || strings.Contains(e.Message+e.Title+err.Error(), "secret") || !strings.Contains(e.Message, "[redacted]") {
			t.Errorf("Stream() = %v, want the app's error with the token redacted", err)
		}
	})
}
