package demospace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{})
	var cfg struct {
		Version, APIPrefix, Protocol, Root string
		APIPrefixJSON                      string `json:"api_prefix"`
		ConnectHeartbeat                   bool   `json:"connect_heartbeat"`
		EnableQueue                        bool   `json:"enable_queue"`
		ShowError                          *bool  `json:"show_error"`
		MaxFileSize                        int    `json:"max_file_size"`
		Dependencies                       []struct {
			ID            int
			APIName       string `json:"api_name"`
			Inputs        []int
			Outputs       []int
			APIVisibility string `json:"api_visibility"`
			Types         struct{ Generator bool }
		}
		Components []struct {
			ID      int
			Type    string
			SkipAPI bool           `json:"skip_api"`
			APIInfo map[string]any `json:"api_info"`
			Props   map[string]any
		}
	}
	h.getJSON("/config", &cfg)
	if cfg.Version != "6.31.0" || cfg.APIPrefixJSON != "/gradio_api" || cfg.Protocol != "sse_v3" ||
		!cfg.ConnectHeartbeat || !cfg.EnableQueue || cfg.ShowError == nil || *cfg.ShowError ||
		cfg.Root != h.url || cfg.MaxFileSize != maxUploadSize {
		t.Errorf("config = %+v", cfg)
	}
	var deps []string
	for _, d := range cfg.Dependencies {
		deps = append(deps, fmt.Sprintf("%d:%s:%v:%v:%s:%v", d.ID, d.APIName, d.Inputs, d.Outputs, d.APIVisibility, d.Types.Generator))
	}
	want := "0:generate:[2 3 4 5]:[7 8]:public:false 1:preview:[12 13]:[15]:public:true 2:count:[18]:[19 18]:public:false 3:whoami:[]:[23]:public:false" +
		" 4:reset_count:[]:[18]:public:false 5:restyle:[30 31 32 33]:[35 36]:public:false 6:add_message:[41 40]:[41 40]:public:false" +
		" 7:bot_reply:[40 42]:[40]:public:true 8:chat:[45 46]:[47 46]:public:true 9:ticks:[51]:[52]:public:true" +
		" 10:gallery:[56]:[57]:public:false 11:files:[61]:[62]:public:false 12:audio:[66]:[67]:public:false 13:video:[71]:[72]:public:false"
	if got := strings.Join(deps, " "); got != want {
		t.Errorf("dependencies = %s, want %s", got, want)
	}
	state := cfg.Components[idState-1]
	if state.ID != idState || state.Type != "state" || !state.SkipAPI || state.APIInfo != nil {
		t.Errorf("state component = %+v", state)
	}
	if img := cfg.Components[idImage-1]; img.Type != "image" || img.SkipAPI || img.APIInfo["title"] != "ImageData" || img.Props["format"] != "png" {
		t.Errorf("image component = %+v", img)
	}

	// Behind a proxy the root follows X-Forwarded-Host/Proto.
	_, _, b := h.do("GET", "/config", "", nil, "X-Forwarded-Host", "owner-space.hf.space, x", "X-Forwarded-Proto", "https")
	if !bytes.Contains(b, []byte(`"root":"https://owner-space.hf.space"}`)) {
		t.Errorf("proxied config ends %s", b[len(b)-60:])
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{})
	_, _, raw := h.do("GET", "/gradio_api/info", "", nil)
	var info struct {
		Named   map[string]map[string]json.RawMessage `json:"named_endpoints"`
		Unnamed map[string]any                        `json:"unnamed_endpoints"`
	}
	if err := json.Unmarshal(raw, &info); err != nil || len(info.Named) != 14 || info.Unnamed == nil {
		t.Fatalf("info = %s (%v)", raw, err)
	}
	want := map[string]string{
		"/generate": `[{"label":"prompt","parameter_name":"prompt","parameter_has_default":false,"parameter_default":null,"type":{"type":"string"},"python_type":{"type":"str","description":""},"component":"Textbox","example_input":"Hello!!"},` +
			`{"label":"steps","parameter_name":"steps","parameter_has_default":true,"parameter_default":8,"type":{"type":"integer"},"python_type":{"type":"int","description":""},"component":"Number","example_input":3},` +
			`{"label":"width","parameter_name":"width","parameter_has_default":true,"parameter_default":128,"type":{"type":"integer"},"python_type":{"type":"int","description":""},"component":"Number","example_input":3},` +
			`{"label":"height","parameter_name":"height","parameter_has_default":true,"parameter_default":128,"type":{"type":"integer"},"python_type":{"type":"int","description":""},"component":"Number","example_input":3}]`,
		"/count":  `[]`,
		"/whoami": `[]`,
	}
	for name, params := range want {
		if got := string(info.Named[name]["parameters"]); got != params {
			t.Errorf("%s parameters =\n%s\nwant\n%s", name, got, params)
		}
		if v := string(info.Named[name]["api_visibility"]); v != `"public"` {
			t.Errorf("%s api_visibility = %s", name, v)
		}
	}
	if got := string(info.Named["/count"]["returns"]); got != `[{"label":"count","type":{"type":"integer"},"python_type":{"type":"int","description":""},"component":"Number"}]` {
		t.Errorf("/count returns = %s", got)
	}
	if got := string(info.Named["/preview"]["returns"]); !strings.Contains(got, `"python_type":{"type":"filepath","description":""},"component":"Image"}]`) {
		t.Errorf("/preview returns = %s", got)
	}
}

