package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

func testHello(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	tok := newToken()
	c := visit(t, ctx, e.relay, tok)
	if got := c.conn.Subprotocol(); got != "spacerelay.v1" {
		t.Errorf("subprotocol = %q, want spacerelay.v1 (offered)", got)
	}
	h := c.hello
	if h.Protocol != 1 {
		t.Errorf("hello protocol = %d, want 1", h.Protocol)
	}
	if _, err := uuid.Parse(h.Session); err != nil {
		t.Errorf("hello session = %q, want a UUID: %v", h.Session, err)
	}
	checkEndpoints(t, h.Endpoints)
	if want := (helloLimits{4, 65536, 20971520}); h.Limits == nil || *h.Limits != want {
		t.Errorf("hello limits = %+v, want %+v (the flags)", h.Limits, want)
	}
	var raw struct{ Token map[string]json.RawMessage }
	if err := json.Unmarshal(h.raw, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw.Token["present"]) != "true" || string(raw.Token["expires_at"]) != "null" {
		t.Errorf("hello token = %s, want present true and expires_at null for a token that is not a JWT", h.raw)
	}
	if bytes.Contains(h.raw, []byte(tok)) {
		t.Errorf("hello %s contains the token", h.raw)
	}

	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	jwt := visit(t, ctx, e.relay, fakeJWT(exp))
	if got := jwt.hello.Token; got == nil || !got.Present || got.ExpiresAt == nil {
		t.Errorf("hello for a JWT: %s, want token.expires_at", jwt.hello.raw)
	} else if at, err := time.Parse(time.RFC3339, *got.ExpiresAt); err != nil || !at.Equal(exp) {
		t.Errorf("hello token.expires_at = %q, want %s (the JWT's exp)", *got.ExpiresAt, exp.UTC().Format(time.RFC3339))
	}
	if jwt.hello.Session == h.Session {
		t.Errorf("two sockets share session id %s", h.Session)
	}

	// Refusals (PROTOCOL.md section 1). A foreign Origin gets no socket:
	// another site, or the allowed site's host with another scheme than
	// its pattern's (--allowed-origins https://app.example.com).
	for _, origin := range []string{"https://elsewhere.example", "http://app.example.com"} {
		h := tokenHeader(newToken())
		h.Set("Origin", origin)
		c, resp, err := dialUpgrade(ctx, e.relay, h)
		if err == nil {
			c.drop()
			t.Errorf("Origin %s: the socket was accepted", origin)
			continue
		}
		checkRefusal(t, "Origin "+origin, resp, http.StatusForbidden, "forbidden_origin")
	}
	allowed := tokenHeader(newToken())
	allowed.Set("Origin", "https://app.example.com")
	if c, _, err := dialUpgrade(ctx, e.relay, allowed); err != nil {
		t.Errorf("Origin https://app.example.com (allowed): %v", err)
	} else if m, err := c.next(); err != nil || m.Type != "hello" {
		t.Errorf("Origin https://app.example.com (allowed): first message %s, %v; want hello", m, err)
		c.drop()
	} else {
		c.close()
	}
	// A socket the relay does not take is closed at once with a code a
	// page can read.
	checkClosed(t, ctx, "no token under --token-policy require", e.relay, tokenHeader(""), 4401, "missing_token")
	tab := newToken()
	for range 4 { // --max-sessions-per-token's default
		visit(t, ctx, e.relay, tab)
	}
	checkClosed(t, ctx, "a fifth tab of one visitor", e.relay, tokenHeader(tab), 4429, "too_many_sessions retry_after=10")
}

// checkRefusal checks an upgrade refused with an HTTP status and a JSON
// error body (PROTOCOL.md section 1).
func checkRefusal(t *testing.T, name string, resp *http.Response, status int, code string) {
	t.Helper()
	if resp == nil {
		t.Errorf("%s: no HTTP response, want %d %s", name, status, code)
		return
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	b := new(bytes.Buffer)
	b.ReadFrom(resp.Body)
	if err := json.Unmarshal(b.Bytes(), &body); err != nil || resp.StatusCode != status || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("%s: refused with %d %s, want %d with {\"error\":{\"code\":%q,\"message\":…}}", name, resp.StatusCode, b, status, code)
	}
}

