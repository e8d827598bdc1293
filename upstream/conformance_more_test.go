package upstream_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/demospace"
)

// The scenarios of the endpoints SPEC.md added for issues 11, 12 and 13,
// run like the others against the demo Space and every real Gradio.
func init() {
	scenarios = append(scenarios, []struct {
		name string
		run  func(t *testing.T, sp space, c *upstream.Client)
	}{
		{"restyle upload", testRestyleUpload},
		{"restyle refusals", testRestyleRefusals},
		{"chat", testChat},
		{"chat interface", testChatInterface},
		{"generator duration", testGeneratorDuration},
		{"state-only output", testStateOnlyOutput},
		{"rest call", testRESTCall},
		{"expired token", testExpiredToken},
		{"describes like gradio", testDescribesLikeGradio},
	}...)
}

// A result of /generate, downloaded and uploaded again, reaches /restyle
// intact (the app reports the sha256 of what it received), and comes back
// inverted pixel for pixel.
func testRestyleUpload(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	gen := complete(t, ctx, s, upstream.Call{Endpoint: "/generate", Inputs: map[string]any{"prompt": "restyle me", "steps": 1, "width": 24, "height": 16}})
	f, _ := upstream.AsFile(gen.Data[0])
	d, err := c.Download(ctx, f, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	src, err := io.ReadAll(d.Body)
	d.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.Upload(ctx, "source.png", bytes.NewReader(src), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	prompt := "restyle " + uuid.NewString()
	evs, err := run(ctx, s, upstream.Call{Endpoint: "/restyle", Inputs: map[string]any{"image": up, "prompt": prompt, "strength": 100, "style": "invert"}})
	res := result(t, evs, err)
	progress := 0
	for _, ev := range evs {
		if _, ok := ev.(*upstream.Progress); ok {
			progress++
		}
	}
	if progress == 0 {
		t.Errorf("no progress from /restyle")
	}
	var info struct {
		SHA256        string `json:"sha256"`
		Width, Height int
		Style, Prompt string
		Strength      int
	}
	if s, _ := res.Data[1].(string); json.Unmarshal([]byte(s), &info) != nil {
		t.Fatalf("info output = %#v, want a JSON text", res.Data[1])
	}
	sum := sha256.Sum256(src)
	if info.SHA256 != hex.EncodeToString(sum[:]) || info.Width != 24 || info.Height != 16 || info.Style != "invert" || info.Strength != 100 || info.Prompt != prompt {
		t.Errorf("info = %+v, want the sha256 %x of the %d bytes uploaded", info, sum, len(src))
	}
	srcImg, _ := png.Decode(bytes.NewReader(src))
	out, _ := upstream.AsFile(res.Data[0])
	img, _ := download(t, c, out, 1<<20)
	for _, p := range [][2]int{{0, 0}, {23, 15}, {7, 3}} {
		r0, g0, b0, _ := srcImg.At(p[0], p[1]).RGBA()
		r, g, b, _ := img.At(p[0], p[1]).RGBA()
		if want := [3]uint32{255 - r0>>8, 255 - g0>>8, 255 - b0>>8}; [3]uint32{r >> 8, g >> 8, b >> 8} != want {
			t.Errorf("pixel %v = %v, want the inverse %v", p, [3]uint32{r >> 8, g >> 8, b >> 8}, want)
		}
	}
	waitJournal(t, sp, prompt, "started completed")
}

// A Slider out of range and a choice not in the Dropdown fail with
// Gradio's own texts (or, once the client validates inputs against the
// schema, never leave it).
func testRestyleRefusals(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	up, err := c.Upload(ctx, "tiny.png", bytes.NewReader(tinyPNG(t)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		inputs map[string]any
		want   string
	}{
		{map[string]any{"image": up, "prompt": "p", "strength": 150}, "Value 150 is greater than maximum value 100."},
		{map[string]any{"image": up, "prompt": "p", "style": "sepia"}, "Value: sepia is not in the list of choices: ['invert', 'grayscale', 'tint']"},
	} {
		_, err := run(ctx, s, upstream.Call{Endpoint: "/restyle", Inputs: tc.inputs})
		var e *upstream.Error
		switch {
		case !errors.As(err, &e):
			t.Errorf("restyle %v: %v, want an error", tc.inputs, err)
		case e.Code == upstream.CodeInvalidInput:
		case e.Code != upstream.CodeAppError || e.Message != tc.want:
			t.Errorf("restyle %v: %+v, want app_error %q", tc.inputs, e, tc.want)
		}
	}
}

func tinyPNG(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, demoImage()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// history is a chat history of one user message in the shape the Space's
// Chatbot wants: content parts on Gradio 6 (and the demo), a string on 5.
func history(sp space, text string) []any {
	if strings.HasPrefix(sp.name, "gradio-5.") {
		return []any{map[string]any{"role": "user", "content": text}}
	}
	return []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": text}}}}
}

// lastText is the text of the last message of a Chatbot value.
func lastText(t *testing.T, v any) string {
	t.Helper()
	msgs, _ := v.([]any)
	if len(msgs) == 0 {
		t.Fatalf("chat history = %#v, want messages", v)
	}
	m, _ := msgs[len(msgs)-1].(map[string]any)
	switch c := m["content"].(type) {
	case string:
		return c
	case []any:
		var b strings.Builder
		for _, p := range c {
			if p, ok := p.(map[string]any); ok {
				s, _ := p["text"].(string)
				b.WriteString(s)
			}
		}
		return b.String()
	}
	t.Fatalf("message %#v has no content", m)
	return ""
}

// A chat built from Blocks: /add_message (queue=False) puts the user's
// message in the history, then /bot_reply streams the answer into it.
func testChat(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	hist := history(sp, "hello world")
	api, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Endpoint("/add_message"); err != nil {
		t.Fatalf("/add_message (queue=False, issue 13.2): %v", err)
	}
	added := complete(t, ctx, s, upstream.Call{Endpoint: "/add_message", Data: []any{"hello world", []any{}}})
	if added.Data[0] != "" || lastText(t, added.Data[1]) != "hello world" {
		t.Errorf("/add_message = %#v, want an empty textbox and the message in the history", added.Data)
	}
	hist = added.Data[1].([]any)
	evs, err := run(ctx, s, upstream.Call{Endpoint: "/bot_reply", Data: []any{hist, 4}})
	res := result(t, evs, err)
	var partials []string
	for _, ev := range evs {
		if p, ok := ev.(*upstream.Partial); ok {
			partials = append(partials, lastText(t, p.Data[0]))
		}
	}
	if got := lastText(t, res.Data[0]); got != "You said: hello world" {
		t.Errorf("/bot_reply's answer = %q, want %q", got, "You said: hello world")
	}
	checkGrowing(t, "/bot_reply", partials, "You said: hello world")
	// A plain string where the Chatbot wants a list of messages never
	// leaves the client (issue 13.3).
	_, err = run(ctx, s, upstream.Call{Endpoint: "/bot_reply", Data: []any{"hello", 2}})
	if code := upstream.CodeOf(err); code != upstream.CodeInvalidInput {
		t.Errorf("/bot_reply with a string history: %v, want invalid_input", err)
	}
}

// gr.ChatInterface's public /chat endpoint streams its answer.
func testChatInterface(t *testing.T, sp space, c *upstream.Client) {
	s, _ := visitor(t, c)
	evs, err := run(testCtx(t), s, upstream.Call{Endpoint: "/chat", Inputs: map[string]any{"message": "hi there"}})
	res := result(t, evs, err)
	if len(res.Data) != 1 || res.Data[0] != "You said: hi there" {
		t.Errorf("/chat = %#v, want [\"You said: hi there\"]", res.Data)
	}
	var partials []string
	for _, ev := range evs {
		if p, ok := ev.(*upstream.Partial); ok {
			s, _ := p.Data[0].(string)
			partials = append(partials, s)
		}
	}
	checkGrowing(t, "/chat", partials, "You said: hi there")
}

// checkGrowing checks that a generator's partial answers grow towards its
// final one (the client may skip some: partials are droppable).
func checkGrowing(t *testing.T, endpoint string, partials []string, final string) {
	t.Helper()
	last := ""
	for _, p := range partials {
		if !strings.HasPrefix(final, p) || len(p) < len(last) {
			t.Errorf("%s's partial answers = %q, want them to grow towards %q", endpoint, partials, final)
			return
		}
		last = p
	}
}

// Issue 13: a generator's duration is the job's run time, not the last
// step's. /ticks runs n steps of the step delay.
func testGeneratorDuration(t *testing.T, sp space, c *upstream.Client) {
	s, _ := visitor(t, c)
	const n = 4
	evs, err := run(testCtx(t), s, upstream.Call{Endpoint: "/ticks", Inputs: map[string]any{"n": n}})
	res := result(t, evs, err)
	if res.Data[0] != fmt.Sprintf("tick %d of %d", n, n) {
		t.Errorf("/ticks = %v", res.Data)
	}
	if min := n * stepSeconds; res.Duration < min {
		t.Errorf("duration = %.4fs for %d steps of %.2fs, want the job's run time (issue 13.5)", res.Duration, n, stepSeconds)
	}
}

// An endpoint whose only output is a State answers with no outputs, and
// the State it set is the one /count reads next.
func testStateOnlyOutput(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	api, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := api.Endpoint("/reset_count")
	if err != nil || len(ep.Outputs) != 0 {
		t.Fatalf("/reset_count = %+v, %v; want an endpoint with no outputs", ep, err)
	}
	counts := []string{}
	for _, endpoint := range []string{"/count", "/count", "/reset_count", "/count"} {
		res := complete(t, ctx, s, upstream.Call{Endpoint: endpoint})
		counts = append(counts, fmt.Sprint(res.Data))
	}
	if got, want := strings.Join(counts, " "), "[1] [2] [] [1]"; got != want {
		t.Errorf("count, count, reset, count = %s, want %s", got, want)
	}
	if out, _ := json.Marshal(ep.Outputs); string(out) != "[]" {
		t.Errorf("outputs = %s, want [] for a State-only endpoint (issue 13.4)", out)
	}
}

// callEvent is one event of a GET /call/<api>/<id> stream.
type callEvent struct {
	name string
	data json.RawMessage
}

// restCall is the curl recipe of /info's code snippets: POST the data,
// then read the event stream of the job.
func restCall(t *testing.T, sp space, api, body string, header http.Header) []callEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", sp.url+"/gradio_api/call/"+api, strings.NewReader(body))
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var id struct {
		EventID string `json:"event_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&id)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("POST /call/%s = %s, %v", api, resp.Status, err)
	}
	get, err := http.NewRequestWithContext(testCtx(t), "GET", sp.url+"/gradio_api/call/"+api+"/"+id.EventID, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs []callEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			evs = append(evs, callEvent{name: line[len("event: "):]})
		case strings.HasPrefix(line, "data: ") && len(evs) > 0:
			evs[len(evs)-1].data = json.RawMessage(line[len("data: "):])
		}
	}
	return evs
}

func testRESTCall(t *testing.T, sp space, c *upstream.Client) {
	tok := http.Header{"X-Ip-Token": {"rest-" + uuid.NewString()}}
	evs := restCall(t, sp, "generate", `{"data": ["rest fox", 1, 16, 16]}`, tok)
	if len(evs) != 1 || evs[0].name != "complete" {
		t.Fatalf("/call/generate events = %+v, want one complete", evs)
	}
	var out []any
	if err := json.Unmarshal(evs[0].data, &out); err != nil || len(out) != 2 {
		t.Fatalf("complete data = %s, want [image, info]", evs[0].data)
	}
	if f, ok := upstream.AsFile(out[0]); !ok || f.Path == "" {
		t.Errorf("complete data[0] = %v, want a FileData", out[0])
	}
	if !strings.Contains(fmt.Sprint(out[1]), `"token":"`+digest(tok.Get("X-Ip-Token"))+`"`) {
		t.Errorf("the app saw %v, want the POST's token", out[1])
	}
	evs = restCall(t, sp, "ticks", `{"data": [3]}`, tok)
	var names []string
	for _, ev := range evs {
		names = append(names, ev.name+" "+string(ev.data))
	}
	want := `generating ["tick 1 of 3"]|generating ["tick 2 of 3"]|generating ["tick 3 of 3"]|complete ["tick 3 of 3"]`
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("/call/ticks events = %s, want %s", got, want)
	}
	// A gr.Error: the whole error object since Gradio 6.13, null before.
	evs = restCall(t, sp, "generate", `{"data": ["raise:rest", 1, 8, 8]}`, tok)
	wantErr := `{"error": "Cannot draw <b>rest</b>", "duration": 10, "visible": true, "title": "Bad prompt"}`
	if strings.HasPrefix(sp.name, "gradio-5.") {
		wantErr = "null"
	}
	if len(evs) != 1 || evs[0].name != "error" || string(evs[0].data) != wantErr {
		t.Errorf("/call/generate with raise: = %+v, want error %s", evs, wantErr)
	}
}

// A JWT X-IP-Token whose exp has passed fails the job as ZeroGPU fails it.
func testExpiredToken(t *testing.T, sp space, c *upstream.Client) {
	past := (&demospace.TokenProxy{Now: func() time.Time { return time.Now().Add(-time.Hour) }}).Stamp("late-" + uuid.NewString())
	s := c.NewSession(http.Header{"X-Ip-Token": {past}})
	t.Cleanup(func() { s.Close() })
	_, err := run(testCtx(t), s, gen("expired "+uuid.NewString(), 1))
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeTokenExpired || !strings.Contains(e.Message, "Expired ZeroGPU proxy token") {
		t.Errorf("job with an expired token: %v, want token_expired (Expired ZeroGPU proxy token)", err)
	}
}

// The demo Space describes its endpoints as Gradio 6.31 does: /info's
// entries and, per endpoint, the /config dependency and its components,
// field by field (ids, which differ, left aside).
func testDescribesLikeGradio(t *testing.T, sp space, c *upstream.Client) {
	if sp.name != "gradio-6.31.0" {
		t.Skipf("the demo Space copies Gradio 6.31, not %s", sp.name)
	}
	demo := startDemo(t)
	realCfg, demoCfg := fetchConfig(t, sp.url), fetchConfig(t, demo.url)
	realInfo, demoInfo := fetchInfo(t, sp.url), fetchInfo(t, demo.url)
	for name, dd := range demoCfg.deps {
		rd, ok := realCfg.deps[name]
		if !ok {
			t.Errorf("the demo has /%s, Gradio does not", name)
			continue
		}
		compareFields(t, "/"+name+" dependency", rd.fields, dd.fields, "id", "targets", "inputs", "outputs", "trigger_after")
		for i := range max(len(rd.inputs), len(dd.inputs)) {
			compareComponents(t, fmt.Sprintf("/%s input %d", name, i), realCfg, demoCfg, rd.inputs, dd.inputs, i)
		}
		for i := range max(len(rd.outputs), len(dd.outputs)) {
			compareComponents(t, fmt.Sprintf("/%s output %d", name, i), realCfg, demoCfg, rd.outputs, dd.outputs, i)
		}
		compareFields(t, "/info /"+name, realInfo["/"+name], demoInfo["/"+name], "code_snippets")
	}
	for name := range realInfo {
		if _, ok := demoInfo[name]; !ok {
			t.Errorf("Gradio has %s in /info, the demo does not", name)
		}
	}
}

type appConfig struct {
	deps  map[string]appDep
	comps map[int]map[string]json.RawMessage
}

type appDep struct {
	fields          map[string]json.RawMessage
	inputs, outputs []int
}

func fetchConfig(t *testing.T, base string) appConfig {
	t.Helper()
	var raw struct {
		Dependencies []map[string]json.RawMessage `json:"dependencies"`
		Components   []map[string]json.RawMessage `json:"components"`
	}
	getJSON(t, base+"/config", &raw)
	cfg := appConfig{deps: map[string]appDep{}, comps: map[int]map[string]json.RawMessage{}}
	for _, comp := range raw.Components {
		var id int
		json.Unmarshal(comp["id"], &id)
		cfg.comps[id] = comp
	}
	for _, d := range raw.Dependencies {
		var name, vis string
		json.Unmarshal(d["api_name"], &name)
		json.Unmarshal(d["api_visibility"], &vis)
		if vis != "public" {
			continue
		}
		dep := appDep{fields: d}
		json.Unmarshal(d["inputs"], &dep.inputs)
		json.Unmarshal(d["outputs"], &dep.outputs)
		cfg.deps[name] = dep
	}
	return cfg
}

func fetchInfo(t *testing.T, base string) map[string]map[string]json.RawMessage {
	t.Helper()
	var info struct {
		Named map[string]map[string]json.RawMessage `json:"named_endpoints"`
	}
	getJSON(t, base+"/gradio_api/info", &info)
	return info.Named
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func compareComponents(t *testing.T, what string, realCfg, demoCfg appConfig, realIDs, demoIDs []int, i int) {
	t.Helper()
	if i >= len(realIDs) || i >= len(demoIDs) {
		t.Errorf("%s: Gradio has %d, the demo %d", what, len(realIDs), len(demoIDs))
		return
	}
	rc, dc := realCfg.comps[realIDs[i]], demoCfg.comps[demoIDs[i]]
	compareFields(t, what, rc, dc, "id", "component_class_id", "props")
	var rp, dp map[string]json.RawMessage
	json.Unmarshal(rc["props"], &rp)
	json.Unmarshal(dc["props"], &dp)
	compareFields(t, what+" props", rp, dp, "delete_callback")
}

// compareFields reports every field, except those left aside, whose JSON
// differs between Gradio's object and the demo's.
func compareFields(t *testing.T, what string, real, demo map[string]json.RawMessage, aside ...string) {
	t.Helper()
	skip := map[string]bool{}
	for _, k := range aside {
		skip[k] = true
	}
	for k := range mergeKeys(real, demo) {
		if skip[k] {
			continue
		}
		var r, d any
		json.Unmarshal(real[k], &r)
		json.Unmarshal(demo[k], &d)
		if _, inReal := real[k]; !inReal {
			t.Errorf("%s: the demo has %s = %s, Gradio has no such field", what, k, demo[k])
		} else if _, inDemo := demo[k]; !inDemo {
			t.Errorf("%s: Gradio has %s = %s, the demo has no such field", what, k, real[k])
		} else if !reflect.DeepEqual(r, d) {
			t.Errorf("%s: %s = %s on the demo, %s on Gradio", what, k, demo[k], real[k])
		}
	}
}

func mergeKeys(a, b map[string]json.RawMessage) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// demoImage is a small image with a few distinct colours.
func demoImage() *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 4, 3))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 37)
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 0xff
	}
	return img
}
