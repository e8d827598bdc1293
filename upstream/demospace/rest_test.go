package demospace

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
)

// callJob posts body to /call/<api> and returns the GET's whole stream.
func (h *harness) callJob(api, body string) string {
	h.t.Helper()
	code, _, resp := h.do("POST", "/gradio_api/call/"+api, "application/json", []byte(body))
	var out struct {
		EventID string `json:"event_id"`
	}
	if code != http.StatusOK || json.Unmarshal(resp, &out) != nil {
		h.t.Fatalf("POST /call/%s %s = %d %s", api, body, code, resp)
	}
	_, hdr, stream := h.do("GET", "/gradio_api/call/"+api+"/"+out.EventID, "", nil)
	if ct := hdr.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		h.t.Errorf("GET /call/%s/<id>: Content-Type %q", api, ct)
	}
	return string(stream)
}

func TestCallAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		got := h.callJob("ticks", `{"data":[2]}`)
		want := "event: generating\ndata: [\"tick 1 of 2\"]\n\nevent: generating\ndata: [\"tick 2 of 2\"]\n\nevent: complete\ndata: [\"tick 2 of 2\"]\n\n"
		if got != want {
			t.Errorf("/call/ticks stream = %q, want %q", got, want)
		}
		got = h.callJob("generate", `{"data":["raise:b\u00e9d",1,8,8]}`)
		want = "event: error\ndata: {\"error\": \"Cannot draw <b>b\\u00e9d</b>\", \"duration\": 10, \"visible\": true, \"title\": \"Bad prompt\"}\n\n"
		if got != want {
			t.Errorf("/call/generate error stream = %q, want %q", got, want)
		}
		got = h.callJob("generate", `{"data":["crash:x",1,8,8]}`)
		if want := "event: error\ndata: {\"error\": null}\n\n"; got != want {
			t.Errorf("/call/generate hidden error = %q, want %q", got, want)
		}
		// /count's State slot is filled in when data has one value per
		// parameter (none here), and its State output comes back null.
		if got := h.callJob("count", `{"data":[]}`); got != "event: complete\ndata: [1, null]\n\n" {
			t.Errorf("/call/count = %q", got)
		}
		// v2 takes the parameters by name, with defaults.
		code, _, resp := h.do("POST", "/gradio_api/call/v2/generate", "application/json", []byte(`{"prompt":"v2 fox","steps":1}`))
		var out struct {
			EventID string `json:"event_id"`
		}
		if code != http.StatusOK || json.Unmarshal(resp, &out) != nil {
			t.Fatalf("POST /call/v2/generate = %d %s", code, resp)
		}
		_, _, stream := h.do("GET", "/gradio_api/call/v2/generate/"+out.EventID, "", nil)
		if !strings.Contains(string(stream), `\"prompt\":\"v2 fox\",\"steps\":1}"]`) {
			t.Errorf("/call/v2/generate stream = %s", stream)
		}
	})
}

func TestCallErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		for _, tc := range []struct {
			path, body string
			code       int
			want       string
		}{
			{"/gradio_api/call/nope", `{"data":[]}`, 500, "Internal Server Error"},
			{"/gradio_api/call/generate", `{"dat":[]}`, 422, `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required","input":{"dat":[]}}]}`},
		} {
			code, _, got := h.do("POST", tc.path, "application/json", []byte(tc.body))
			if code != tc.code || string(got) != tc.want {
				t.Errorf("POST %s %s = %d %s, want %d %s", tc.path, tc.body, code, got, tc.code, tc.want)
			}
		}
		_, _, got := h.do("GET", "/gradio_api/call/generate/0123", "", nil)
		if want := "event: error\ndata: \"404: Not Found\"\n\n"; string(got) != want {
			t.Errorf("GET of an unknown event = %q, want %q", got, want)
		}
	})
}

func TestRunDirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		code, _, got := h.do("POST", "/gradio_api/run/add_message", "application/json", []byte(`{"data":["hi", []]}`))
		want := `{"data":["",[{"role":"user","metadata":null,"content":[{"text":"hi","type":"text"}],"options":null}]],"is_generating":false,"duration":0.0,"average_duration":0.0,"render_config":null,"changed_state_ids":[],"used_cache":null}`
		if code != 200 || string(got) != want {
			t.Errorf("run add_message = %d %s, want %s", code, got, want)
		}
		for _, tc := range []struct {
			path, body string
			code       int
			want       string
		}{
			{"/gradio_api/run/add_message", `{"data":["x"]}`, 500, `{"error":null}`},
			{"/gradio_api/api/add_message", `{"data":["hi", [{"role":"user","content":"a string"}]]}`, 500, `{"error":null}`},
			{"/gradio_api/run/generate", `{"data":["x",1,8,8]}`, 404, `{"detail":"This API endpoint does not accept direct HTTP POST requests. Please join the queue to use this API."}`},
			{"/gradio_api/run/nope", `{"data":[]}`, 500, "Internal Server Error"},
			{"/gradio_api/reset", `{"event_id":"x"}`, 200, `{"success":true}`},
		} {
			code, _, got := h.do("POST", tc.path, "application/json", []byte(tc.body))
			if code != tc.code || string(got) != tc.want {
				t.Errorf("POST %s %s = %d %s, want %d %s", tc.path, tc.body, code, got, tc.code, tc.want)
			}
		}
	})
}

