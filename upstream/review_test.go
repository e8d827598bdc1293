package upstream_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// A job whose update cannot be read ends, is cancelled upstream, and does
// not hold up the other jobs of the session.
func TestBadUpdateDoesNotStallTheSession(t *testing.T) {
	n := atomic.Int32{}
	both := make(chan struct{})
	f := &fakeApp{}
	f.join = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		id := map[any]string{"bad": "e1", "good": "e2"}[body["data"].([]any)[0]]
		joined(id)(w, r, body)
		if n.Add(1) == 2 {
			close(both)
		}
	}
	f.stream = func(w http.ResponseWriter, r *http.Request) {
		<-both
		sse(w, `{"msg":"process_generating","event_id":"e1","success":true,"output":{"data":["a", null]}}`,
			`{"msg":"process_generating","event_id":"e1","success":true,"output":"not an output"}`)
		for range 40 { // more than a job's buffer
			sse(w, `{"msg":"progress","event_id":"e1","progress_data":[]}`)
		}
		sse(w, done("e2", `["fine", null]`))
		<-r.Context().Done()
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := run(ctx, s, upstream.Call{Data: []any{"bad"}})
		errc <- err
	}()
	complete(t, ctx, s, upstream.Call{Data: []any{"good"}})
	if err := <-errc; upstream.CodeOf(err) != upstream.CodeUnavailable {
		t.Errorf("bad job: %v, want upstream_unavailable", err)
	}
	for f.cancels.Load() == 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if f.cancels.Load() == 0 {
		t.Error("the bad job was not cancelled upstream")
	}
}

// A job given up while its join is on the wire is still cancelled once
// the upstream names it.
func TestCancelDuringJoin(t *testing.T) {
	joining, release := make(chan struct{}), make(chan struct{})
	f := &fakeApp{
		join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			close(joining)
			<-release
			joined("e1")(w, r, body)
		},
		stream: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
	}
	c := startFake(t, f, upstream.Config{})
	s := c.NewSession(nil)
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := run(ctx, s, upstream.Call{Data: []any{"x"}})
		errc <- err
	}()
	<-joining
	cancel()
	close(release)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Stream() = %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.cancels.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.cancels.Load() != 1 {
		t.Errorf("%d cancels, want 1 for the job joined as it was given up", f.cancels.Load())
	}
}

// The HF token and the visitor's token never follow a redirect to another host.
func TestCredentialsStayHome(t *testing.T) {
	var leaked atomic.Value
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("X-Hf-Authorization") + r.Header.Get("X-Ip-Token"))
		io.WriteString(w, "png")
	}))
	defer elsewhere.Close()
	f := &fakeApp{}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gradio_api/file=/tmp/x.png" {
			http.Redirect(w, r, elsewhere.URL+"/x.png", http.StatusFound)
			return
		}
		f.ServeHTTP(w, r)
	}))
	defer app.Close()
	c, err := upstream.New(upstream.Config{Target: app.URL, HFToken: "hf_secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	d, err := c.Download(t.Context(), upstream.FileData{Path: "/tmp/x.png"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(d.Body)
	d.Body.Close()
	if v, _ := leaked.Load().(string); v != "" {
		t.Errorf("the other host got credentials %q", v)
	}
}

// A visitor's download redirected to another host takes none of the
// visitor's credentials there (their token, their cookies) nor the
// relay's HF token; one redirected within the Space keeps them all.
func TestVisitorCredentialsStayHome(t *testing.T) {
	f := &fakeApp{}
	var mu sync.Mutex
	got := map[string]http.Header{} // by host and path
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Host+r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		switch {
		case r.URL.Host == "elsewhere.invalid":
			io.WriteString(w, "png")
		case r.URL.Path == "/gradio_api/file=/tmp/away.png":
			http.SetCookie(w, &http.Cookie{Name: "visitor", Value: "v1", Path: "/"})
			http.Redirect(w, r, "http://elsewhere.invalid/x.png", http.StatusFound)
		case r.URL.Path == "/gradio_api/file=/tmp/moved.png":
			http.SetCookie(w, &http.Cookie{Name: "visitor", Value: "v1", Path: "/"})
			http.Redirect(w, r, "/gradio_api/file=/tmp/x.png", http.StatusFound)
		default:
			f.ServeHTTP(w, r)
		}
	})
	c, err := upstream.New(upstream.Config{Target: "http://app.invalid", HFToken: "hf_secret", HTTP: inMemory(h)})
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(http.Header{"X-Ip-Token": {"visitor-jwt"}})
	defer s.Close()
	for _, path := range []string{"/tmp/away.png", "/tmp/moved.png"} {
		d, err := s.Download(t.Context(), upstream.FileData{Path: path}, 1<<20)
		if err != nil {
			t.Fatalf("Download(%s) = %v", path, err)
		}
		io.ReadAll(d.Body)
		d.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	away, home := got["elsewhere.invalid/x.png"], got["app.invalid/gradio_api/file=/tmp/x.png"]
	if away == nil || home == nil {
		t.Fatalf("requests seen: %v, want both redirects followed", slices.Sorted(maps.Keys(got)))
	}
	for _, k := range []string{"X-Ip-Token", "X-Hf-Authorization", "Authorization", "Cookie"} {
		if v := away.Get(k); v != "" {
			t.Errorf("the other host got %s: %q", k, v)
		}
	}
	if home.Get("X-Ip-Token") != "visitor-jwt" || home.Get("X-Hf-Authorization") != "Bearer hf_secret" || home.Get("Cookie") != "visitor=v1" {
		t.Errorf("redirected within the Space, the download went with %v, want the token, the HF token and the cookie", home)
	}
}

// A download whose body stops coming fails after the idle limit.
func TestStalledDownloadFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeApp{}
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/gradio_api/file=/tmp/slow.png" {
				w.Write([]byte("partial"))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			f.ServeHTTP(w, r)
		})
		c, err := upstream.New(upstream.Config{Target: "http://app.invalid", HTTP: inMemory(h), StreamIdleTimeout: 45 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Download(context.Background(), upstream.FileData{Path: "/tmp/slow.png"}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Body.Close()
		start := time.Now()
		if _, err := io.ReadAll(d.Body); err == nil {
			t.Error("ReadAll of a stalled body = nil error")
		}
		if time.Since(start) != 45*time.Second {
			t.Errorf("gave up after %v, want 45s", time.Since(start))
		}
	})
}

// An upstream that echoes the credentials it got does not put them in errors.
func TestErrorsRedactEchoedTokens(t *testing.T) {
	f := &fakeApp{join: func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		http.Error(w, `{"detail":"bad token `+r.Header.Get("X-Ip-Token")+` / `+r.Header.Get("X-Hf-Authorization")+`"}`, http.StatusBadRequest)
	}}
	c := startFake(t, f, upstream.Config{HFToken: "hf_secret_value"})
	s := c.NewSession(http.Header{"X-Ip-Token": {"visitor-secret-jwt"}})
	defer s.Close()
	_, err := run(t.Context(), s, upstream.Call{Data: []any{"x"}})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Stream() = %v, want an error without the tokens", err)
	}
}