// checkClosed checks a socket refused by its close (PROTOCOL.md section
// 1): accepted, then closed with code and reason before any message.
func checkClosed(t *testing.T, ctx context.Context, name string, r *relayProc, h http.Header, code websocket.StatusCode, reason string) {
	t.Helper()
	c, resp, err := dialUpgrade(ctx, r, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Errorf("%s: %v (HTTP %d), want a socket closed with %d %s", name, err, status, code, reason)
		return
	}
	defer c.drop()
	m, err := c.read()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Reason != reason {
		t.Errorf("%s: first read %s, %v; want the close %d %q and nothing before", name, m, err, code, reason)
	}
}

// testEdge checks the relay's HTTP routes besides the socket: /metrics only
// on --metrics-listen, /readyz as JSON, and the module with CORS for an
// allowed origin only.
func testEdge(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	if code, _, err := httpGet(ctx, e.relay.url+"/metrics"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /metrics on the main port = %d, %v; want 404 (it is on --metrics-listen)", code, err)
	}
	code, body, err := httpGet(ctx, e.relay.url+"/readyz")
	var ready map[string]any
	if err != nil || code != http.StatusOK || json.Unmarshal(body, &ready) != nil ||
		ready["ready"] != true || ready["state"] != "ready" || ready["message"] == "" {
		t.Errorf("GET /readyz = %d %s, %v; want 200 with {\"ready\":true,\"state\":\"ready\",\"message\":…}", code, body, err)
	}
	for origin, want := range map[string]string{
		"https://app.example.com":   "https://app.example.com",
		"http://app.example.com":    "",
		"https://elsewhere.example": "",
	} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			req, err := http.NewRequestWithContext(ctx, method, e.relay.url+"/spacerelay.js", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", origin)
			req.Header.Set("Access-Control-Request-Method", "GET")
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want || resp.StatusCode >= 300 {
				t.Errorf("%s /spacerelay.js from %s: %d, Access-Control-Allow-Origin %q; want %q", method, origin, resp.StatusCode, got, want)
			}
		}
	}
}

func checkEndpoints(t *testing.T, eps []endpointInfo) {
	t.Helper()
	var names []string
	for _, ep := range eps {
		names = append(names, ep.Name)
	}
	slices.Sort(names)
	// The test Space of testdata/gradio/SPEC.md; /add_message (queue=False)
	// is listed once discovery serves direct calls.
	wantNames := "/audio /bot_reply /chat /count /files /gallery /generate /preview /reset_count /restyle /ticks /video /whoami"
	if got := strings.Join(names, " "); got != wantNames && got != "/add_message "+wantNames {
		t.Errorf("hello endpoints = %s, want [/add_message] %s", got, wantNames)
	}
	i := slices.IndexFunc(eps, func(ep endpointInfo) bool { return ep.Name == "/generate" })
	if i < 0 {
		return
	}
	gen := eps[i]
	type param struct {
		name, typ string
		required  bool
		def       string
	}
	var got []param
	for _, in := range gen.Inputs {
		got = append(got, param{in.Name, in.Type, in.Required, fmt.Sprint(in.Default)})
	}
	want := []param{{"prompt", "string", true, "<nil>"}, {"steps", "", false, "8"}, {"width", "", false, "128"}, {"height", "", false, "128"}}
	if len(got) != len(want) {
		t.Fatalf("/generate inputs = %+v, want %+v", got, want)
	}
	for i, w := range want {
		if w.typ == "" {
			w.typ = got[i].typ // a number's type is the upstream's to name
		}
		if got[i] != w {
			t.Errorf("/generate input %d = %+v, want %+v", i, got[i], w)
		}
	}
	if len(gen.Outputs) != 2 || gen.Outputs[0].Component != "Image" {
		t.Errorf("/generate outputs = %+v, want 2, an Image first", gen.Outputs)
	}
	if i := slices.IndexFunc(eps, func(ep endpointInfo) bool { return ep.Name == "/count" }); i >= 0 && len(eps[i].Inputs) != 0 {
		t.Errorf("/count inputs = %+v, want none (its gr.State is hidden)", eps[i].Inputs)
	}
}

