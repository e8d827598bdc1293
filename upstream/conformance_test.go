package upstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/demospace"
	"github.com/spacerelay/spacerelay/upstream/gradiotest"
)

// A space is one implementation of testdata/gradio/SPEC.md under test: the
// Go demo Space or a real Gradio server.
type space struct {
	name string
	url  string
	kill func() // the server dies at once
	// dequeues: the server's /cancel takes a queued job out of the queue
	// (Gradio 6.14 and later, and the demo Space).
	dequeues bool
}

// Conformance scenarios run against the demo Space and every real Gradio
// version the test environment provides, so the fake cannot drift.
var scenarios = []struct {
	name string
	run  func(t *testing.T, sp space, c *upstream.Client)
}{
	{"discovery", testDiscovery},
	{"inputs", testInputs},
	{"event order", testEventOrder},
	{"image", testImage},
	{"preview", testPreview},
	{"tokens", testTokens},
	{"quota", testQuota},
	{"app error", testAppError},
	{"cancel queued", testCancelQueued},
	{"cancel running", testCancelRunning},
	{"cancel spares sibling", testCancelSparesSibling},
	{"close cancels", testCloseCancels},
	{"state", testState},
	{"upload", testUpload},
}

func TestConformance(t *testing.T) {
	t.Run("demo", func(t *testing.T) {
		t.Parallel()
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				sp := startDemo(t)
				sc.run(t, sp, newClient(t, sp))
			})
		}
	})
	for _, py := range gradiotest.Pythons(t) {
		t.Run("gradio-"+py.Version, func(t *testing.T) {
			t.Parallel()
			srv := gradiotest.Start(t, py, gradiotest.Options{StepSeconds: stepSeconds})
			sp := space{name: "gradio-" + py.Version, url: srv.URL, kill: srv.Kill, dequeues: !strings.HasPrefix(py.Version, "5.")}
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, sp, newClient(t, sp)) })
			}
		})
	}
}

// TestServerDies runs apart from the others: it kills its server.
func TestServerDies(t *testing.T) {
	t.Run("demo", func(t *testing.T) {
		t.Parallel()
		testServerDies(t, startDemo(t))
	})
	for _, py := range gradiotest.Pythons(t) {
		t.Run("gradio-"+py.Version, func(t *testing.T) {
			t.Parallel()
			srv := gradiotest.Start(t, py, gradiotest.Options{StepSeconds: stepSeconds})
			testServerDies(t, space{name: "gradio-" + py.Version, url: srv.URL, kill: srv.Kill})
		})
	}
}

const stepSeconds = 0.05

func startDemo(t *testing.T) space {
	sp := demospace.New(demospace.Config{StepDelay: time.Duration(stepSeconds * float64(time.Second))})
	srv := httptest.NewServer(sp)
	var once sync.Once
	kill := func() {
		once.Do(func() {
			srv.CloseClientConnections()
			sp.Close()
			srv.Close()
		})
	}
	t.Cleanup(kill)
	return space{name: "demo", url: srv.URL, kill: kill, dequeues: true}
}

func newClient(t *testing.T, sp space) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Config{Target: sp.url, StreamIdleTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// visitor returns a new visitor's session with a token of its own.
func visitor(t *testing.T, c *upstream.Client) (*upstream.Session, string) {
	tok := "visitor-" + uuid.NewString()
	s := c.NewSession(http.Header{"X-Ip-Token": {tok}})
	t.Cleanup(func() { s.Close() })
	return s, tok
}

func digest(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])[:12]
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// info decodes /generate's second output.
func info(t *testing.T, c *upstream.Completed) (out struct {
	Token  string `json:"token"`
	Prompt string `json:"prompt"`
	Steps  int    `json:"steps"`
}) {
	t.Helper()
	s, ok := c.Data[1].(string)
	if !ok {
		t.Fatalf("info output = %#v, want a JSON text", c.Data[1])
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("info output %q: %v", s, err)
	}
	return out
}

