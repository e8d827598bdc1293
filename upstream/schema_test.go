package upstream

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenVersions are the Gradio versions whose /config and /info answers
// for upstream/testdata/discovery_app.py are recorded under
// testdata/discovery (TestDiscoveryLive checks them against the servers).
var goldenVersions = []string{"5.50.0", "6.31.0"}

// goldenAPI is the API discovery makes of the recorded answers.
func goldenAPI(t testing.TB, version string) *API {
	t.Helper()
	var cfg appConfig
	readGolden(t, "config-"+version+".json", &cfg)
	api, err := cfg.api("http://gradio.test")
	if err != nil {
		t.Fatal(err)
	}
	var info apiInfo
	readGolden(t, "info-"+version+".json", &info)
	api.Endpoints, api.Skipped = cfg.endpoints(info)
	return api
}

func readGolden(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "discovery", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeNumbers(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func mustEndpoint(t testing.TB, api *API, name string) *Endpoint {
	t.Helper()
	ep, err := api.Endpoint(name)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func jsonOf(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := decodeNumbers([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// Every example input that /info gives passes: what Gradio itself calls a
// valid input is one.
func TestExampleInputsPass(t *testing.T) {
	for _, version := range goldenVersions {
		api := goldenAPI(t, version)
		var info struct {
			NamedEndpoints map[string]struct {
				Parameters []struct {
					Name    string `json:"parameter_name"`
					Example any    `json:"example_input"`
				} `json:"parameters"`
			} `json:"named_endpoints"`
		}
		readGolden(t, "info-"+version+".json", &info)
		checked := 0
		for name, doc := range info.NamedEndpoints {
			ep := mustEndpoint(t, api, name)
			for i, p := range doc.Parameters {
				if ep.Inputs[i].schema != nil {
					checked++
				}
				if msg := ep.Inputs[i].check(p.Example); msg != "" {
					t.Errorf("%s %s: the example input %v is refused: %s", version, name, p.Example, msg)
				}
			}
		}
		if checked < 15 {
			t.Errorf("%s: only %d parameters have a compiled schema", version, checked)
		}
	}
}

func TestCheckSaysWhatIsWrong(t *testing.T) {
	upload := map[string]any{"path": "/tmp/gradio/x/dot.png", "orig_name": "dot.png", "size": int64(75),
		"meta": map[string]any{"_type": "gradio.FileData"}}
	type fileData struct {
		Path string            `json:"path"`
		Meta map[string]string `json:"meta"`
	}
	cases := []struct {
		endpoint, param string
		value           any
		want            string // "" for a value that passes
	}{
		{"/add", "a", json.Number("3"), ""},
		{"/add", "a", 2.5, ""},
		{"/add", "a", nil, ""}, // null is the app's to judge
		{"/add", "a", "3", `a: expected a number, got a string ("3")`},
		{"/add", "a", true, "a: expected a number, got true"},
		{"/describe", "seed", json.Number("2.5"), "seed: expected a whole number, got a number (2.5)"},
		{"/describe", "sampler", "lms", `sampler: expected one of "euler", "ddim", got "lms"`},
		{"/describe", "extras", jsonOf(t, `["hires","x"]`), `extras[1]: expected one of "hires", "face fix", got "x"`},
		{"/describe", "extras", "hires", `extras: expected a list, got a string ("hires")`},
		{"/greet", "g", 42, "g: expected a string, got a number (42)"},
		{"/greet", "g", strings.Repeat("long ", 20), ""},
		{"/history_length", "history", "hello", `history: expected a list of messages, got a string ("hello")`},
		{"/history_length", "history", jsonOf(t, `[{"role":"user"}]`),
			`history[0]: "content" is missing (a Chatbot takes a list of messages; hello gives this input's schema)`},
		{"/image_info", "image", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB", `image: expected an uploaded file, got a string ("data:image/png;base64,iVBORw0KGg…")`},
		{"/image_info", "image", upload, ""},
		{"/image_info", "image", fileData{Path: "/tmp/x.png", Meta: map[string]string{"_type": "gradio.FileData"}}, ""},
		{"/file_digest", "doc", upload, ""},
		{"/file_digest", "doc", jsonOf(t, `{"path":3,"meta":{"_type":"gradio.FileData"}}`),
			"doc.path: expected a string, got a number (3) (a file input takes an uploaded file)"},
		{"/file_digest", "doc", jsonOf(t, `{"path":"/x","meta":{"_type":"other"}}`),
			`doc.meta._type: expected "gradio.FileData", got "other" (a file input takes an uploaded file)`},
		{"/file_digest", "doc", []any{upload}, "doc: expected an uploaded file, got a list"},
	}
	for _, version := range goldenVersions {
		api := goldenAPI(t, version)
		for _, tc := range cases {
			ep := mustEndpoint(t, api, tc.endpoint)
			i := ep.param(tc.param)
			if i < 0 {
				t.Fatalf("%s has no parameter %s", tc.endpoint, tc.param)
			}
			if got := ep.Inputs[i].check(tc.value); got != tc.want {
				t.Errorf("%s: %s %s = %v:\n got %q\nwant %q", version, tc.endpoint, tc.param, tc.value, got, tc.want)
			}
		}
	}
}

// A Chatbot's messages differ between versions: Gradio 6 wants their
// content as a list of parts, Gradio 5 as a string (or a file).
func TestCheckChatbotMessages(t *testing.T) {
	parts := jsonOf(t, `[{"role":"user","content":[{"type":"text","text":"hi"}]}]`)
	text := jsonOf(t, `[{"role":"user","content":"hi"}]`)
	for _, tc := range []struct {
		version string
		history any
		want    string
	}{
		{"6.31.0", parts, ""},
		{"6.31.0", text, `history[0].content: expected a list, got a string ("hi") (a Chatbot takes a list of messages; hello gives this input's schema)`},
		{"5.50.0", text, ""},
		{"5.50.0", parts, "history[0].content: expected a string or an object, got a list (a Chatbot takes a list of messages; hello gives this input's schema)"},
	} {
		ep := mustEndpoint(t, goldenAPI(t, tc.version), "/history_length")
		if got := ep.Inputs[0].check(tc.history); got != tc.want {
			t.Errorf("%s: check(%v):\n got %q\nwant %q", tc.version, tc.history, got, tc.want)
		}
	}
}

// payload refuses a bad input before anything goes upstream, with every
// problem named, also when the caller fills the State slots itself.
func TestPayloadChecksInputs(t *testing.T) {
	api := goldenAPI(t, "6.31.0")
	describe := mustEndpoint(t, api, "/describe")
	_, err := describe.payload(Call{Inputs: map[string]any{"steps": "many", "sampler": "lms"}})
	want := `steps: expected a number, got a string ("many"); sampler: expected one of "euler", "ddim", got "lms"`
	if e, ok := err.(*Error); !ok || e.Code != CodeInvalidInput || e.Message != want {
		t.Errorf("payload(bad inputs) = %v, want invalid_input %q", err, want)
	}
	data, err := describe.payload(Call{Data: []any{json.Number("5")}})
	if err != nil || len(data) != 6 {
		t.Errorf("payload(good data) = %v, %v", data, err)
	}

	remember := mustEndpoint(t, api, "/remember") // a text, and a State slot
	_, err = remember.payload(Call{Data: []any{42, nil}})
	if CodeOf(err) != CodeInvalidInput || !strings.Contains(err.Error(), "text: expected a string") {
		t.Errorf("payload(State slot filled, bad text) = %v, want invalid_input", err)
	}
	if data, err := remember.payload(Call{Data: []any{"a note", nil}}); err != nil || len(data) != 2 {
		t.Errorf("payload(State slot filled) = %v, %v", data, err)
	}
}

// A schema the library cannot compile leaves its parameter unchecked;
// nothing is loaded from where a schema points.
func TestUncompiledSchemaIsNotChecked(t *testing.T) {
	for _, schema := range []string{
		`{"type": {}}`, // what Gradio gives a gr.JSON
		`{"$ref": "file:///etc/passwd"}`,
		`{"$ref": "https://example.com/schema.json"}`,
		`{"$ref": "#/$defs/Missing"}`,
		`{"type": "string", "pattern": "(?<=a)b"}`, // not RE2
		`not json`,
	} {
		var p Param
		p.setSchema(json.RawMessage(schema))
		if p.schema != nil {
			t.Errorf("%s compiled", schema)
		}
		if string(p.Schema) != schema {
			t.Errorf("Schema = %s, want %s kept for hello", p.Schema, schema)
		}
		if msg := p.check(42); msg != "" {
			t.Errorf("%s: check(42) = %q, want no check", schema, msg)
		}
	}
}
