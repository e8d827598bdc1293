package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"testing/synctest"
)

// collectSSE runs parseSSE on r and returns copies of the events' data.
func collectSSE(r io.Reader, maxEvent int) ([][]byte, error) {
	var got [][]byte
	err := parseSSE(r, maxEvent, func(data []byte) error {
		got = append(got, bytes.Clone(data))
		return nil
	})
	return got, err
}

func bs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func equalEvents(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestParseSSE(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		max     int // 0 means 1 MiB
		want    [][]byte
		wantErr error
	}{
		{name: "empty", in: "", want: nil},
		{name: "one event", in: "data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\n",
			want: bs(`{"msg":"heartbeat","event_id":null}`)},
		{name: "two events", in: "data: a\n\ndata: b\n\n", want: bs("a", "b")},
		{name: "multi-line data joined", in: "data: a\ndata: b\ndata:  c\n\n", want: bs("a\nb\n c")},
		{name: "no space after colon", in: "data:a\n\n", want: bs("a")},
		{name: "only one space removed", in: "data:  a \n\n", want: bs(" a ")},
		{name: "empty data line", in: "data:\n\n", want: bs("")},
		{name: "data without colon", in: "data\n\n", want: bs("")},
		{name: "empty lines joined", in: "data\ndata\n\n", want: bs("\n")},
		{name: "colon inside value", in: "data: a: b\n\n", want: bs("a: b")},
		{name: "crlf", in: "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", want: bs("a\nb", "c")},
		{name: "cr", in: "data: a\rdata: b\r\rdata: c\r\r", want: bs("a\nb", "c")},
		{name: "mixed line ends", in: "data: a\r\n\rdata: b\n\r\n", want: bs("a", "b")},
		{name: "cr cr lf is two line ends", in: "data: a\r\r\ndata: b\n\n", want: bs("a", "b")},
		{name: "comments ignored", in: ": ping\ndata: a\n:\n\n: only a comment\n\n", want: bs("a")},
		{name: "other fields ignored", in: "event: message\nid: 7\nretry: 100\nfoo: bar\ndata: a\nid\n\n", want: bs("a")},
		{name: "field names are case-sensitive", in: "Data: a\nDATA: b\n\n", want: nil},
		{name: "similar field names ignored", in: "datax: a\ndat: b\ndata : c\n\n", want: nil},
		{name: "event without data not delivered", in: "event: ping\n\n\n\ndata: a\n\n", want: bs("a")},
		{name: "blank lines between events", in: "\n\ndata: a\n\n\n\ndata: b\n\n", want: bs("a", "b")},
		{name: "final event without blank line discarded", in: "data: a\n\ndata: b\n", want: bs("a")},
		{name: "final line without end discarded", in: "data: a\n\ndata: b", want: bs("a")},
		{name: "utf-8 and nul kept", in: "data: h\u00e9\x00llo \u2728\n\n", want: bs("h\u00e9\x00llo \u2728")},
		{name: "gradio stream", in: realGradioStream, want: bs(
			`{"msg":"estimation","event_id":"6cf8","rank":0,"queue_size":1,"rank_eta":null}`,
			`{"msg":"process_starts","event_id":"6cf8","eta":null}`,
			`{"msg":"process_generating","event_id":"6cf8","output":{"data":[[["append",[1,"content",0,"text"]," there"]]],"is_generating":true},"success":true,"time_limit":null}`,
			`{"msg":"close_stream","event_id":null}`)},
		{name: "event at limit", in: "data: abcd\n\n", max: 4, want: bs("abcd")},
		{name: "joined event at limit", in: "data: a\ndata: bc\n\n", max: 4, want: bs("a\nbc")},
		{name: "event over limit", in: "data: a\n\ndata: abcde\n\n", max: 4, want: bs("a"), wantErr: errSSETooLarge},
		{name: "joined event over limit", in: "data: ab\ndata: cd\n\n", max: 4, wantErr: errSSETooLarge},
		{name: "long comment within limit", in: ": " + strings.Repeat("x", 10000) + "\ndata: a\n\n", max: 4, want: bs("a")},
		{name: "long other field within limit", in: "event: " + strings.Repeat("x", 10000) + "\ndata: a\n\n", max: 4, want: bs("a")},
		{name: "long data line", in: "data: " + strings.Repeat("y", 10000) + "\n\n", want: bs(strings.Repeat("y", 10000))},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data err", iotest.DataErrReader},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				max := tt.max
				if max == 0 {
					max = 1 << 20
				}
				got, err := collectSSE(rd.wrap(strings.NewReader(tt.in)), max)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("parseSSE() error = %v, want %v", err, tt.wantErr)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("parseSSE() = %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// realGradioStream is shaped like a capture of gradio 6.31's /queue/data.
const realGradioStream = `data: {"msg":"estimation","event_id":"6cf8","rank":0,"queue_size":1,"rank_eta":null}

data: {"msg":"process_starts","event_id":"6cf8","eta":null}

data: {"msg":"process_generating","event_id":"6cf8","output":{"data":[[["append",[1,"content",0,"text"]," there"]]],"is_generating":true},"success":true,"time_limit":null}

data: {"msg":"close_stream","event_id":null}

`

func TestParseSSEErrors(t *testing.T) {
	t.Parallel()
	t.Run("fn error returned as is", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := parseSSE(strings.NewReader("data: a\n\ndata: b\n\n"), 100, func([]byte) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("parseSSE() = %v after %d calls, want %v after 1", err, calls, stop)
		}
	})
	t.Run("read error wrapped", func(t *testing.T) {
		boom := errors.New("boom")
		r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
		got, err := collectSSE(r, 100)
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "sse: ") {
			t.Errorf("parseSSE() error = %v, want sse: %v", err, boom)
		}
		if want := bs("a"); !equalEvents(got, want) {
			t.Errorf("parseSSE() = %q, want %q", got, want)
		}
	})
	t.Run("truncated body", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("data: a\n\n"), iotest.ErrReader(io.ErrUnexpectedEOF))
		if _, err := collectSSE(r, 100); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("parseSSE() error = %v, want %v", err, io.ErrUnexpectedEOF)
		}
	})
	t.Run("too large does not buffer", func(t *testing.T) {
		// An endless data line: the parse must stop soon after the limit.
		r := io.MultiReader(strings.NewReader("data: "), neverEnding('x'))
		err := parseSSE(r, 1000, func([]byte) error { return nil })
		if !errors.Is(err, errSSETooLarge) {
			t.Errorf("parseSSE() error = %v, want %v", err, errSSETooLarge)
		}
	})
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// TestParseSSEStreams checks that each event is handed over as soon as its
// blank line has been read, without waiting for more input.
func TestParseSSEStreams(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		events := make(chan string, 10)
		done := make(chan error, 1)
		go func() {
			done <- parseSSE(pr, 100, func(data []byte) error {
				events <- string(data)
				return nil
			})
		}()
		steps := []struct{ write, want string }{
			{"data: a\n", ""},
			{"\n", "a"},
			{"data: b\r\n\r\n", "b"},
			{"data: c\r\r", "c"}, // a "\n" could still follow the last "\r"
			{"\ndata: d\n\n", "d"},
			{": keepalive\n\ndata: e", ""},
			{"\n\n", "e"},
		}
		for _, s := range steps {
			if _, err := pw.Write([]byte(s.write)); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the parser is blocked reading the pipe
			got := ""
			select {
			case got = <-events:
			default:
			}
			if got != s.want {
				t.Fatalf("after writing %q: event %q, want %q", s.write, got, s.want)
			}
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Errorf("parseSSE() = %v, want nil", err)
		}
	})
}

