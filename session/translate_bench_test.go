package session

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// benchUpstream serves every file as the same bytes. Its visitors are not
// used by the translation benchmarks.
type benchUpstream struct{ file []byte }

func (u benchUpstream) Open(http.Header) Visitor { panic("not called in benchmarks") }

func (u benchUpstream) Download(_ context.Context, f upstream.FileData, _ int64) (*upstream.Download, error) {
	return &upstream.Download{Body: io.NopCloser(bytes.NewReader(u.file)), Name: f.Name(), MIME: "image/png", Size: int64(len(u.file))}, nil
}

func benchFloat(f float64) *float64 { return &f }
func benchString(s string) *string  { return &s }

// BenchmarkEncode measures the browser message of one upstream event:
// translate, including JSON encoding (and, for a result, fetching its file
// from an in-memory upstream and encoding the file message).
func BenchmarkEncode(b *testing.B) {
	file := map[string]any{"path": "/tmp/gradio/152cb990/image.png", "orig_name": "image.png",
		"meta": map[string]any{"_type": "gradio.FileData"}}
	for _, bc := range []struct {
		name string
		ev   upstream.Event
	}{
		{"accepted", &upstream.Accepted{EventID: "6d8846e69f0940ee876c93089086fbba"}},
		{"queued", &upstream.Queued{Rank: 2, QueueSize: 5, ETA: benchFloat(7.5)}},
		{"progress", &upstream.Progress{Steps: []upstream.ProgressStep{{Index: benchFloat(3), Length: benchFloat(8), Unit: benchString("steps")}}}},
		{"log", &upstream.Log{Level: "success", Title: "ZeroGPU queue", Message: "Successfully acquired a GPU"}},
		{"result-file-48KiB", &upstream.Completed{Data: []any{file, `{"token":"","prompt":"a red fox","steps":8}`}, Duration: 0.8}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(Config{API: &upstream.API{}}, nil, benchUpstream{file: make([]byte, 48<<10)})
			j := &job{id: "j1", endpoint: "/generate"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out, _, err := s.translate(ctx, j, bc.ev)
				if err != nil || out == nil {
					b.Fatalf("translate() = %v, %v", out, err)
				}
			}
		})
	}
}
