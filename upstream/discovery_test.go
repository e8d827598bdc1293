package upstream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

var goldenVersions = []string{"5.50.0", "6.31.0"}

// goldenSpace serves the recorded /config and /info of
// upstream/testdata/discovery_app.py under Gradio version: a real
// Gradio's answers, without Python. Set config to serve another /config.
type goldenSpace struct {
	*httptest.Server
	mu     sync.Mutex
	config []byte
	info   []byte
	infos  atomic.Int32 // GET /info requests
	down   atomic.Bool  // every request fails with 502
	auth   atomic.Value // the X-HF-Authorization of the last /config request
	joined atomic.Int64 // the fn_index of the last join
}

func newGoldenSpace(t *testing.T, version string) *goldenSpace {
	g := &goldenSpace{config: readFile(t, "config-"+version+".json"), info: readFile(t, "info-"+version+".json")}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.down.Load() {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		g.mu.Lock()
		config, info := g.config, g.info
		g.mu.Unlock()
		switch r.URL.Path {
		case "/config":
			g.auth.Store(r.Header.Get("X-Hf-Authorization"))
			w.Write(config)
		case "/gradio_api/info":
			g.infos.Add(1)
			w.Write(info)
		case "/gradio_api/queue/join":
			var body struct {
				FnIndex int64 `json:"fn_index"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			g.joined.Store(body.FnIndex)
			http.Error(w, `{"detail":"Queue is full! Please try again."}`, http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(g.Close)
	return g
}

// serve makes the space answer with the recorded answers of version,
// changed by edit (if not nil).
func (g *goldenSpace) serve(t *testing.T, version string, edit func(config map[string]any)) {
	config := readFile(t, "config-"+version+".json")
	if edit != nil {
		var v map[string]any
		if err := decodeJSON(config, &v); err != nil {
			t.Fatal(err)
		}
		edit(v)
		var err error
		if config, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	g.mu.Lock()
	g.config, g.info = config, readFile(t, "info-"+version+".json")
	g.mu.Unlock()
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goldenClient(t *testing.T, version string) (*upstream.Client, *goldenSpace) {
	g := newGoldenSpace(t, version)
	return newClient(t, space{url: g.URL}), g
}

// What a page is told about each input of a real Gradio app, on both
// versions: the translated labels read, queue=False events listed, the
// form details of section 10 of the protocol, and a schema per input.
func TestDiscoveryOfRealAnswers(t *testing.T) {
	for _, version := range goldenVersions {
		t.Run(version, func(t *testing.T) {
			c, _ := goldenClient(t, version)
			api, err := c.API(testCtx(t))
			if err != nil {
				t.Fatalf("API() = %v", err)
			}
			var names []string
			for _, ep := range api.Endpoints {
				names = append(names, ep.Name)
			}
			want := "/add /album /chat /describe /file_digest /greet /history_length /image_info /media /remember /tally /turns"
			if got := strings.Join(names, " "); got != want {
				t.Errorf("endpoints = %s\nwant %s", got, want)
			}
			if len(api.Skipped) != 0 {
				t.Errorf("Skipped = %+v, want none", api.Skipped)
			}
			chatbot := "chat_interface.chatbot" // Gradio 6 labels a ChatInterface's chatbot with a translation key
			if strings.HasPrefix(version, "5.") {
				chatbot = "Chatbot"
			}
			for _, tc := range []struct{ endpoint, param, want string }{
				{"/turns", "history", `{"name":"history","label":"` + chatbot + `","type":"array","component":"Chatbot","required":false,"default":[]}`},
				{"/greet", "g", `{"name":"g","label":"Greeting","type":"string","component":"Textbox","required":true,"info":"say hello"}`},
				{"/add", "a", `{"name":"a","label":"a","type":"number","component":"Number","required":false,"default":1,"step":1}`},
				{"/describe", "steps", `{"name":"steps","label":"steps","type":"number","component":"Slider","required":false,"default":20,"info":"more steps, more detail","minimum":1,"maximum":50,"step":1}`},
				{"/describe", "scale", `{"name":"scale","label":"scale","type":"number","component":"Number","required":false,"default":7.5,"minimum":0,"maximum":20,"step":0.5}`},
				{"/describe", "sampler", `{"name":"sampler","label":"sampler","type":"string","component":"Dropdown","required":false,"default":"euler","choices":[{"value":"euler","label":"euler"},{"value":"ddim","label":"ddim"}]}`},
				{"/describe", "style", `{"name":"style","label":"style","type":"string","component":"Radio","required":false,"default":"photo","choices":[{"value":"photo","label":"Photo"},{"value":"paint","label":"Painting"}]}`},
				{"/describe", "extras", `{"name":"extras","label":"extras","type":"array","component":"Checkboxgroup","required":false,"default":[],"choices":[{"value":"hires","label":"hires"},{"value":"face fix","label":"face fix"}]}`},
				{"/image_info", "image", `{"name":"image","label":"picture","type":"file","component":"Image","required":true,"file_types":["image"]}`},
				{"/image_info", "strength", `{"name":"strength","label":"strength","type":"number","component":"Slider","required":false,"default":0.5,"minimum":0,"maximum":1,"step":0.01}`},
				{"/file_digest", "doc", `{"name":"doc","label":"document","type":"file","component":"File","required":true,"file_types":[".txt",".md"]}`},
				{"/media", "audio", `{"name":"audio","label":"voice","type":"file","component":"Audio","required":true,"file_types":["audio"]}`},
				{"/album", "pictures", `{"name":"pictures","label":"pictures","type":"array","component":"Gallery","required":false,"default":[],"file_types":["image","video"]}`},
				{"/album", "attachments", `{"name":"attachments","label":"attachments","type":"array","component":"File","required":true,"file_types":["file"]}`},
			} {
				p := param(t, api, tc.endpoint, tc.param)
				if len(p.Schema) == 0 || !json.Valid(p.Schema) {
					t.Errorf("%s %s: schema %q, want /info's", tc.endpoint, tc.param, p.Schema)
				}
				p.Schema = nil
				if got := mustJSON(t, p); got != tc.want {
					t.Errorf("%s %s:\n got %s\nwant %s", tc.endpoint, tc.param, got, tc.want)
				}
			}
			for name, queue := range map[string]bool{"/add": false, "/tally": false, "/describe": true, "/chat": true} {
				if ep, _ := api.Endpoint(name); ep == nil || ep.Queue != queue {
					t.Errorf("%s: Queue = %v, want %v", name, ep != nil && ep.Queue, queue)
				}
			}
			if chat, _ := api.Endpoint("/chat"); chat == nil || !chat.Generator {
				t.Errorf("/chat is not a generator")
			}
			remember, _ := api.Endpoint("/remember")
			if got := mustJSON(t, remember); !strings.Contains(got, `"outputs":[]`) || strings.Contains(got, "generator") {
				t.Errorf("/remember (a State its only output) = %s, want outputs [] and no generator", got)
			}
			// The whole of what hello says, kept as a golden for review.
			var eps any
			if err := decodeJSON([]byte(mustJSON(t, api.Endpoints)), &eps); err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join(goldenDir, "endpoints-"+version+".json"), eps)
		})
	}
}

func param(t *testing.T, api *upstream.API, endpoint, name string) upstream.Param {
	t.Helper()
	ep, err := api.Endpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ep.Inputs {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("%s has no input %s", endpoint, name)
	return upstream.Param{}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An endpoint that cannot be described is left out, with the reason; the
// others, and the Space, are kept.
func TestDiscoverySkipsWhatItCannotRead(t *testing.T) {
	const config = `{"version":"6.31.0","api_prefix":"/gradio_api","protocol":"sse_v3",
		"components":[{"id":1,"type":"textbox","props":{"label":{"odd":true},"info":null}},
			{"id":2,"type":"state","skip_api":true},
			{"id":3,"type":"json","props":"not an object"},
			"not a component",
			{"id":4,"type":"slider","props":{"minimum":"low","maximum":9,"step":[1]}}],
		"dependencies":[
			{"id":0,"api_name":"good","api_visibility":"public","inputs":[1,2,4],"outputs":[3,2]},
			{"id":1,"api_name":"direct","api_visibility":"public","queue":false,"inputs":[3],"outputs":[]},
			{"id":2,"api_name":"bad_param","api_visibility":"public","inputs":[1],"outputs":[]},
			{"id":3,"api_name":"bad_event","api_visibility":"public","inputs":["one"],"outputs":[]},
			{"id":4,"api_name":"mismatch","api_visibility":"public","inputs":[1],"outputs":[]},
			{"id":5,"api_name":"private","api_visibility":"private","inputs":[],"outputs":[]}]}`
	const info = `{"named_endpoints":{
		"/good":{"parameters":[
			{"label":{"key":"chat_interface.textbox","_type":"translation_metadata"},"parameter_name":"prompt","parameter_has_default":false,"type":{"type":"string"},"python_type":{"type":null},"component":"Textbox","example_input":{"weird":[]}},
			{"label":null,"parameter_name":"level","parameter_has_default":true,"parameter_default":3,"type":{"type":"number"},"python_type":"float","component":"Slider"}],
			"returns":[{"label":42,"component":"Json"}],"description":{"key":"x","_type":"translation_metadata"}},
		"/direct":{"parameters":[{"label":"anything","parameter_name":"value","parameter_has_default":false,"type":{"type":{}},"component":"Json"}],"returns":[]},
		"/bad_param":{"parameters":[{"label":"x","parameter_name":7}],"returns":[]},
		"/bad_event":{"parameters":[],"returns":[]},
		"/mismatch":{"parameters":[{"parameter_name":"a"},{"parameter_name":"b"}],"returns":[]},
		"/ghost":{"parameters":[],"returns":[]}},"unnamed_endpoints":{}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/config":
			io.WriteString(w, config)
		case "/gradio_api/info":
			io.WriteString(w, info)
		}
	}))
	defer srv.Close()
	api, err := newClient(t, space{url: srv.URL}).API(testCtx(t))
	if err != nil {
		t.Fatalf("API() = %v, want the Space kept", err)
	}
	if got := mustJSON(t, api.Endpoints); got != `[{"name":"/direct","inputs":[{"name":"value","label":"anything","type":"any","component":"Json","required":true,"schema":{"type":{}}}],"outputs":[]},`+
		`{"name":"/good","inputs":[{"name":"prompt","label":"chat_interface.textbox","type":"string","component":"Textbox","required":true,"schema":{"type":"string"}},`+
		`{"name":"level","type":"number","component":"Slider","required":false,"default":3,"maximum":9,"schema":{"type":"number"}}],"outputs":[{"name":"output 0","component":"Json"}]}]` {
		t.Errorf("Endpoints = %s", got)
	}
	var skipped []string
	for _, s := range api.Skipped {
		skipped = append(skipped, s.Name+": "+s.Reason)
	}
	want := []string{
		"/bad_event: its event in /config cannot be read",
		"/bad_param: its description in /info cannot be read",
		"/ghost: /info documents it, but /config has no public event of that name",
		"/mismatch: /info gives it 2 parameters, but its event in /config has 1 visible inputs",
	}
	if len(skipped) != len(want) {
		t.Fatalf("Skipped = %q, want %d", skipped, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(skipped[i], want[i]) {
			t.Errorf("Skipped[%d] = %q, want %q…", i, skipped[i], want[i])
		}
	}
	// The unreadable schema leaves its input unchecked: the call goes on
	// to the Space (which here has no queue, hence a join error).
	s, _ := visitor(t, newClient(t, space{url: srv.URL}))
	_, err = run(testCtx(t), s, upstream.Call{Endpoint: "/direct", Data: []any{"anything"}})
	if err == nil || upstream.CodeOf(err) == upstream.CodeInvalidInput {
		t.Errorf("Stream(/direct) = %v, want the call let through to the Space", err)
	}
}

// A Space the Hub says is not running gives an error a program can read
// the stage from, for a readiness check to say "asleep" or "building".
func TestNotRunningSaysTheStage(t *testing.T) {
	app := httptest.NewServer(&fakeApp{})
	defer app.Close()
	for _, stage := range []string{"SLEEPING", "BUILDING", "PAUSED", "RUNTIME_ERROR", "RUNNING"} {
		hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/api/spaces/owner/name/host":
				fmt.Fprintf(w, `{"host":%q}`, app.URL)
			case "/api/spaces/owner/name/runtime":
				fmt.Fprintf(w, `{"stage":%q}`, stage)
			}
		}))
		c, err := upstream.New(upstream.Config{Target: "owner/name", HubURL: hub.URL})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.API(t.Context())
		var e *upstream.Error
		switch {
		case stage == "RUNNING" && err != nil:
			t.Errorf("API(RUNNING) = %v", err)
		case stage != "RUNNING" && (!errors.As(err, &e) || e.Stage != stage || e.Code != upstream.CodeUnavailable):
			t.Errorf("API(%s) = %#v, want upstream_unavailable with Stage %s", stage, err, stage)
		}
		c.CloseIdleConnections()
		hub.Close()
	}
}