func testDiscovery(t *testing.T, sp space, c *upstream.Client) {
	api, err := c.API(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ep := range api.Endpoints {
		names = append(names, ep.Name)
	}
	// /add_message is queue=False: listed once the client serves direct calls.
	want := "/audio /bot_reply /chat /count /files /gallery /generate /preview /reset_count /restyle /ticks /video /whoami"
	if got := strings.Join(names, " "); got != want && got != "/add_message "+want {
		t.Errorf("endpoints = %s, want [/add_message] %s", got, want)
	}
	gen, err := api.Endpoint("/generate")
	if err != nil {
		t.Fatal(err)
	}
	wantIn := []struct {
		name, typ string
		required  bool
		def       string
	}{{"prompt", "string", true, "<nil>"}, {"steps", "", false, "8"}, {"width", "", false, "128"}, {"height", "", false, "128"}}
	if len(gen.Inputs) != len(wantIn) {
		t.Fatalf("/generate inputs = %+v, want %d", gen.Inputs, len(wantIn))
	}
	for i, w := range wantIn {
		p := gen.Inputs[i]
		if p.Name != w.name || p.Required != w.required || fmt.Sprint(p.Default) != w.def || (w.typ != "" && p.Type != w.typ) {
			t.Errorf("/generate input %d = %+v, want %+v", i, p, w)
		}
	}
	if len(gen.Outputs) != 2 || gen.Generator {
		t.Errorf("/generate outputs = %+v generator=%v, want 2 outputs, not a generator", gen.Outputs, gen.Generator)
	}
	prev, _ := api.Endpoint("/preview")
	if prev == nil || !prev.Generator {
		t.Errorf("/preview = %+v, want a generator", prev)
	}
	count, _ := api.Endpoint("/count")
	if count == nil || len(count.Inputs) != 0 {
		t.Errorf("/count = %+v, want no parameters (its State is hidden)", count)
	}
	if api.Prefix != "/gradio_api" || api.Protocol != "sse_v3" {
		t.Errorf("prefix, protocol = %q, %q, want /gradio_api, sse_v3", api.Prefix, api.Protocol)
	}
	if _, err := api.Endpoint("/nope"); upstream.CodeOf(err) != upstream.CodeUnknownEndpoint {
		t.Errorf("Endpoint(/nope) = %v, want unknown_endpoint", err)
	}
}

func testInputs(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	byPos := info(t, complete(t, ctx, s, upstream.Call{Endpoint: "/generate", Data: []any{"positional fox", 2}}))
	if byPos.Prompt != "positional fox" || byPos.Steps != 2 {
		t.Errorf("positional call reached the app as %+v", byPos)
	}
	byName := info(t, complete(t, ctx, s, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"steps": 1, "prompt": "named fox"}}))
	if byName.Prompt != "named fox" || byName.Steps != 1 {
		t.Errorf("named call reached the app as %+v", byName)
	}
	for _, call := range []upstream.Call{
		{Endpoint: "/generate", Inputs: map[string]any{"prompt": "x", "colour": "red"}},
		{Endpoint: "/generate", Inputs: map[string]any{"steps": 1}},
		{Endpoint: "/generate", Data: []any{"x", 1, 2, 3, 4, 5}},
		{Endpoint: "/generate", Data: []any{"x"}, Inputs: map[string]any{"prompt": "x"}},
	} {
		if _, err := run(ctx, s, call); upstream.CodeOf(err) != upstream.CodeInvalidInput {
			t.Errorf("Stream(%+v) = %v, want invalid_input", call, err)
		}
	}
}