func TestJoinErrors(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{StepDelay: time.Hour, MaxQueue: 1})
	for _, tc := range []struct {
		name, contentType, body string
		code                    int
		want                    string
	}{
		{"no session", "application/json", `{"data":[],"fn_index":3}`, 400, `{"detail":"Session hash not found."}`},
		{"no fn_index", "application/json", `{"data":[],"session_hash":"s"}`, 400, `{"detail":"No function index provided."}`},
		{"bad fn_index", "application/json", `{"data":[],"fn_index":99,"session_hash":"s"}`, 500, `Internal Server Error`},
		{"no data", "application/json", `{"fn_index":0,"session_hash":"s"}`, 422,
			`{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"fn_index":0,"session_hash":"s"}}]}`},
		{"data not a list", "application/json", `{"data":"x","fn_index":0,"session_hash":"s"}`, 422,
			`{"detail":[{"type":"list_type","loc":["body","data"],"msg":"Input should be a valid list","input":"x"}]}`},
		{"fn_index not an int", "application/json", `{"data":[],"fn_index":"a","session_hash":"s"}`, 422,
			`{"detail":[{"type":"int_parsing","loc":["body","fn_index"],"msg":"Input should be a valid integer, unable to parse string as an integer","input":"a"}]}`},
		{"not an object", "application/json", `[]`, 422,
			`{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":[]}]}`},
		{"form body", "application/x-www-form-urlencoded", `{}`, 422,
			`{"detail":[{"type":"model_attributes_type","loc":["body"],"msg":"Input should be a valid dictionary or object to extract fields from","input":"{}"}]}`},
		{"empty", "application/json", ``, 422, `{"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]}`},
	} {
		code, _, b := h.do("POST", "/gradio_api/queue/join", tc.contentType, []byte(tc.body))
		if code != tc.code || string(b) != tc.want {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, b, tc.code, tc.want)
		}
	}
	// One runs (for an hour), one waits, the next is refused.
	h.join("full", 0, []any{"x", 1, 8, 8})
	h.join("full", 0, []any{"y", 1, 8, 8})
	code, _, b := h.do("POST", "/gradio_api/queue/join", "application/json", []byte(`{"data":[],"fn_index":3,"session_hash":"s"}`))
	if code != 503 || string(b) != `{"detail":"Queue is full. Max size is 1 and size is 1."}` {
		t.Errorf("full queue: %d %s", code, b)
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{StepDelay: time.Millisecond})
	code, _, b := h.do("GET", "/gradio_api/file=/etc/passwd", "", nil)
	if code != 403 || string(b) != `{"detail":"File not allowed: /etc/passwd."}` {
		t.Errorf("file=/etc/passwd: %d %s", code, b)
	}

	h.join("f", 0, []any{"a red fox", 1, 40, 24})
	ms := h.open("f").rest()
	url := ms[len(ms)-2].output()["data"].([]any)[0].(map[string]any)["url"].(string)
	resp, err := h.http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	img, err := png.Decode(resp.Body)
	if err != nil || resp.Header.Get("Content-Type") != "image/png" || resp.ContentLength <= 0 {
		t.Fatalf("GET %s: %v %v %d", url, err, resp.Header, resp.ContentLength)
	}
	if b := img.Bounds(); b.Dx() != 40 || b.Dy() != 24 {
		t.Errorf("image is %v", b)
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("files", "../a<b>.txt")
	fw.Write([]byte("hello"))
	mw.Close()
	code, _, b = h.do("POST", "/gradio_api/upload", mw.FormDataContentType(), body.Bytes())
	var paths []string
	if code != 200 || json.Unmarshal(b, &paths) != nil || len(paths) != 1 || !strings.HasSuffix(paths[0], "/ab.txt") {
		t.Fatalf("upload: %d %s", code, b)
	}
	code, hdr, b := h.do("GET", "/gradio_api/file="+paths[0], "", nil)
	if code != 200 || string(b) != "hello" || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("uploaded file: %d %v %s", code, hdr, b)
	}

	body.Reset()
	mw = multipart.NewWriter(&body)
	fw, _ = mw.CreateFormFile("files", "big.bin")
	fw.Write(make([]byte, maxUploadSize+1))
	mw.Close()
	code, _, b = h.do("POST", "/gradio_api/upload", mw.FormDataContentType(), body.Bytes())
	if code != 413 || string(b) != fmt.Sprintf("File size exceeded maximum allowed size of %d bytes.", maxUploadSize) {
		t.Errorf("big upload: %d %s", code, b)
	}
	code, _, b = h.do("POST", "/gradio_api/upload", "text/plain", []byte("x"))
	if code != 400 || string(b) != `{"detail":"Invalid content type."}` {
		t.Errorf("non-multipart upload: %d %s", code, b)
	}
}

