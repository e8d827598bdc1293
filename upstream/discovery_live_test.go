package upstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
	"github.com/spacerelay/spacerelay/upstream/gradiotest"
)

var update = flag.Bool("update", false, "rewrite the goldens under testdata/discovery: /config and /info from the live Gradio servers of "+gradiotest.EnvVar+", the endpoints from the code")

const (
	discoveryApp       = "upstream/testdata/discovery_app.py"
	discoveryRedeploy  = "upstream/testdata/discovery_app_redeployed.py"
	goldenDir          = "testdata/discovery"
	goldenBase         = "http://gradio.test" // stands for the server's address in the goldens
	goldenAppID        = "1"
	discoveryGradioAPI = "/gradio_api"
)

// TestDiscoveryLive runs upstream/testdata/discovery_app.py under each
// pinned Gradio and checks that:
//   - its /config and /info are still the goldens that the fast tests read;
//   - what the relay's validation refuses, the Space fails too;
//   - the direct route serves its queue=False events;
//   - when the Space is redeployed as another app, Rediscover sees it.
func TestDiscoveryLive(t *testing.T) {
	for _, py := range gradiotest.Pythons(t) {
		t.Run(py.Version, func(t *testing.T) {
			t.Parallel()
			srv := gradiotest.Start(t, py, gradiotest.Options{App: discoveryApp})
			proxy := newSwitchProxy(t, srv.URL)
			c := newClient(t, space{url: proxy.URL})
			t.Run("goldens", func(t *testing.T) { checkGoldens(t, py.Version, srv.URL) })
			t.Run("validation", func(t *testing.T) { testValidationLive(t, py.Version, srv.URL, c) })
			t.Run("direct calls", func(t *testing.T) { testDirectCalls(t, srv.URL) })
			t.Run("redeploy", func(t *testing.T) { testRedeploy(t, py, srv, proxy, c) })
		})
	}
}

// checkGoldens compares the server's /config and /info with the goldens,
// or rewrites them with -update. Both are compared as JSON values, with
// what changes from one run to the next replaced: the server's address,
// the app_id, a BrowserState's secret, each component_class_id, and
// /info's code snippets (left out).
func checkGoldens(t *testing.T, version, base string) {
	for _, route := range []string{"/config", discoveryGradioAPI + "/info"} {
		var v any
		getJSONNumbers(t, base+route, &v)
		v = normalizeAnswer(v, base)
		name := "config"
		if strings.HasSuffix(route, "/info") {
			name = "info"
			for _, ep := range v.(map[string]any)["named_endpoints"].(map[string]any) {
				delete(ep.(map[string]any), "code_snippets")
			}
		} else if m := v.(map[string]any); m["app_id"] != nil {
			m["app_id"] = json.Number(goldenAppID)
		}
		compareGolden(t, filepath.Join(goldenDir, name+"-"+version+".json"), v)
	}
}

// compareGolden compares v with the JSON golden file path, or writes v
// there with -update.
func compareGolden(t *testing.T, path string, v any) {
	t.Helper()
	if *update {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", " ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var want any
	readJSONFile(t, path, &want)
	// Both through one encoding, so that Go values and decoded JSON compare.
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := decodeJSON(b, &got); err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(got, want, ""); d != "" {
		t.Errorf("%s is out of date at %s; if the change is expected, rerun with -update", path, d)
	}
}

// goldenClassID stands for every component_class_id in the goldens.
const goldenClassID = "a hash of the class and its module's path"

var pyAddress = regexp.MustCompile(` at 0x[0-9a-f]+>`)

func normalizeAnswer(v any, base string) any {
	switch v := v.(type) {
	case string:
		// A Python object's repr names its address: <function f at 0x7f…>.
		return pyAddress.ReplaceAllString(strings.ReplaceAll(v, base, goldenBase), " at 0x…>")
	case []any:
		for i := range v {
			v[i] = normalizeAnswer(v[i], base)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeAnswer(e, base)
		}
		if _, ok := v["secret"].(string); ok {
			v["secret"] = "a random secret"
		}
		// Gradio hashes a component's class name with its module's file
		// path: it changes with where the virtual environment lives.
		if _, ok := v["component_class_id"].(string); ok {
			v["component_class_id"] = goldenClassID
		}
	}
	return v
}

// firstDiff returns where got and want first differ, or "".
func firstDiff(got, want any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + " (not an object)"
		}
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if d := firstDiff(g[k], w[k], path+"/"+k); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s (a list of %d, want %d)", path, len(g), len(w))
		}
		for i := range w {
			if d := firstDiff(g[i], w[i], fmt.Sprintf("%s/%d", path, i)); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("%s (%v, want %v)", path, got, want)
	}
	return ""
}

// A liveCase is an input that the relay and real Gradio must judge alike.
type liveCase struct {
	name, endpoint string
	data           []any
	refuse         string // part of the relay's invalid_input message; "" for a good input
	// stricter: the relay refuses an input that Gradio would take (a
	// number for a Textbox, which Gradio turns into text), as the schema
	// of /info says.
	stricter bool
}