// generateAsVisitor runs /generate with steps 1 for a new visitor on its own socket,
// and checks that the Space saw the visitor's token and prompt.
func generateAsVisitor(ctx context.Context, r *relayProc, label string) error {
	tok := newToken()
	c, err := dialRelay(ctx, r, tok)
	if err != nil {
		return fmt.Errorf("%s: %v", label, err)
	}
	defer c.drop()
	prompt := label + " " + uuid.NewString()
	if err := c.submit("g", "/generate", map[string]any{"prompt": prompt, "steps": 1}); err != nil {
		return err
	}
	msgs, err := c.job("g")
	if err != nil {
		return fmt.Errorf("%s: %v", label, err)
	}
	if _, err := checkJob(msgs); err != nil {
		return fmt.Errorf("%s: %v\n%s", label, err, dump(msgs))
	}
	res := msgs[len(msgs)-1]
	if res.Type != "result" {
		return fmt.Errorf("%s: ended with %s, want a result", label, res)
	}
	got, err := generateInfo(res)
	if err != nil {
		return fmt.Errorf("%s: %v", label, err)
	}
	if got.Token != digest(tok) || got.Prompt != prompt {
		return fmt.Errorf("%s: the Space saw token %s and prompt %q, want %s and %q", label, got.Token, got.Prompt, digest(tok), prompt)
	}
	return c.close()
}