func TestJournal(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{StepDelay: time.Millisecond})
	h.join("j", 0, []any{"journal fox", 1, 8, 8}, "X-IP-Token", "secret-token")
	h.open("j").rest()
	_, _, b := h.do("GET", "/fixture/journal", "", nil)
	want := fmt.Sprintf(`[{"event":"started","endpoint":"/generate","prompt":"journal fox","token":"%[1]s","session":"j"},`+
		`{"event":"completed","endpoint":"/generate","prompt":"journal fox","token":"%[1]s","session":"j"}]`, tokenDigest("secret-token"))
	if string(b) != want || bytes.Contains(b, []byte("secret-token")) {
		t.Errorf("journal = %s\nwant %s", b, want)
	}
	if code, _, _ := h.do("DELETE", "/fixture/journal", "", nil); code != http.StatusNoContent {
		t.Errorf("DELETE = %d", code)
	}
	if _, _, b := h.do("GET", "/fixture/journal", "", nil); string(b) != "[]" {
		t.Errorf("journal after DELETE = %s", b)
	}

	j := newJournal(3)
	for i := range 5 {
		j.add(journalEntry{event: fmt.Sprint(i)})
	}
	var got []any
	for _, e := range j.list() {
		got = append(got, e.(object).get("event"))
	}
	if fmt.Sprint(got) != "[2 3 4]" {
		t.Errorf("bounded journal keeps %v", got)
	}
}

func TestRootURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target string
		header []string
		want   string
	}{
		{"http://h:7860/gradio_api/queue/join", nil, "http://h:7860"},
		{"http://h/relay/up/gradio_api/queue/join", nil, "http://h/relay/up"},
		{"http://h/gradio_api/queue/join", []string{"X-Forwarded-Host", "a.hf.space", "X-Forwarded-Proto", "https"}, "https://a.hf.space"},
		{"http://h/gradio_api/queue/join", []string{"X-Forwarded-Proto", "https"}, "https://h"},
	} {
		r := httptest.NewRequest("POST", tc.target, nil)
		for i := 0; i < len(tc.header); i += 2 {
			r.Header.Set(tc.header[i], tc.header[i+1])
		}
		if got := rootURL(r, "/gradio_api/queue/join"); got != tc.want {
			t.Errorf("rootURL(%s) = %s, want %s", tc.target, got, tc.want)
		}
	}
}

// The whole protocol over real TCP, with concurrent sessions.
func TestManySessionsOverTCP(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{StepDelay: time.Millisecond, Concurrency: 4, QuotaSeconds: 1 << 20})
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- roundTrip(h.http, h.url, fmt.Sprint("many-", i)) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// roundTrip runs one two-step /generate job in session and reads its
// stream to the end.
func roundTrip(c *http.Client, base, session string) error {
	body := fmt.Sprintf(`{"data":[%q,2,16,16],"fn_index":0,"session_hash":%q}`, session, session)
	resp, err := c.Post(base+"/gradio_api/queue/join", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	var joined struct {
		EventID string `json:"event_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&joined)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("join: %v", err)
	}
	resp, err = c.Get(base + "/gradio_api/queue/data?session_hash=" + session)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	stream, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	done := `data: {"msg":"process_completed","event_id":"` + joined.EventID + `","output":{"data":`
	if !bytes.Contains(stream, []byte(done)) || !bytes.HasSuffix(stream, []byte("data: {\"msg\":\"close_stream\",\"event_id\":null}\n\n")) {
		return fmt.Errorf("%s: stream %s", session, stream)
	}
	return nil
}