func liveCases(version string, image, doc map[string]any) []liveCase {
	partsChat := []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "hi"}}}}
	stringChat := []any{map[string]any{"role": "user", "content": "hi"}}
	cases := []liveCase{
		{"numbers", "/add", []any{json.Number("3"), 4}, "", false},
		{"a string for a Number", "/add", []any{"3", 4}, `a: expected a number, got a string ("3")`, false},
		{"typed inputs", "/describe", []any{20, 7.5, "ddim", "paint", []any{"hires"}, 3}, "", false},
		{"a value not among the choices", "/describe", []any{20, 7.5, "lms", "paint", []any{}, 3}, `sampler: expected one of "euler", "ddim", got "lms"`, false},
		{"a plain string for a Chatbot", "/history_length", []any{"hello"}, `history: expected a list of messages, got a string ("hello")`, false},
		{"a bare data URL for an Image", "/image_info", []any{"data:image/png;base64,iVBORw0KGgo=", 0.5}, "image: expected an uploaded file, got a string", false},
		{"an uploaded image", "/image_info", []any{image, 0.5}, "", false},
		{"an uploaded file", "/file_digest", []any{doc}, "", false},
		{"a FileData without a path", "/file_digest", []any{map[string]any{"meta": map[string]any{"_type": "gradio.FileData"}}}, `doc: "path" is missing`, false},
		{"a translated label's input", "/greet", []any{"hello"}, "", false},
		{"a number for a Textbox", "/greet", []any{42}, "g: expected a string, got a number (42)", true},
		{"gallery items and several files", "/album", []any{[]any{map[string]any{"image": image, "caption": "a dot"}}, []any{doc, image}}, "", false},
		{"a bare file as a gallery item", "/album", []any{[]any{image}, []any{doc}}, `pictures[0]: "image" is missing`, false},
	}
	video := map[string]any{"video": image, "subtitles": nil}
	if strings.HasPrefix(version, "5.") {
		// Gradio 5's Video holds its file in an object, Gradio 6's is the file.
		cases = append(cases,
			liveCase{"a Video's object", "/media", []any{doc, video}, "", false},
			liveCase{"a bare file for a Video", "/media", []any{doc, image}, `video: "video" is missing`, false})
	} else {
		cases = append(cases,
			liveCase{"a file for a Video", "/media", []any{doc, image}, "", false},
			liveCase{"an object for a Video", "/media", []any{doc, video}, `video: "path" is missing`, false})
	}
	if strings.HasPrefix(version, "5.") {
		// Gradio 5's messages hold their text as a string.
		return append(cases,
			liveCase{"messages of text", "/history_length", []any{stringChat}, "", false},
			liveCase{"messages of parts", "/history_length", []any{partsChat}, "history[0].content: expected a string or an object, got a list", false})
	}
	// Gradio 6's messages hold a list of parts.
	return append(cases,
		liveCase{"messages of parts", "/history_length", []any{partsChat}, "", false},
		liveCase{"messages of text", "/history_length", []any{stringChat}, `history[0].content: expected a list, got a string ("hi")`, false})
}

func testValidationLive(t *testing.T, version, base string, c *upstream.Client) {
	ctx := testCtx(t)
	img, err := c.Upload(ctx, "dot.png", bytes.NewReader(tinyPNG(t)), 0)
	if err != nil {
		t.Fatalf("Upload(dot.png) = %v", err)
	}
	content := []byte("# a document\n")
	doc, err := c.Upload(ctx, "notes.md", bytes.NewReader(content), 0)
	if err != nil {
		t.Fatalf("Upload(notes.md) = %v", err)
	}
	s, _ := visitor(t, c)
	for _, tc := range liveCases(version, img, doc) {
		t.Run(tc.name, func(t *testing.T) {
			gradioOK := gradioRuns(t, base, tc.endpoint, tc.data)
			evs, err := run(ctx, s, upstream.Call{Endpoint: tc.endpoint, Data: tc.data})
			switch {
			case tc.refuse == "":
				out := result(t, evs, err)
				if !gradioOK {
					t.Errorf("Gradio fails the call that the relay ran (%v)", out.Data)
				}
				if tc.endpoint == "/file_digest" {
					sum := sha256.Sum256(content)
					if out.Data[0] != hex.EncodeToString(sum[:]) {
						t.Errorf("/file_digest = %v, want the sha256 of what was uploaded", out.Data)
					}
				}
			case upstream.CodeOf(err) != upstream.CodeInvalidInput || !strings.Contains(err.Error(), tc.refuse):
				t.Errorf("Stream() = %v, want invalid_input saying %q", err, tc.refuse)
			case gradioOK != tc.stricter:
				t.Errorf("Gradio runs the call: %v; want %v", gradioOK, tc.stricter)
			}
		})
	}
}

