package demospace

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

const step = 100 * time.Millisecond

// A full /generate run: every message, in Gradio's order and field order,
// with exact durations on the fake clock.
func TestGenerateRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		id := h.join("s1", 0, []any{"a cat", 3, 4, 2}, "x-ip-token", "tok")
		tok := tokenDigest("tok")
		got := h.open("s1").rest()
		want := []string{
			`{"msg":"estimation","event_id":"ID","rank":0,"queue_size":1,"rank_eta":null}`,
			`{"msg":"process_starts","event_id":"ID","eta":null}`,
			`{"msg":"log","event_id":"ID","log":"Waiting for a GPU to become available","level":"info","duration":10.0,"visible":true,"title":"ZeroGPU queue"}`,
			`{"msg":"log","event_id":"ID","log":"Successfully acquired a GPU","level":"success","duration":10.0,"visible":true,"title":"ZeroGPU queue"}`,
			`{"msg":"progress","event_id":"ID","progress_data":[{"index":0,"length":3,"unit":"steps","progress":null,"desc":null}]}`,
			`{"msg":"progress","event_id":"ID","progress_data":[{"index":1,"length":3,"unit":"steps","progress":null,"desc":null}]}`,
			`{"msg":"progress","event_id":"ID","progress_data":[{"index":2,"length":3,"unit":"steps","progress":null,"desc":null}]}`,
			`{"msg":"process_completed","event_id":"ID","output":{"data":[FILE,"{\"token\":\"TOK\",\"prompt\":\"a cat\",\"steps\":3}"],"is_generating":false,"duration":0.3,"average_duration":0.3,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"title":null,"used_cache":null,"cache_duration":0.3,"avg_time":0.3}`,
			`{"msg":"close_stream","event_id":null}`,
		}
		if len(got) != len(want) {
			t.Fatalf("messages = %s, want %d", kinds(got), len(want))
		}
		file := fileJSON(t, got[7], 0)
		for i, w := range want {
			w = strings.NewReplacer("ID", id, "FILE", file, "TOK", tok).Replace(w)
			if got[i].raw != w {
				t.Errorf("message %d =\n%s\nwant\n%s", i, got[i].raw, w)
			}
		}
		if !strings.HasPrefix(file, `{"path":"/tmp/gradio/`) || !strings.Contains(file, `"url":"http://space/gradio_api/file=/tmp/gradio/`) {
			t.Errorf("file = %s", file)
		}

		// The second run knows the average.
		id = h.join("s2", 0, []any{"a dog", 1, 4, 2})
		ms := h.open("s2").until(kindStarts, id)
		if ms[0].raw != `{"msg":"estimation","event_id":"`+id+`","rank":0,"queue_size":1,"rank_eta":0.3}` ||
			ms[1].raw != `{"msg":"process_starts","event_id":"`+id+`","eta":0.3}` {
			t.Errorf("second run starts with %s, %s", ms[0].raw, ms[1].raw)
		}
		if j := h.journalOf("a cat"); j != "started completed" {
			t.Errorf("journal = %q", j)
		}
	})
}

// fileJSON returns output i of a completion as raw JSON.
func fileJSON(t *testing.T, m msg, i int) string {
	t.Helper()
	var v struct {
		Output struct{ Data []json.RawMessage }
	}
	if err := json.Unmarshal([]byte(m.raw), &v); err != nil || len(v.Output.Data) <= i {
		t.Fatalf("no output %d in %s", i, m.raw)
	}
	return string(v.Output.Data[i])
}

func TestQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		h.join("q1", 0, []any{"greedy", 75, 8, 8}, "X-IP-Token", "greedy")
		ms := h.open("q1").rest()
		want := `{"msg":"process_completed","event_id":"ID","output":{"error":"You have exceeded your free ZeroGPU quota (75s requested vs. 60s left). Try again in 0:02:30.","duration":10,"visible":true,"title":"ZeroGPU quota exceeded"},"success":false,"title":"ZeroGPU quota exceeded","used_cache":null,"cache_duration":null,"avg_time":null}`
		if kinds(ms) != "estimation process_starts process_completed close_stream" ||
			ms[2].raw != strings.ReplaceAll(want, "ID", ms[2].eventID()) {
			t.Errorf("over quota: %s\n%s", kinds(ms), ms[2].raw)
		}
		if j := h.journalOf("greedy"); j != "started quota" {
			t.Errorf("journal = %q", j)
		}
		// 60 s are spent in two jobs; a third asks for more than is left.
		for i, steps := range []int{50, 10, 1} {
			h.join("q2", 0, []any{fmt.Sprint("modest", i), steps, 8, 8}, "X-IP-Token", "modest")
			ms := h.open("q2").until(kindCompleted, "")
			if ok := ms[len(ms)-1].fields["success"] == true; ok != (i < 2) {
				t.Errorf("job %d success = %v", i, ok)
			}
		}
	})
}

func TestAppErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		for _, tc := range []struct{ prompt, output, title string }{
			{"raise:a <i>cat</i> & co", `{"error":"Cannot draw <b>a <i>cat</i> & co</b>","duration":10,"visible":true,"title":"Bad prompt"}`, `"Bad prompt"`},
			{"crash:secret", `{"error":null}`, `"Error"`},
		} {
			h.join("e", 0, []any{tc.prompt, 1, 8, 8})
			ms := h.open("e").rest()
			c := ms[len(ms)-2].raw
			if !strings.Contains(c, `"output":`+tc.output+`,"success":false,"title":`+tc.title+`,`) {
				t.Errorf("%s: %s", tc.prompt, c)
			}
			if j := h.journalOf(tc.prompt); j != "started" {
				t.Errorf("%s: journal = %q", tc.prompt, j)
			}
		}
		// Bad inputs fail before anything is journaled.
		for _, data := range [][]any{{"bad"}, {"bad", "2", 8, 8}, {"bad", 1, 0, 8}, {"bad", 3601, 8, 8}, {nil, 1, 8, 8}} {
			h.join("e", 0, data)
			ms := h.open("e").rest()
			if c := ms[len(ms)-2].raw; !strings.Contains(c, `"output":{"error":null},"success":false,"title":"Error"`) {
				t.Errorf("data %v: %s", data, c)
			}
		}
		if j := h.journalOf("bad"); j != "" {
			t.Errorf("bad inputs were journaled: %q", j)
		}
		// As gr.Textbox and gr.Number(precision=0) preprocess them.
		h.join("e", 0, []any{5, 2.5, true, 1.0})
		ms := h.open("e").rest()
		if info := fmt.Sprint(ms[len(ms)-2].output()["data"].([]any)[1]); info != `{"token":"","prompt":"5","steps":2}` {
			t.Errorf("info = %s", info)
		}
	})
}

// /preview reports the progress of each step before it, as /generate
// does; it sends full values first, then Gradio's edit lists, and full
// values again at the end.
func TestPreviewEdits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		id := h.join("p", 1, []any{"fox", 3})
		ms := h.open("p").rest()
		if k := kinds(ms); k != "estimation process_starts progress process_generating progress process_generating progress process_generating process_completed close_stream" {
			t.Fatalf("messages = %s", k)
		}
		var value map[string]any
		for i := range 3 {
			p, m := ms[2+2*i], ms[3+2*i]
			if want := fmt.Sprintf(`{"msg":"progress","event_id":"%s","progress_data":[{"index":%d,"length":3,"unit":"steps","progress":null,"desc":null}]}`, id, i); p.raw != want {
				t.Errorf("progress %d =\n%s\nwant\n%s", i, p.raw, want)
			}
			out := m.output()
			if out["is_generating"] != true || out["duration"] != 0.1 || m.fields["time_limit"] != nil {
				t.Errorf("generating %d: %s", i, m.raw)
			}
			data := out["data"].([]any)
			if i == 0 {
				value = data[0].(map[string]any)
				continue
			}
			edits := data[0].([]any)
			if len(edits) != 2 {
				t.Fatalf("edits %d = %v", i, edits)
			}
			for j, key := range []string{"path", "url"} {
				e := edits[j].([]any)
				if e[0] != "replace" || fmt.Sprint(e[1]) != "["+key+"]" {
					t.Errorf("edit %v, want replace [%s]", e, key)
				}
				value[key] = e[2]
			}
		}
		final := ms[8].output()["data"].([]any)[0].(map[string]any)
		if fmt.Sprint(final) != fmt.Sprint(value) {
			t.Errorf("final %v, edits give %v", final, value)
		}
		if d := ms[8].output()["duration"]; d != 0.0 {
			t.Errorf("final call duration = %v, want 0", d)
		}
		if j := h.journalOf("fox"); j != "started completed" || id == "" {
			t.Errorf("journal = %q", j)
		}

		h.joinBody(map[string]any{"data": []any{"fox", 2}, "fn_index": 1, "session_hash": "p", "simple_format": true})
		for _, m := range h.open("p").rest() {
			if m.kind() == kindGenerating {
				if _, ok := m.output()["data"].([]any)[0].(map[string]any); !ok {
					t.Errorf("simple_format update is not a value: %s", m.raw)
				}
			}
		}
	})
}