// refSSE is a plain reading of the SSE spec on a complete input.
func refSSE(in []byte) [][]byte {
	s := strings.ReplaceAll(string(in), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	lines = lines[:len(lines)-1] // the last one has no line end
	var out [][]byte
	var data []string
	for _, line := range lines {
		if line == "" {
			if data != nil {
				out = append(out, []byte(strings.Join(data, "\n")))
			}
			data = nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		if field == "data" {
			data = append(data, strings.TrimPrefix(value, " "))
		}
	}
	return out
}

func FuzzParseSSE(f *testing.F) {
	f.Add([]byte(realGradioStream), uint16(0))
	f.Add([]byte("data: a\r\ndata:b\r\r\n:c\ndata\n\n"), uint16(3))
	f.Add([]byte("event: x\rid: 1\rdata:  y\r\r"), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		// A small limit exercises the size error; chunking the input must
		// never change the result.
		for _, max := range []int{len(in), int(limit)} {
			got, err := collectSSE(bytes.NewReader(in), max)
			total := 0
			for _, d := range got {
				total += len(d)
				if len(d) > max {
					t.Fatalf("delivered %d bytes, over the limit %d", len(d), max)
				}
			}
			if total > len(in) {
				t.Fatalf("delivered %d bytes from %d bytes of input", total, len(in))
			}
			got2, err2 := collectSSE(iotest.OneByteReader(bytes.NewReader(in)), max)
			if !equalEvents(got, got2) || fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Fatalf("one byte reader: %q, %v; want %q, %v", got2, err2, got, err)
			}
		}
		got, err := collectSSE(bytes.NewReader(in), len(in))
		if err != nil {
			t.Fatalf("parseSSE() error = %v with a limit of the input size", err)
		}
		if want := refSSE(in); !equalEvents(got, want) {
			t.Fatalf("parseSSE(%q) = %q, reference gives %q", in, got, want)
		}
	})
}