// gradioRuns reports whether the Space runs endpoint with data, called
// directly, with no check of ours in between.
func gradioRuns(t *testing.T, base, endpoint string, data []any) bool {
	t.Helper()
	status, _ := postRun(t, base, endpoint, map[string]any{"data": data}, nil)
	return status == http.StatusOK
}

// postRun POSTs body to the direct route {prefix}/run/{api_name} and
// returns the status and the answer's data.
func postRun(t *testing.T, base, endpoint string, body any, header http.Header) (int, []any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+discoveryGradioAPI+"/run"+endpoint, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data []any `json:"data"`
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = decodeJSON(raw, &out)
	return resp.StatusCode, out.Data
}

// testDirectCalls shows the route that serves a queue=False event on this
// Gradio: POST {prefix}/run/{api_name} with the join's data (nulls in the
// State slots) and the session_hash whose State it uses.
func testDirectCalls(t *testing.T, base string) {
	status, data := postRun(t, base, "/add", map[string]any{"data": []any{3, 4}}, nil)
	if status != http.StatusOK || fmt.Sprint(data) != "[7]" {
		t.Errorf("POST /run/add = %d %v, want 200 [7]", status, data)
	}
	for want := 1; want <= 2; want++ {
		body := map[string]any{"data": []any{nil}, "session_hash": "direct-calls"}
		status, data := postRun(t, base, "/tally", body, http.Header{"X-Ip-Token": {"a-token"}})
		if status != http.StatusOK || fmt.Sprint(data) != fmt.Sprintf("[%d <nil>]", want) {
			t.Errorf("POST /run/tally, call %d = %d %v, want 200 [%d <nil>] (the State kept by session_hash)", want, status, data, want)
		}
	}
	body := map[string]any{"data": []any{}, "session_hash": "direct-calls"}
	if status, _ := postRun(t, base, "/tally", body, nil); status == http.StatusOK {
		t.Errorf("POST /run/tally without its State slot = 200; want a failure (the direct route fills no slots)")
	}
}

// testRedeploy stops the app behind the proxy, as a Space going down, and
// brings up another app in its place, as a redeploy.
func testRedeploy(t *testing.T, py gradiotest.Python, srv *gradiotest.Server, proxy *switchProxy, c *upstream.Client) {
	ctx := testCtx(t)
	old, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Rediscover(ctx); err != nil || again != old {
		t.Fatalf("Rediscover(unchanged app) = %p, %v; want the same API %p", again, err, old)
	}
	srv.Kill()
	if _, err := c.Rediscover(ctx); upstream.CodeOf(err) != upstream.CodeUnavailable {
		t.Errorf("Rediscover(app down) = %v, want upstream_unavailable", err)
	}
	if api, err := c.API(ctx); api != old {
		t.Errorf("API() after a failed rediscovery = %p, %v; want the API kept, %p", api, err, old)
	}

	next := gradiotest.Start(t, py, gradiotest.Options{App: discoveryRedeploy})
	proxy.to(next.URL)
	api, err := c.Rediscover(ctx)
	if err != nil || api == old {
		t.Fatalf("Rediscover(redeployed app) = %p, %v; want a new API", api, err)
	}
	if _, err := api.Endpoint("/shout"); err != nil {
		t.Errorf("the new API has no /shout: %v", err)
	}
	if _, err := old.Endpoint("/shout"); err == nil {
		t.Errorf("the old API changed: it has /shout")
	}
	if got, _ := c.API(ctx); got != api {
		t.Errorf("API() = %p, want the rediscovered %p", got, api)
	}
	// Every function index moved: a job that reaches the right function
	// shows that the new ones are used.
	s, _ := visitor(t, c)
	out := complete(t, ctx, s, upstream.Call{Endpoint: "/describe", Inputs: map[string]any{"steps": 5, "sampler": "ddim"}})
	if want := "steps=5 scale=7.5 sampler=ddim style=photo extras=[] seed=0"; fmt.Sprint(out.Data...) != want {
		t.Errorf("/describe after the redeploy = %v, want %q", out.Data, want)
	}
	if again, err := c.Rediscover(ctx); err != nil || again != api {
		t.Errorf("Rediscover(unchanged again) = %p, %v; want %p", again, err, api)
	}
}

// switchProxy stands for the address of a Space, in front of whichever
// server runs it now.
type switchProxy struct {
	*httptest.Server
	target atomic.Pointer[url.URL]
}

func newSwitchProxy(t *testing.T, to string) *switchProxy {
	p := &switchProxy{}
	p.to(to)
	p.Server = httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(p.target.Load()) },
		FlushInterval: -1, // event streams pass at once
		ErrorLog:      log.New(io.Discard, "", 0),
	})
	t.Cleanup(p.Close)
	return p
}

func (p *switchProxy) to(target string) {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	p.target.Store(u)
}

func getJSONNumbers(t *testing.T, u string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30e9)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", u, resp.Status, err)
	}
	if err := decodeJSON(b, v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeJSON(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}
