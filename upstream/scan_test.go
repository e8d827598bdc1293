package upstream

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// scanSeeds are stream messages as Gradio sends them (the transcripts of
// testdata/gradio), the benchmarks' messages, and shapes the scanner must
// leave to encoding/json.
func scanSeeds(t testing.TB) []string {
	seeds := []string{benchProgress, benchEstimate, benchLog, benchFirst, benchDiff, benchResult,
		`{"msg":"heartbeat"}`, `{"msg":"close_stream","event_id":null}`,
		`{"msg":"unexpected_error","message":"Session not found.","session_not_found":true}`,
		`{"msg":"log","event_id":"e","log":"caf\u00e9 \"quoted\"","level":"info","title":null}`,
		`{"MSG":"progress","event_id":"e"}`, `{"msg":"estimation","rank":1.5}`, `{"msg":"estimation","rank":1e2}`,
		`{"msg":"progress","progress_data":[{"index":01}]}`, `{"msg":"x","output":{"data":[1,{"a":"]"}]},"success":true}`,
		`{"msg":"x","output":null}`, `{"msg":"x","extra":[1,2,{"k":null}],"event_id":"e"}`, `{"msg":"x",}`,
		` { "msg" : "progress" , "progress_data" : [ { "index" : 1 , "length" : 2.5e1 , "unit" : null } ] } `,
		`{"msg":"x","event_id":"e","event_id":null}`, `{"msg":"\xff"}`, `null`, `{}`, `[]`, `{"msg":"x"} x`,
		`{"msg":"progress","progress_data":[{"index":1}],"progress_data":[{"length":2}]}`,
		`{"msg":"progress","progress_data":[{"index":1,"index":null}]}`,
		`{"msg":"x","output":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	}
	return append(seeds, transcriptMessages(t)...)
}

// transcriptMessages are the stream messages of the Gradio transcripts.
func transcriptMessages(t testing.TB) []string {
	var msgs []string
	files, _ := filepath.Glob("../testdata/gradio/transcripts/*.txt")
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				msgs = append(msgs, data)
			}
		}
		fh.Close()
	}
	return msgs
}

// The scanner decodes exactly what encoding/json decodes, where it
// decodes at all.
func FuzzScanMessage(f *testing.F) {
	for _, s := range scanSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := scanMessage(b)
		if !ok {
			return
		}
		ref, err := decodeMessageJSON(b)
		if err != nil {
			t.Fatalf("scanMessage(%q) decoded what encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("scanMessage(%q) =\n%+v\nencoding/json:\n%+v", b, fast, ref)
		}
	})
}

// The scanner handles the messages that matter for speed itself.
func TestScanMessageTakesTheHotShapes(t *testing.T) {
	for _, s := range []string{benchProgress, benchEstimate, benchLog, benchResult, `{"msg":"heartbeat"}`} {
		if _, ok := scanMessage([]byte(s)); !ok {
			t.Errorf("scanMessage(%s) left it to encoding/json", s)
		}
	}
	n, fast := 0, 0
	for _, s := range transcriptMessages(t) {
		if strings.Contains(s, `"msg":"progress"`) {
			n++
			if _, ok := scanMessage([]byte(s)); ok {
				fast++
			}
		}
	}
	if n == 0 || fast != n {
		t.Errorf("%d of %d progress messages of the transcripts scanned", fast, n)
	}
}