// upload posts data as one file and returns its FileData.
func (h *harness) upload(name string, data []byte) map[string]any {
	h.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("files", name)
	part.Write(data)
	mw.Close()
	code, _, resp := h.do("POST", "/gradio_api/upload", mw.FormDataContentType(), body.Bytes())
	var paths []string
	if code != 200 || json.Unmarshal(resp, &paths) != nil || len(paths) != 1 {
		h.t.Fatalf("upload = %d %s", code, resp)
	}
	return map[string]any{"path": paths[0], "orig_name": name, "meta": map[string]any{"_type": "gradio.FileData"}}
}

func testPNG(t *testing.T) ([]byte, *image.NRGBA) {
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i, c := range []color.NRGBA{{10, 20, 30, 255}, {200, 100, 0, 255}, {255, 255, 255, 128},
		{0, 0, 0, 255}, {1, 2, 3, 0}, {90, 180, 45, 255}} {
		img.Set(i%3, i/3, c)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), img
}

func TestRestyle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		data, src := testPNG(t)
		fd := h.upload("small.png", data)
		h.join("r1", 5, []any{fd, "inverted", 100, "invert"}, "X-IP-Token", "restyler")
		ms := h.open("r1").rest()
		if got := kinds(ms); got != "estimation process_starts progress progress progress progress process_completed close_stream" {
			t.Fatalf("restyle messages = %s", got)
		}
		out := ms[6].output()["data"].([]any)
		var info map[string]any
		json.Unmarshal([]byte(out[1].(string)), &info)
		if want := fmt.Sprintf("%x", sha256Sum(data)); info["sha256"] != want || info["width"] != 3.0 || info["style"] != "invert" {
			t.Errorf("info = %v, want sha256 %s", info, want)
		}
		_, _, file := h.do("GET", "/gradio_api/file="+out[0].(map[string]any)["path"].(string), "", nil)
		got, err := png.Decode(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		for y := range 2 {
			for x := range 3 {
				s := src.NRGBAAt(x, y)
				r, g, b, _ := got.At(x, y).RGBA()
				if want := [3]uint32{255 - uint32(s.R), 255 - uint32(s.G), 255 - uint32(s.B)}; [3]uint32{r >> 8, g >> 8, b >> 8} != want {
					t.Errorf("pixel %d,%d = %v, want %v (alpha dropped, then inverted)", x, y, [3]uint32{r >> 8, g >> 8, b >> 8}, want)
				}
			}
		}
		if j := h.journalOf("inverted"); j != "started completed" {
			t.Errorf("journal = %q", j)
		}
	})
}

func TestRestyleRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		data, _ := testPNG(t)
		fd := h.upload("small.png", data)
		notImage := h.upload("notes.png", []byte("not an image"))
		for i, tc := range []struct {
			data []any
			want string
		}{
			{[]any{nil, "p", 50, "invert"}, `{"error":"Give an image to restyle.","duration":10,"visible":true,"title":"No image"}`},
			{[]any{fd, "p", 150, "invert"}, `{"error":"Value 150 is greater than maximum value 100.","duration":10,"visible":true,"title":"Error"}`},
			{[]any{fd, "p", -0.5, "invert"}, `{"error":"Value -0.5 is less than minimum value 0.","duration":10,"visible":true,"title":"Error"}`},
			{[]any{fd, "p", 50, "sepia"}, `{"error":"Value: sepia is not in the list of choices: ['invert', 'grayscale', 'tint']","duration":10,"visible":true,"title":"Error"}`},
			{[]any{fd, "p", 50.5, "invert"}, `{"error":null}`},
			{[]any{notImage, "p", 50, "invert"}, `{"error":null}`},
			{[]any{map[string]any{"path": "/etc/passwd", "meta": map[string]any{"_type": "gradio.FileData"}}, "p", 50, "invert"}, `{"error":null}`},
			{[]any{"data:image/png;base64,AAAA", "p", 50, "invert"}, `{"error":null}`},
		} {
			session := fmt.Sprint("bad", i)
			h.join(session, 5, tc.data)
			ms := h.open(session).until(kindCompleted, "")
			if got, _ := json.Marshal(ms[len(ms)-1].fields["output"]); !sameJSON(string(got), tc.want) {
				t.Errorf("restyle %v: output %s, want %s", tc.data, got, tc.want)
			}
		}
		if j := h.journalOf("p"); j != "" {
			t.Errorf("refused inputs reached the app: journal %q", j)
		}
	})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil &&
		fmt.Sprint(x) == fmt.Sprint(y)
}

func TestPyJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`["a,b:c",{"k":1.5,"l":[null,true]}]`: `["a,b:c", {"k": 1.5, "l": [null, true]}]`,
		`"é😀\"\\"`:                            `"\u00e9\ud83d\ude00\"\\"`,
		`{ "x" : [ 1 , 2 ] }`:                 `{"x": [1, 2]}`,
	} {
		if got := string(pyJSON([]byte(in))); got != want {
			t.Errorf("pyJSON(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestMaxUploadBytes(t *testing.T) {
	t.Parallel()
	h := newTCPHarness(t, Config{MaxUploadBytes: 100})
	var cfg struct {
		MaxFileSize int `json:"max_file_size"`
	}
	h.getJSON("/config", &cfg)
	if cfg.MaxFileSize != 100 {
		t.Errorf("max_file_size = %d, want 100", cfg.MaxFileSize)
	}
	h.upload("ok.bin", make([]byte, 100))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("files", "big.bin")
	part.Write(make([]byte, 101))
	mw.Close()
	if code, _, resp := h.do("POST", "/gradio_api/upload", mw.FormDataContentType(), body.Bytes()); code != 413 ||
		string(resp) != "File size exceeded maximum allowed size of 100 bytes." {
		t.Errorf("upload of 101 bytes = %d %s, want 413", code, resp)
	}
}
