package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// fakeApp is a scripted Gradio app with one endpoint, /echo (a prompt
// and a hidden State slot), for the cases a real server cannot be made
// to show on demand. Tests set the handlers they need.
type fakeApp struct {
	version  string
	protocol string
	join     func(w http.ResponseWriter, r *http.Request, body map[string]any)
	stream   func(w http.ResponseWriter, r *http.Request)
	cancel   func(body map[string]any) // if set, called with each cancel's body
	cancels  atomic.Int32
	streams  atomic.Int32
	headers  sync.Map // path -> http.Header of the last request

	mu       sync.Mutex
	requests []fakeRequest // every request, in order
}

// fakeRequest is what the fakeApp saw of one request.
type fakeRequest struct {
	path   string
	header http.Header
	body   map[string]any // a JSON body, decoded
	size   int            // the body's length
}

func (f *fakeApp) log() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func (f *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.headers.Store(r.URL.Path, r.Header.Clone())
	var raw []byte
	if r.Body != nil { // (a client request in memory may have none)
		raw, _ = io.ReadAll(r.Body)
	}
	var body map[string]any
	json.Unmarshal(raw, &body)
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{path: r.URL.Path, header: r.Header.Clone(), body: body, size: len(raw)})
	f.mu.Unlock()
	switch {
	case strings.HasPrefix(r.URL.Path, "/gradio_api/file="):
		w.Header().Set("Content-Type", "image/png")
		io.WriteString(w, "png bytes")
		return
	case r.URL.Path == "/gradio_api/upload":
		fmt.Fprintf(w, `["/tmp/gradio/up/%d"]`, len(raw))
		return
	}
	switch r.URL.Path {
	case "/config":
		v, p := f.version, f.protocol
		if v == "" {
			v = "6.31.0"
		}
		if p == "" {
			p = "sse_v3"
		}
		fmt.Fprintf(w, `{"version":%q,"api_prefix":"/gradio_api","protocol":%q,
			"components":[{"id":1,"type":"textbox"},{"id":2,"type":"state","skip_api":true},{"id":3,"type":"textbox"}],
			"dependencies":[{"id":0,"api_name":"echo","api_visibility":"public","inputs":[1,2],"outputs":[3,2],"types":{"generator":true}},
			                {"id":1,"api_name":"hidden","api_visibility":"private","inputs":[],"outputs":[]}]}`, v, p)
	case "/gradio_api/info":
		io.WriteString(w, `{"named_endpoints":{"/echo":{"parameters":[{"label":"Prompt","parameter_name":"prompt",
			"parameter_has_default":false,"type":{"type":"string"},"python_type":{"type":"str"},"component":"Textbox"}],
			"returns":[{"label":"Echo","component":"Textbox"}]}},"unnamed_endpoints":{}}`)
	case "/gradio_api/queue/join":
		f.join(w, r, body)
	case "/gradio_api/queue/data":
		f.streams.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		f.stream(w, r)
	case "/gradio_api/cancel":
		f.cancels.Add(1)
		if f.cancel != nil {
			f.cancel(body)
		}
		io.WriteString(w, `{"success":true}`)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeApp) header(path string) http.Header {
	h, _ := f.headers.Load(path)
	hh, _ := h.(http.Header)
	return hh
}

// sse writes messages as one flushed event each.
func sse(w http.ResponseWriter, msgs ...string) {
	for _, m := range msgs {
		fmt.Fprintf(w, "data: %s\n\n", m)
	}
	w.(http.Flusher).Flush()
}

func joined(id string) func(http.ResponseWriter, *http.Request, map[string]any) {
	return func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		fmt.Fprintf(w, `{"event_id":%q}`, id)
	}
}

func startFake(t *testing.T, f *fakeApp, cfg upstream.Config) *upstream.Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg.Target = srv.URL
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func done(id, data string) string {
	return fmt.Sprintf(`{"msg":"process_completed","event_id":%q,"output":{"data":%s,"duration":0.5},"success":true}`, id, data)
}

func TestJoinSendsVisitorHeadersAndStateSlots(t *testing.T) {
	var got map[string]any
	f := &fakeApp{
		join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			got = body
			joined("e1")(w, r, body)
		},
		stream: func(w http.ResponseWriter, r *http.Request) {
			sse(w, done("e1", `["hi", null]`), `{"msg":"close_stream","event_id":null}`)
		},
	}
	c := startFake(t, f, upstream.Config{HFToken: "hf_secret"})
	s := c.NewSession(http.Header{"X-Ip-Token": {"visitor-jwt"}})
	defer s.Close()
	evs, err := run(t.Context(), s, upstream.Call{Inputs: map[string]any{"prompt": "hi"}})
	res := result(t, evs, err)
	if fmt.Sprint(res.Data) != "[hi]" {
		t.Errorf("Data = %v, want [hi] (the State output dropped)", res.Data)
	}
	if fmt.Sprint(got["data"]) != "[hi <nil>]" || got["session_hash"] != s.Hash() || got["fn_index"] != 0.0 {
		t.Errorf("join body = %v, want data [hi <nil>] with the State slot, fn 0, the session's hash", got)
	}
	join := f.header("/gradio_api/queue/join")
	if join.Get("X-Ip-Token") != "visitor-jwt" || join.Get("X-Hf-Authorization") != "Bearer hf_secret" || join.Get("X-Gradio-User") != "api" {
		t.Errorf("join headers = %v", join)
	}
	for _, p := range []string{"/config", "/gradio_api/info", "/gradio_api/queue/data"} {
		if h := f.header(p); h.Get("X-Hf-Authorization") != "Bearer hf_secret" {
			t.Errorf("%s without the HF token", p)
		}
	}
}

