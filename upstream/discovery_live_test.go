package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spacerelay/spacerelay/upstream/gradiotest"
)

var update = flag.Bool("update", false, "rewrite the goldens under testdata/discovery: /config and /info from the live Gradio servers of "+gradiotest.EnvVar+", the endpoints from the code")

const (
	discoveryApp       = "upstream/testdata/discovery_app.py"
	goldenDir          = "testdata/discovery"
	goldenBase         = "http://gradio.test" // stands for the server's address in the goldens
	goldenAppID        = "1"
	discoveryGradioAPI = "/gradio_api"
)

// TestDiscoveryLive runs upstream/testdata/discovery_app.py under each
// pinned Gradio and checks that:
//   - its /config and /info are still the goldens that the fast tests read;
//   - the direct route serves its queue=False events;
func TestDiscoveryLive(t *testing.T) {
	for _, py := range gradiotest.Pythons(t) {
		t.Run(py.Version, func(t *testing.T) {
			t.Parallel()
			srv := gradiotest.Start(t, py, gradiotest.Options{App: discoveryApp})
			t.Run("goldens", func(t *testing.T) { checkGoldens(t, py.Version, srv.URL) })
			t.Run("direct calls", func(t *testing.T) { testDirectCalls(t, srv.URL) })
		})
	}
}

// checkGoldens compares the server's /config and /info with the goldens,
// or rewrites them with -update. Both are compared as JSON values, with
// what changes from one run to the next replaced: the server's address,
// the app_id, a BrowserState's secret, and /info's code snippets (left
// out).
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