// benchStream is a realistic /queue/data stream: a generator job of 200
// steps on a ZeroGPU Space, with heartbeats and comments.
func benchStream() ([]byte, int) {
	var b strings.Builder
	n := 0
	ev := func(s string) {
		b.WriteString("data: ")
		b.WriteString(s)
		b.WriteString("\n\n")
		n++
	}
	const id = `"event_id":"6cf86736e41147baac1c750ee8addfc6"`
	ev(`{"msg":"estimation",` + id + `,"rank":0,"queue_size":1,"rank_eta":null}`)
	ev(`{"msg":"process_starts",` + id + `,"eta":5.1}`)
	ev(`{"msg":"log",` + id + `,"log":"Successfully acquired a GPU","level":"success","duration":10,"visible":true,"title":"ZeroGPU queue"}`)
	ev(`{"msg":"process_generating",` + id + `,"output":{"data":[[{"role":"user","metadata":null,"content":[{"text":"abc","type":"text"}],"options":null},{"role":"assistant","metadata":null,"content":[{"text":"Hello","type":"text"}],"options":null}]],"is_generating":true,"duration":0.0005419254302978516,"average_duration":0.0005419254302978516,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`)
	for i := range 200 {
		if i%50 == 0 {
			ev(`{"msg":"heartbeat","event_id":null}`)
			b.WriteString(": proxy keepalive\n\n")
		}
		ev(`{"msg":"progress",` + id + `,"progress_data":[{"index":` + strings.Repeat("1", 1+i%3) + `,"length":200,"unit":"steps","progress":null,"desc":null}]}`)
		ev(`{"msg":"process_generating",` + id + `,"output":{"data":[[["append",[1,"content",0,"text"]," there"]]],"is_generating":true,"duration":0.0002474784851074219,"average_duration":0.0003947019577026367,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`)
	}
	ev(`{"msg":"process_completed",` + id + `,"output":{"data":[{"path":"/tmp/gradio/3b1f0c9e/image.webp","url":"https://owner-space.hf.space/gradio_api/file=/tmp/gradio/3b1f0c9e/image.webp","size":null,"orig_name":"image.webp","mime_type":null,"is_stream":false,"meta":{"_type":"gradio.FileData"}},42],"is_generating":false,"duration":3.21,"average_duration":3.4,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"title":null,"used_cache":null,"cache_duration":null,"avg_time":null}`)
	ev(`{"msg":"close_stream","event_id":null}`)
	return []byte(b.String()), n
}

func BenchmarkParseSSE(b *testing.B) {
	stream, events := benchStream()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	r := bytes.NewReader(stream)
	for b.Loop() {
		r.Reset(stream)
		got := 0
		err := parseSSE(r, 1<<20, func([]byte) error { got++; return nil })
		if err != nil || got != events {
			b.Fatalf("parseSSE() = %v after %d events, want nil after %d", err, got, events)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}