// A job's messages may beat the answer to its join.
func TestEarlyMessagesAreKept(t *testing.T) {
	arrived, streamed := make(chan struct{}), make(chan struct{})
	f := &fakeApp{}
	f.join = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		if body["data"].([]any)[0] == "first" {
			joined("e0")(w, r, body) // the first job opens the stream
			return
		}
		close(arrived)
		<-streamed // the second job's messages are on the wire before its join answers
		joined("e2")(w, r, body)
	}
	var once sync.Once
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		played := true
		once.Do(func() { played = false })
		if played { // reopened as the second join raced the close: nothing is pending
			<-r.Context().Done()
			return
		}
		sse(w, `{"msg":"process_starts","event_id":"e0","eta":null}`)
		<-arrived
		sse(w, `{"msg":"estimation","event_id":"e2","rank":0,"queue_size":1,"rank_eta":null}`,
			done("e2", `["early", null]`))
		close(streamed)
		sse(w, done("e0", `["first", null]`), `{"msg":"close_stream","event_id":null}`)
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	ctx := t.Context()
	first := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.Stream(ctx, upstream.Call{Data: []any{"first"}}, func(ev upstream.Event) error {
			if _, ok := ev.(*upstream.Started); ok {
				close(first)
			}
			return nil
		})
	}()
	<-first
	evs, err := run(ctx, s, upstream.Call{Data: []any{"second"}})
	if res := result(t, evs, err); fmt.Sprint(res.Data) != "[early]" {
		t.Errorf("second job = %v, want [early]", res.Data)
	}
	if _, ok := evs[1].(*upstream.Queued); !ok {
		t.Errorf("second job's events = %v, want its early Queued kept", evs)
	}
	if err := <-errc; err != nil {
		t.Errorf("first job: %v", err)
	}
}

func TestUnexpectedErrorFailsEveryJob(t *testing.T) {
	n := atomic.Int32{}
	both := make(chan struct{})
	f := &fakeApp{
		join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			i := n.Add(1)
			joined(fmt.Sprint("e", i))(w, r, body)
			if i == 2 {
				close(both)
			}
		},
		stream: func(w http.ResponseWriter, r *http.Request) {
			<-both
			sse(w, `{"msg":"unexpected_error","event_id":null,"message":"Server stopped unexpectedly.","success":false}`)
		},
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
			var e *upstream.Error
			if !errors.As(err, &e) || e.Code != upstream.CodeUnavailable || !strings.Contains(e.Message, "Server stopped") {
				t.Errorf("Stream() = %v, want upstream_unavailable: Server stopped unexpectedly.", err)
			}
		})
	}
	wg.Wait()
}

func TestStreamReopensAfterCloseStream(t *testing.T) {
	n := atomic.Int32{}
	pending := make(chan string, 3)
	f := &fakeApp{
		join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			id := fmt.Sprint("e", n.Add(1))
			pending <- id
			joined(id)(w, r, body)
		},
		stream: func(w http.ResponseWriter, r *http.Request) { // like Gradio: serve what is pending, then close
			select {
			case id := <-pending:
				sse(w, done(id, `["ok", null]`), `{"msg":"close_stream","event_id":null}`)
			case <-r.Context().Done():
			}
		},
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	for range 3 {
		evs, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		result(t, evs, err)
	}
	if got := f.streams.Load(); got < 3 {
		t.Errorf("%d streams opened for 3 sequential jobs, want one each, after close_stream", got)
	}
}

// Gradio 4.17 to 4.19 send a generator's later updates as edit lists even
// when a join asks for full values; later versions take "simple_format".
func TestEditListsGiveFullValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{
			version: "4.17.0", protocol: "sse_v2",
			join: joined("e1"),
			stream: func(w http.ResponseWriter, r *http.Request) {
				for _, m := range []string{
					`{"msg":"process_generating","event_id":"e1","success":true,"output":{"data":["Hel", null]}}`,
					`{"msg":"process_generating","event_id":"e1","success":true,"output":{"data":[[["append",[],"lo"]], []]}}`,
					`{"msg":"process_generating","event_id":"e1","success":true,"output":{"data":[[["replace",[],"Bye"]], []]}}`,
				} {
					sse(w, m)
					time.Sleep(time.Second) // a generator's step
				}
				sse(w, done("e1", `["Bye", null]`))
			},
		}
		c, err := upstream.New(upstream.Config{Target: "http://fake.invalid", HTTP: inMemory(f)})
		if err != nil {
			t.Fatal(err)
		}
		s := c.NewSession(nil)
		defer s.Close()
		evs, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
		result(t, evs, err)
		var got []string
		for _, ev := range evs {
			if p, ok := ev.(*upstream.Partial); ok {
				got = append(got, fmt.Sprint(p.Data))
			}
		}
		if strings.Join(got, " ") != "[Hel] [Hello] [Bye]" {
			t.Errorf("partials = %v, want [Hel] [Hello] [Bye]", got)
		}
	})
}