func testEventOrder(t *testing.T, sp space, c *upstream.Client) {
	s, _ := visitor(t, c)
	evs, err := run(testCtx(t), s, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": "order", "steps": 3}})
	result(t, evs, err)
	if _, ok := evs[0].(*upstream.Accepted); !ok {
		t.Fatalf("first event = %T, want *Accepted", evs[0])
	}
	stage, lastIndex := 0, -1.0 // 0 accepted, 1 queued, 2 started, 3 done
	var logs []string
	for _, ev := range evs[1:] {
		switch ev := ev.(type) {
		case *upstream.Queued:
			if stage > 1 {
				t.Errorf("Queued after Started")
			}
			stage = 1
		case *upstream.Started:
			stage = 2
		case *upstream.Log:
			logs = append(logs, ev.Level+":"+ev.Title+":"+ev.Message)
		case *upstream.Progress:
			if stage != 2 || len(ev.Steps) != 1 || ev.Steps[0].Index == nil {
				t.Fatalf("Progress %+v at stage %d", ev, stage)
			}
			if *ev.Steps[0].Index < lastIndex || *ev.Steps[0].Length != 3 || *ev.Steps[0].Unit != "steps" {
				t.Errorf("Progress step %+v after index %v", ev.Steps[0], lastIndex)
			}
			lastIndex = *ev.Steps[0].Index
		case *upstream.Completed:
			stage = 3
		default:
			t.Errorf("unexpected %T", ev)
		}
	}
	if stage != 3 || lastIndex < 0 {
		t.Errorf("stage %d, last progress %v: want a start, progress and a result", stage, lastIndex)
	}
	want := "info:ZeroGPU queue:Waiting for a GPU to become available|success:ZeroGPU queue:Successfully acquired a GPU"
	if got := strings.Join(logs, "|"); got != want {
		t.Errorf("logs = %s, want %s", got, want)
	}
}

func testImage(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	res := complete(t, ctx, s, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": "a red fox", "steps": 1, "width": 40, "height": 24}})
	f, ok := upstream.AsFile(res.Data[0])
	if !ok {
		t.Fatalf("output 0 = %#v, want a file", res.Data[0])
	}
	img, mime := download(t, c, f, 1<<20)
	if mime != "image/png" {
		t.Errorf("MIME = %q, want image/png", mime)
	}
	if b := img.Bounds(); b.Dx() != 40 || b.Dy() != 24 {
		t.Errorf("image is %dx%d, want 40x24", b.Dx(), b.Dy())
	}
	sum := sha256.Sum256([]byte("a red fox")) // SPEC.md: pixel (0,0) is colour A
	r, g, b, _ := img.At(0, 0).RGBA()
	if got, want := [3]uint32{r >> 8, g >> 8, b >> 8}, [3]uint32{uint32(sum[0]), uint32(sum[1]), uint32(sum[2])}; got != want {
		t.Errorf("pixel (0,0) = %v, want %v", got, want)
	}
	if _, err := c.Download(ctx, f, 10); upstream.CodeOf(err) != upstream.CodeFileTooLarge {
		t.Errorf("Download(limit 10) = %v, want file_too_large", err)
	}
}

func download(t *testing.T, c *upstream.Client, f upstream.FileData, limit int64) (image.Image, string) {
	t.Helper()
	d, err := c.Download(testCtx(t), f, limit)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Body.Close()
	b, err := io.ReadAll(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("file %s does not decode as PNG: %v", d.Name, err)
	}
	return img, d.MIME
}

func testPreview(t *testing.T, sp space, c *upstream.Client) {
	s, _ := visitor(t, c)
	// Five previews: the last comes once, as the result (Issue 12), when
	// the Space ends the job within the hold.
	evs, err := run(testCtx(t), s, upstream.Call{Endpoint: "/preview", Inputs: map[string]any{"prompt": "preview fox", "steps": 5}})
	res := result(t, evs, err)
	partials, progress := 0, 0
	for _, ev := range evs {
		switch ev := ev.(type) {
		case *upstream.Partial:
			partials++
			f, ok := upstream.AsFile(ev.Data[0])
			if !ok {
				t.Fatalf("partial output = %#v, want a file", ev.Data[0])
			}
			download(t, c, f, 1<<20)
		case *upstream.Progress:
			// Of each step, as /generate's: a page counts the previews
			// with it ("preview 2 of 5"). Gradio sends only the latest
			// of those that come between two of its sends, so not all.
			progress++
			if bar := ev.Steps; len(bar) != 1 || bar[0].Length == nil || *bar[0].Length != 5 || bar[0].Unit == nil || *bar[0].Unit != "steps" {
				t.Errorf("Progress %+v, want one bar of 5 steps", ev.Steps)
			}
		}
	}
	if progress == 0 {
		t.Errorf("no progress: want /preview to report its steps")
	}
	// (That the last comes only as the result is TestLastPartialComesOnce's:
	// on a loaded machine the Space may take longer than the hold to end.)
	if partials < 2 || partials > 5 {
		t.Errorf("%d partial outputs, want at least 2 of 5 previews", partials)
	}
	f, ok := upstream.AsFile(res.Data[0])
	if !ok {
		t.Fatalf("result = %#v, want a file", res.Data[0])
	}
	download(t, c, f, 1<<20)
}

func testTokens(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	const visitors = 20
	var wg sync.WaitGroup
	errs := make(chan error, visitors)
	for i := range visitors {
		s, tok := visitor(t, c)
		wg.Go(func() {
			prompt := fmt.Sprintf("visitor %d", i)
			evs, err := run(ctx, s, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": prompt, "steps": 1}})
			if err != nil {
				errs <- err
				return
			}
			var got struct{ Token, Prompt string }
			_ = json.Unmarshal([]byte(evs[len(evs)-1].(*upstream.Completed).Data[1].(string)), &got)
			if got.Token != digest(tok) || got.Prompt != prompt {
				errs <- fmt.Errorf("%s: the app saw token %s, prompt %q; want %s", prompt, got.Token, got.Prompt, digest(tok))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testQuota(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	greedy, _ := visitor(t, c)
	modest, _ := visitor(t, c)
	_, err := run(ctx, greedy, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": "greedy", "steps": 75}})
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeQuotaExceeded {
		t.Fatalf("over-quota job: %v, want quota_exceeded", err)
	}
	if e.RetryAfter != 150*time.Second || !strings.Contains(e.Message, "75s requested vs. 60s left") || e.Title != "ZeroGPU quota exceeded" {
		t.Errorf("quota error = %+v, want 75s vs 60s, retry after 2m30s", e)
	}
	complete(t, ctx, modest, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": "modest", "steps": 1}})
}

func testAppError(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	_, err := run(ctx, s, upstream.Call{Endpoint: "/generate", Data: []any{"raise:a <i>cat</i>"}})
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeAppError || e.Title != "Bad prompt" || e.Message != "Cannot draw a cat" {
		t.Errorf("raise: %+v, want upstream_error Bad prompt: Cannot draw a cat", err)
	}
	_, err = run(ctx, s, upstream.Call{Endpoint: "/generate", Data: []any{"crash:secret detail"}})
	if !errors.As(err, &e) || e.Code != upstream.CodeAppError || e.Message == "" || strings.Contains(e.Message, "secret") {
		t.Errorf("crash: %+v, want upstream_error with a neutral message", err)
	}
}

// started runs call in the background and returns once it has started
// (with a first progress step), and a func that waits for its end.
func started(t *testing.T, ctx context.Context, s *upstream.Session, call upstream.Call) (wait func() error) {
	t.Helper()
	up := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- s.Stream(ctx, call, func(ev upstream.Event) error {
			if _, ok := ev.(*upstream.Progress); ok {
				once.Do(func() { close(up) })
			}
			return nil
		})
	}()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("job ended before it started: %v", err)
	}
	return func() error { return <-done }
}

// queued runs call in the background and returns once it is queued.
func queued(t *testing.T, ctx context.Context, s *upstream.Session, call upstream.Call) (wait func() error) {
	t.Helper()
	up := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- s.Stream(ctx, call, func(ev upstream.Event) error {
			if q, ok := ev.(*upstream.Queued); ok && q.Rank >= 0 {
				once.Do(func() { close(up) })
			}
			return nil
		})
	}()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("job ended before it was queued: %v", err)
	}
	return func() error { return <-done }
}

func gen(prompt string, steps int) upstream.Call {
	return upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": prompt, "steps": steps}}
}

func testCancelQueued(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	a, _ := visitor(t, c)
	b, _ := visitor(t, c)
	waitLong := started(t, ctx, a, gen("long "+uuid.NewString(), 20))
	short := "queued " + uuid.NewString()
	bctx, cancel := context.WithCancel(ctx)
	// Long enough that, on Gradio before 6.14, the cancel sent when it
	// starts lands while it runs, however loaded the machine.
	waitShort := queued(t, bctx, b, gen(short, 20))
	cancel()
	if err := waitShort(); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled job: %v, want context.Canceled", err)
	}
	if err := waitLong(); err != nil {
		t.Errorf("the running job: %v", err)
	}
	// Gradio before 6.14 cannot take a job out of its queue: the client
	// cancels it again as soon as it starts, so it never completes.
	j := strings.Join(waitJournalEnd(t, sp, short), " ")
	t.Logf("journal of the cancelled queued job: %q", j)
	if j != "" && (sp.dequeues || j != "started cancelled") {
		t.Errorf("journal of the cancelled queued job = %v, want it never started", j)
	}
}

func testCancelRunning(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	prompt := "running " + uuid.NewString()
	jctx, cancel := context.WithCancel(ctx)
	wait := started(t, jctx, s, gen(prompt, 40))
	cancel()
	if err := wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled job: %v, want context.Canceled", err)
	}
	waitJournal(t, sp, prompt, "started cancelled")
}

// Gradio's /cancel cancels every running job of the function in the
// session: cancelling a queued job must not take its running sibling down.
func testCancelSparesSibling(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	long := "sibling " + uuid.NewString()
	waitLong := started(t, ctx, s, gen(long, 20))
	qctx, cancel := context.WithCancel(ctx)
	short := "doomed " + uuid.NewString()
	waitShort := queued(t, qctx, s, gen(short, 40))
	cancel()
	if err := waitShort(); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled job: %v, want context.Canceled", err)
	}
	if err := waitLong(); err != nil {
		t.Errorf("the running sibling: %v, want its result", err)
	}
	waitJournal(t, sp, long, "started completed")
	for _, e := range waitJournalEnd(t, sp, short) {
		if e == "completed" {
			t.Errorf("the cancelled job completed")
		}
	}
}

func testCloseCancels(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	running, waiting := "closing "+uuid.NewString(), "closing queued "+uuid.NewString()
	waitRunning := started(t, ctx, s, gen(running, 40))
	waitQueued := queued(t, ctx, s, gen(waiting, 1))
	s.Close()
	for _, err := range []error{waitRunning(), waitQueued()} {
		if !errors.Is(err, upstream.ErrClosed) {
			t.Errorf("job of a closed session: %v, want ErrClosed", err)
		}
	}
	waitJournal(t, sp, running, "started cancelled")
	// Gradio before 6.14 cannot take a job out of its queue: the closed
	// stream drops it, once Gradio notices; until then it may start.
	j := strings.Join(waitJournalEnd(t, sp, waiting), " ")
	if j != "" && (sp.dequeues || j != "started cancelled") {
		t.Errorf("journal of the queued job = %v, want it never started", j)
	}
}

func testState(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	one, _ := visitor(t, c)
	two, _ := visitor(t, c)
	count := func(s *upstream.Session) string {
		evs, err := run(ctx, s, upstream.Call{Endpoint: "/count"})
		return fmt.Sprint(result(t, evs, err).Data)
	}
	for _, want := range []string{"[1]", "[2]", "[3]"} {
		if got := count(one); got != want {
			t.Errorf("count in session one = %s, want %s", got, want)
		}
	}
	if got := count(two); got != "[1]" {
		t.Errorf("count in session two = %s, want [1]: state leaked between sessions", got)
	}
}

func testServerDies(t *testing.T, sp space) {
	c := newClient(t, sp)
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	wait := started(t, ctx, s, gen("doomed "+uuid.NewString(), 59))
	sp.kill()
	errc := make(chan error, 1)
	go func() { errc <- wait() }()
	select {
	case err := <-errc:
		if upstream.CodeOf(err) != upstream.CodeUnavailable {
			t.Errorf("job on a dead server: %v, want upstream_unavailable", err)
		}
	case <-time.After(10 * time.Second): // a hang, not a timing target
		t.Fatal("job on a dead server did not end within 10 s")
	}
}

// journal returns the events the Space recorded for prompt.
func journal(t *testing.T, sp space, prompt string) []string {
	t.Helper()
	resp, err := http.Get(sp.url + "/fixture/journal")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var entries []struct{ Event, Prompt string }
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, e := range entries {
		if e.Prompt == prompt {
			evs = append(evs, e.Event)
		}
	}
	return evs
}

// waitJournal waits until the journal of prompt reads want (space-separated).
func waitJournal(t *testing.T, sp space, prompt, want string) {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = journal(t, sp, prompt); strings.Join(got, " ") == want {
			return
		}
	}
	t.Errorf("journal of %q = %v, want %s", prompt, got, want)
}

// waitJournalEnd waits until prompt's journal shows an end, or for two
// seconds when nothing happens, and returns it.
func waitJournalEnd(t *testing.T, sp space, prompt string) []string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = journal(t, sp, prompt)
		if n := len(got); n > 0 && got[n-1] != "started" {
			break
		}
	}
	return got
}

// An uploaded file comes back with Gradio's FileData meta, and the app
// serves the same bytes from the path it gave.
func testUpload(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	content := []byte("not really a PNG, " + uuid.NewString())
	v, err := c.Upload(ctx, "dir/cat.png", bytes.NewReader(content), 1<<20)
	if err != nil {
		t.Fatalf("Upload() = %v", err)
	}
	f, ok := upstream.AsFile(v)
	if !ok || f.OrigName != "cat.png" {
		t.Fatalf("Upload() = %#v, want a FileData named cat.png", v)
	}
	d, err := c.Download(ctx, f, 1<<20)
	if err != nil {
		t.Fatalf("Download(uploaded) = %v", err)
	}
	defer d.Body.Close()
	got, err := io.ReadAll(d.Body)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("uploaded file reads back %q, %v; want %q", got, err, content)
	}
	if _, err := c.Upload(ctx, "big.bin", bytes.NewReader(make([]byte, 2048)), 1024); upstream.CodeOf(err) != upstream.CodeFileTooLarge {
		t.Errorf("Upload(over the limit) = %v, want file_too_large", err)
	}
}