func testTokens(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	type visitor struct {
		c       *wsClient
		tok     string
		prompts []string
	}
	var vs []*visitor
	for range 2 {
		tok := newToken()
		vs = append(vs, &visitor{c: visit(t, ctx, e.relay, tok), tok: tok})
	}
	// Both visitors use the same job ids: ids belong to a session.
	for _, id := range []string{"g1", "g2"} {
		for _, v := range vs {
			p := "token " + id + " " + uuid.NewString()
			v.prompts = append(v.prompts, p)
			mustSubmit(t, v.c, id, "/generate", map[string]any{"prompt": p, "steps": 1})
		}
	}
	for _, v := range vs {
		mustSubmit(t, v.c, "who", "/whoami", map[string]any{})
		for i, id := range []string{"g1", "g2"} {
			got, err := generateInfo(mustResult(t, v.c, id))
			if err != nil {
				t.Fatal(err)
			}
			if got.Token != digest(v.tok) || got.Prompt != v.prompts[i] {
				t.Errorf("job %s of visitor %s: the Space saw token %s, prompt %q", id, digest(v.tok), got.Token, got.Prompt)
			}
		}
		res := mustResult(t, v.c, "who")
		if len(res.Data) != 1 || string(res.Data[0]) != `"`+digest(v.tok)+`"` {
			t.Errorf("/whoami of visitor %s = %s", digest(v.tok), res)
		}
	}
	if e.hasJournal() {
		checkJournalSessions(t, ctx, e.space, vs[0].tok, vs[0].prompts, vs[1].tok, vs[1].prompts)
	}

	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs <- generateAsVisitor(ctx, e.relay, fmt.Sprintf("visitor %d", i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// checkJournalSessions checks, in the Space's journal, that each visitor's
// jobs came with its token and in one upstream session of its own
// (PROTOCOL.md guarantee 4).
func checkJournalSessions(t *testing.T, ctx context.Context, space string, tokA string, promptsA []string, tokB string, promptsB []string) {
	t.Helper()
	sessions := func(tok string, prompts []string) map[string]bool {
		seen := make(map[string]bool)
		for _, p := range prompts {
			entries, err := readJournal(ctx, space, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range entries {
				if en.Token != digest(tok) {
					t.Errorf("journal: %+v, want token %s", en, digest(tok))
				}
				seen[en.Session] = true
			}
		}
		if len(seen) != 1 {
			t.Errorf("the jobs of visitor %s ran in upstream sessions %v, want one", digest(tok), seen)
		}
		return seen
	}
	a, b := sessions(tokA, promptsA), sessions(tokB, promptsB)
	for s := range a {
		if b[s] {
			t.Errorf("two visitors share the upstream session %s", s)
		}
	}
}

func testQuota(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	greedy, modest := e.visitor(t, ctx), e.visitor(t, ctx)
	pg, pm := "greedy "+uuid.NewString(), "modest "+uuid.NewString()
	// The test Space gives each token 60 s and has it wait 10 s per second
	// missing (SPEC.md). The relay's embedded demo is more generous and
	// refills sooner: there, only the message's own wait is checked.
	steps := 75
	if !e.hasJournal() {
		steps = 3600
	}
	mustSubmit(t, greedy, "q", "/generate", map[string]any{"prompt": pg, "steps": steps})
	mustSubmit(t, modest, "m", "/generate", map[string]any{"prompt": pm, "steps": 3})

	got := mustError(t, greedy, "q", "quota_exceeded")
	wait, ok := tryAgainIn(got.Message)
	if got.Title != "ZeroGPU quota exceeded" || !ok || got.RetryAfter == nil || *got.RetryAfter != wait.Seconds() {
		t.Errorf("quota error = %s, want title \"ZeroGPU quota exceeded\" and retry_after the message's wait in seconds", got)
	}
	if e.hasJournal() && (wait != 150*time.Second || !strings.Contains(got.Message, "75s requested vs. 60s left")) {
		t.Errorf("quota error = %s, want 75s requested vs. 60s left, retry_after 150", got)
	}
	if in, err := generateInfo(mustResult(t, modest, "m")); err != nil || in.Steps != 3 {
		t.Errorf("the other visitor's job: %+v, %v", in, err)
	}
	// The session goes on.
	mustSubmit(t, greedy, "q2", "/generate", map[string]any{"prompt": pg + " again", "steps": 1})
	if _, err := generateInfo(mustResult(t, greedy, "q2")); err != nil {
		t.Error(err)
	}
	if e.hasJournal() {
		for p, want := range map[string]string{pg: "started quota", pm: "started completed", pg + " again": "started completed"} {
			if got, err := waitJournal(ctx, e.space, p, want, time.Now(), 5*time.Second); err != nil {
				t.Errorf("%v (got %q)", err, got)
			}
		}
	}
}

// tryAgainIn reads the wait from a ZeroGPU quota message: "… Try again in
// 0:02:30." or "… in 1 day, 2:03:04." (Python's str(timedelta)).
func tryAgainIn(msg string) (time.Duration, bool) {
	_, rest, ok := strings.Cut(msg, "Try again in ")
	if !ok {
		return 0, false
	}
	var days, h, m, sec int
	if strings.Contains(rest, "day") {
		if _, err := fmt.Sscanf(rest, "%d day", &days); err != nil {
			return 0, false
		}
		_, rest, _ = strings.Cut(rest, ", ")
	}
	if _, err := fmt.Sscanf(rest, "%d:%d:%d", &h, &m, &sec); err != nil {
		return 0, false
	}
	return time.Duration(((days*24+h)*60+m)*60+sec) * time.Second, true
}

func testEvents(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	prompt := "events " + uuid.NewString()
	mustSubmit(t, c, "e", "/generate", map[string]any{"prompt": prompt, "steps": 3, "width": 40, "height": 24})
	msgs, files := mustJob(t, c, "e")
	res := msgs[len(msgs)-1]
	if res.Type != "result" {
		t.Fatalf("job ended with %s, want a result", res)
	}
	// SPEC.md: the logs, then the progress of each step, then the image.
	var seq []string
	for _, m := range msgs {
		if len(seq) == 0 || seq[len(seq)-1] != m.Type {
			seq = append(seq, m.Type)
		}
	}
	if got := strings.Join(seq, " "); strings.Replace(got, " queued ", " ", 1) != "accepted started log progress file result" {
		t.Errorf("message types = %s, want accepted, queued*, started, log*, progress*, file, result", got)
	}
	var logs []string
	last, progress := -1.0, 0
	for _, m := range msgs {
		switch m.Type {
		case "log":
			logs = append(logs, m.Level+":"+m.Title+":"+m.Message)
		case "progress":
			progress++
			if len(m.Steps) != 1 || m.Steps[0].Index == nil || m.Steps[0].Length == nil || m.Steps[0].Unit == nil {
				t.Fatalf("progress %s, want one step with index, length and unit", m)
			}
			s := m.Steps[0]
			if *s.Index <= last || *s.Length != 3 || *s.Unit != "steps" {
				t.Errorf("progress %s after index %v, want a greater index of 3 steps", m, last)
			}
			last = *s.Index
		}
	}
	want := "info:ZeroGPU queue:Waiting for a GPU to become available|success:ZeroGPU queue:Successfully acquired a GPU"
	if got := strings.Join(logs, "|"); got != want {
		t.Errorf("logs = %s, want %s", got, want)
	}
	if progress == 0 {
		t.Errorf("no progress message:\n%s", dump(msgs))
	}
	if len(res.Data) != 2 {
		t.Fatalf("result %s, want 2 outputs", res)
	}
	id, ok := fileRef(res.Data[0])
	if !ok || len(files) != 1 {
		t.Fatalf("result %s with %d files, want data[0] {\"file\": id} of the one file message", res, len(files))
	}
	checkImage(t, files[id], prompt, 40, 24)
	if in, err := generateInfo(res); err != nil || in.Prompt != prompt || in.Steps != 3 {
		t.Errorf("info = %+v, %v", in, err)
	}
	if err := c.quiet("e"); err != nil {
		t.Error(err)
	}
}

// checkImage decodes a relayed file as the test Space's image of prompt,
// w x h, and checks pixel (0, 0), which is colour A (SPEC.md).
func checkImage(t *testing.T, f relayMsg, prompt string, w, h int) image.Image {
	t.Helper()
	img, err := decodePNG(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("image %s is %dx%d, want %dx%d", f.File, b.Dx(), b.Dy(), w, h)
	}
	sum := sha256.Sum256([]byte(prompt))
	if got, want := rgb(img, 0, 0), [3]uint32{uint32(sum[0]), uint32(sum[1]), uint32(sum[2])}; got != want {
		t.Errorf("image %s: pixel (0,0) = %v, want %v", f.File, got, want)
	}
	return img
}

func rgb(img image.Image, x, y int) [3]uint32 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint32{r >> 8, g >> 8, b >> 8}
}

func testPreview(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	prompt := "preview " + uuid.NewString()
	// Six previews: the last comes once, as the result (Issue 12), and up
	// to five as partial messages.
	mustSubmit(t, c, "p", "/preview", map[string]any{"prompt": prompt, "steps": 6})
	msgs, files := mustJob(t, c, "p")
	var partials []relayMsg
	for _, m := range msgs {
		if m.Type == "partial" {
			partials = append(partials, m)
		}
	}
	if len(partials) < 2 || len(partials) > 6 {
		t.Fatalf("%d partial messages, want at least 2 of 6 previews:\n%s", len(partials), dump(msgs))
	}
	// The last preview's image crosses the socket once (Issue 12): as the
	// result's, or, should the Space end the job after the relay's hold,
	// as the last partial's, to which the result then refers.
	fileMsgs := 0
	for _, m := range msgs {
		if m.Type == "file" {
			fileMsgs++
		}
	}
	if fileMsgs != len(partials)+1 && fileMsgs != len(partials) {
		t.Errorf("%d files for %d partials and a result: an image was sent twice", fileMsgs, len(partials))
	}
	black := [3]uint32{}
	for i, p := range append(partials, msgs[len(msgs)-1]) {
		id, ok := "", len(p.Data) == 1
		if ok {
			id, ok = fileRef(p.Data[0])
		}
		if !ok {
			t.Fatalf("%s, want data [{\"file\": id}]", p)
		}
		img := checkImage(t, files[id], prompt, 128, 128)
		// The first preview draws at most the top five sixths, the result
		// everything: full values, not Gradio's diffs.
		first, last := i == 0, i == len(partials)
		if bottom := rgb(img, 0, 127); (first && bottom != black) || (last && bottom == black) {
			t.Errorf("%s: bottom-left pixel %v (first preview %v, result %v)", p, bottom, first, last)
		}
	}
	if last := msgs[len(msgs)-1]; last.Type != "result" {
		t.Errorf("job ended with %s, want a result", last)
	}
}

func testState(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	one, two := e.visitor(t, ctx), e.visitor(t, ctx)
	count := func(c *wsClient, id string) string {
		if err := c.send(map[string]any{"type": "submit", "id": id, "endpoint": "/count", "data": []any{}}); err != nil {
			t.Fatal(err)
		}
		res := mustResult(t, c, id)
		var n []float64
		if err := json.Unmarshal(res.raw, &struct{ Data *[]float64 }{&n}); err != nil {
			t.Fatalf("%s: %v", res, err)
		}
		return fmt.Sprint(n)
	}
	for i, want := range []string{"[1]", "[2]", "[3]"} {
		if got := count(one, fmt.Sprint("c", i)); got != want {
			t.Errorf("count on socket one = %s, want %s", got, want)
		}
	}
	if got := count(two, "c"); got != "[1]" {
		t.Errorf("count on socket two = %s, want [1]: upstream state leaked between sockets", got)
	}
}

func testErrors(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	// Each socket gets only a few bad messages, well short of a flood.
	t.Run("framing", func(t *testing.T) {
		c := e.visitor(t, ctx)
		for _, tc := range []struct{ send, id string }{
			{`{"type":"submit","id":"x1",`, ""},
			{`{"type":"teleport"}`, ""},
			{`{"type":"teleport","id":"t1"}`, "t1"},
		} {
			if err := c.sendRaw(tc.send); err != nil {
				t.Fatal(err)
			}
			m := mustNext(t, c)
			if m.Type != "error" || m.Code != "bad_request" || (m.ID != nil && (tc.id == "" || m.id() != tc.id)) {
				t.Errorf("sent %s: got %s, want a bad_request error (without an id but %q)", tc.send, m, tc.id)
			}
		}
		if err := c.quiet(""); err != nil { // ping, pong
			t.Error(err)
		}
	})
	t.Run("ids", func(t *testing.T) {
		c := e.visitor(t, ctx)
		long := strings.Repeat("a", 65)
		for _, id := range []string{"bad id!", long, ""} {
			mustSubmit(t, c, id, "/generate", map[string]any{"prompt": "never"})
			m := mustNext(t, c)
			if m.Type != "error" || m.ID != nil || m.Code != "bad_request" || !strings.Contains(m.Message, id) {
				t.Errorf("submit with id %q: got %s, want a bad_request error without an id naming it", id, m)
			}
		}
		// An id held by an unfinished job is refused without an id, and
		// the job that holds it goes on to its one result.
		prompt := "dup " + uuid.NewString()
		mustSubmit(t, c, "dup", "/generate", map[string]any{"prompt": prompt, "steps": 10})
		accepted := mustUntil(t, c, "dup", "accepted", func(m relayMsg) bool { return m.Type == "accepted" })
		mustSubmit(t, c, "dup", "/generate", map[string]any{"prompt": prompt + " twin", "steps": 1})
		m, err := c.expect(func(m relayMsg) bool { return m.ID == nil || m.terminal() })
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != "error" || m.ID != nil || !strings.Contains(m.Message, "dup") {
			t.Errorf("second submit of a running id: got %s, want an error without an id naming it", m)
		}
		rest, err := c.job("dup")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkJob(append(accepted, rest...)); err != nil {
			t.Fatalf("the job that held the id: %v\n%s", err, dump(rest))
		}
		if in, err := generateInfo(rest[len(rest)-1]); err != nil || in.Prompt != prompt {
			t.Errorf("the job that held the id ended with %+v, %v", in, err)
		}
	})
	t.Run("jobs", func(t *testing.T) {
		c := e.visitor(t, ctx)
		for _, tc := range []struct {
			id    string
			msg   map[string]any
			codes []string
		}{
			{"e1", map[string]any{"endpoint": "/nope", "data": []any{"x"}}, []string{"unknown_endpoint"}},
			{"e2", map[string]any{"endpoint": "/generate", "inputs": map[string]any{"prompt": "x", "colour": "red"}}, []string{"invalid_input"}},
			{"e3", map[string]any{"endpoint": "/generate", "inputs": map[string]any{"prompt": "x"}, "data": []any{"x"}}, []string{"bad_request", "invalid_input"}},
			{"e4", map[string]any{"data": []any{"x"}}, []string{"bad_request", "unknown_endpoint"}}, // four endpoints, no default
			{"e5", map[string]any{"endpoint": "/generate", "data": []any{"raise:a <i>cat</i>", 1}}, []string{"upstream_error"}},
			{"e6", map[string]any{"endpoint": "/generate", "data": []any{"crash:secret detail", 1}}, []string{"upstream_error"}},
		} {
			tc.msg["type"], tc.msg["id"] = "submit", tc.id
			if err := c.send(tc.msg); err != nil {
				t.Fatal(err)
			}
			m := mustError(t, c, tc.id, tc.codes...)
			switch tc.id {
			case "e5":
				if m.Title != "Bad prompt" || m.Message != "Cannot draw a cat" {
					t.Errorf("app error = %s, want title Bad prompt, message \"Cannot draw a cat\" (HTML stripped)", m)
				}
			case "e6":
				if m.Message == "" || strings.Contains(m.Message, "secret") {
					t.Errorf("hidden app error = %s, want a neutral message", m)
				}
			}
		}
		// Unknown fields are ignored, and the session goes on.
		prompt := "after errors " + uuid.NewString()
		err := c.send(map[string]any{"type": "submit", "id": "ok", "endpoint": "/generate", "future": true,
			"inputs": map[string]any{"prompt": prompt, "steps": 1}})
		if err != nil {
			t.Fatal(err)
		}
		if in, err := generateInfo(mustResult(t, c, "ok")); err != nil || in.Prompt != prompt {
			t.Errorf("job after the errors: %+v, %v", in, err)
		}
	})
}

func mustNext(t *testing.T, c *wsClient) relayMsg {
	t.Helper()
	m, err := c.next()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testTooManyJobs(t *testing.T, e *upstreamEnv) {
	ctx := testCtx(t)
	c := e.visitor(t, ctx)
	for i, steps := range []int{10, 1, 1, 1, 1} { // --max-jobs 4
		mustSubmit(t, c, fmt.Sprint("j", i), "/generate", map[string]any{"prompt": "many " + uuid.NewString(), "steps": steps})
	}
	mustError(t, c, "j4", "too_many_jobs")
	for i := range 4 {
		mustResult(t, c, fmt.Sprint("j", i))
	}
	// The finished jobs free their places.
	mustSubmit(t, c, "j5", "/generate", map[string]any{"prompt": "many " + uuid.NewString(), "steps": 1})
	mustResult(t, c, "j5")
}