// A join asks for full values of a generator's updates, never edit lists.
func TestJoinAsksForFullValues(t *testing.T) {
	var got map[string]any
	f := &fakeApp{
		join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			got = body
			joined("e1")(w, r, body)
		},
		stream: func(w http.ResponseWriter, r *http.Request) {
			sse(w, done("e1", `["hi", null]`), `{"msg":"close_stream","event_id":null}`)
		},
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	complete(t, t.Context(), s, upstream.Call{Data: []any{"x"}})
	if got["simple_format"] != true {
		t.Errorf("join body = %v, want simple_format true", got)
	}
}

func TestLegacyQuotedQuotaError(t *testing.T) {
	f := &fakeApp{
		version:  "4.44.1",
		protocol: "sse_v3",
		join:     joined("e1"),
		stream: func(w http.ResponseWriter, r *http.Request) {
			sse(w, `{"msg":"process_completed","event_id":"e1","success":false,"output":{"error":"'You have exceeded your GPU quota (60s requested vs. 56s left). Try again in 0:09:48'"}}`)
		},
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	_, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeQuotaExceeded || e.RetryAfter != 9*time.Minute+48*time.Second {
		t.Errorf("Stream() = %+v, want quota_exceeded, retry after 9m48s", err)
	}
}

func TestOldProtocolRefused(t *testing.T) {
	c := startFake(t, &fakeApp{version: "3.50.2", protocol: "ws"}, upstream.Config{})
	_, err := c.API(t.Context())
	if upstream.CodeOf(err) != upstream.CodeUnavailable || !strings.Contains(err.Error(), "4.9") {
		t.Errorf("API() = %v, want a clear refusal of Gradio 3", err)
	}
}

func TestSpaceResolution(t *testing.T) {
	app := httptest.NewServer(&fakeApp{})
	defer app.Close()
	for _, tc := range []struct {
		stage, hostStatus string
		want              upstream.Code
		wantText          string
	}{
		{"RUNNING", "200", "", ""},
		{"SLEEPING", "200", upstream.CodeUnavailable, "asleep"},
		{"BUILDING", "200", upstream.CodeUnavailable, "starting"},
		{"PAUSED", "200", upstream.CodeUnavailable, "paused"},
		{"RUNNING", "401", upstream.CodeUnauthorized, "private"},
	} {
		t.Run(tc.stage+tc.hostStatus, func(t *testing.T) {
			var auth string
			hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth = r.Header.Get("Authorization")
				switch r.URL.Path {
				case "/api/spaces/owner/name/host":
					if tc.hostStatus != "200" {
						http.Error(w, "no", 401)
						return
					}
					fmt.Fprintf(w, `{"subdomain":"owner-name","host":%q}`, app.URL)
				case "/api/spaces/owner/name/runtime":
					fmt.Fprintf(w, `{"stage":%q}`, tc.stage)
				default:
					http.NotFound(w, r)
				}
			}))
			defer hub.Close()
			c, err := upstream.New(upstream.Config{Target: "owner/name", HubURL: hub.URL, HFToken: "hf_x"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			api, err := c.API(t.Context())
			if upstream.CodeOf(err) != tc.want || (err != nil && !strings.Contains(err.Error(), tc.wantText)) {
				t.Fatalf("API() = %v, want %q with %q", err, tc.want, tc.wantText)
			}
			if err == nil && api.BaseURL != app.URL {
				t.Errorf("BaseURL = %s, want %s", api.BaseURL, app.URL)
			}
			if auth != "Bearer hf_x" {
				t.Errorf("the Hub got Authorization %q, want the HF token", auth)
			}
			if err != nil && strings.Contains(err.Error(), "hf_x") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestNewRefusesBadTargets(t *testing.T) {
	for _, target := range []string{"", "nope", "ftp://x", "http://", "a/b/c"} {
		if _, err := upstream.New(upstream.Config{Target: target}); err == nil {
			t.Errorf("New(%q) = nil error", target)
		}
	}
}

// A stream that stays silent past the idle limit is broken.
func TestSilentStreamIsBroken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{
			join: joined("e1"),
			stream: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
		}
		c, err := upstream.New(upstream.Config{Target: "http://fake.invalid", HTTP: inMemory(f), StreamIdleTimeout: 45 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s := c.NewSession(nil)
		defer s.Close()
		start := time.Now()
		_, err = run(context.Background(), s, upstream.Call{Data: []any{"x"}})
		if upstream.CodeOf(err) != upstream.CodeUnavailable || !strings.Contains(err.Error(), "silent") {
			t.Errorf("Stream() = %v, want upstream_unavailable: silent", err)
		}
		if d := time.Since(start); d != 45*time.Second {
			t.Errorf("gave up after %v, want 45s", d)
		}
	})
}