func TestCountAndWhoami(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		result := func(session string, fn int, data []any, hdr ...string) string {
			h.join(session, fn, data, hdr...)
			ms := h.open(session).until(kindCompleted, "")
			return fmt.Sprint(ms[len(ms)-1].output()["data"])
		}
		for _, want := range []string{"[1 <nil>]", "[2 <nil>]"} {
			if got := result("c1", 2, []any{nil}); got != want {
				t.Errorf("count = %s, want %s", got, want)
			}
		}
		if got := result("c2", 2, []any{nil}); got != "[1 <nil>]" {
			t.Errorf("count of another session = %s", got)
		}
		if got := result("w", 3, []any{}, "X-Ip-Token", "abc"); got != "[ba7816bf8f01]" {
			t.Errorf("whoami = %s", got)
		}
		if got := result("w", 3, []any{}); got != "[]" {
			t.Errorf("whoami without token = %s", got)
		}
	})
}

func TestHeartbeatAndNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step, QuotaSeconds: 1000})
		ms := h.open("nobody").rest()
		if len(ms) != 1 || ms[0].raw != `{"msg":"unexpected_error","event_id":null,"message":"404: Not Found","session_not_found":true,"success":false}` {
			t.Errorf("unknown session: %v", ms)
		}
		h.join("hb", 0, []any{"slow", 200, 8, 8}) // 20 s
		s := h.open("hb")
		start := time.Now()
		if m := s.until(kindHeartbeat, ""); m[len(m)-1].raw != `{"msg":"heartbeat","event_id":null}` {
			t.Errorf("heartbeat = %s", m[len(m)-1].raw)
		}
		if d := time.Since(start); d != 15*time.Second {
			t.Errorf("heartbeat after %v", d)
		}

		// The heartbeat route says ALIVE at once and every 15 s.
		resp, err := h.http.Get(h.url + "/gradio_api/heartbeat/hb")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := make([]byte, 13)
		for i := range 2 {
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data: ALIVE\n\n" {
				t.Errorf("heartbeat %d: %q %v", i, buf, err)
			}
		}
		if d := time.Since(start); d != 30*time.Second {
			t.Errorf("second ALIVE after %v", d)
		}
	})
}

// Close cancels running jobs, drops queued ones and ends the streams.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{StepDelay: step})
		h.join("c", 0, []any{"running", 10, 8, 8})
		h.join("c", 0, []any{"queued", 1, 8, 8})
		s := h.open("c")
		s.until(kindProgress, "")
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			h.space.Close() // waits for the stream, which waits for us to read
		}()
		ms := s.rest()
		<-closed
		if last := ms[len(ms)-1].raw; last != `{"msg":"unexpected_error","event_id":null,"message":"Server stopped unexpectedly.","session_not_found":false,"success":false}` {
			t.Errorf("last message = %s", last)
		}
		if j := h.journalOf("running") + "|" + h.journalOf("queued"); j != "started cancelled|" {
			t.Errorf("journals = %q", j)
		}
		code, _, b := h.do("POST", "/gradio_api/queue/join", "application/json", []byte(`{"data":[],"fn_index":3,"session_hash":"c"}`))
		if code != 503 || string(b) != `{"detail":"Queue is stopped."}` {
			t.Errorf("join after Close = %d %s", code, b)
		}
	})
}
