package session

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// benchVisitor serves every file as the same bytes; nothing else of it is
// used by the translation benchmarks.
type benchVisitor struct{ file []byte }

func (v benchVisitor) Download(_ context.Context, f upstream.FileData, _ int64) (*upstream.Download, error) {
	return &upstream.Download{Body: io.NopCloser(bytes.NewReader(v.file)), Name: f.Name(), MIME: "image/png", Size: int64(len(v.file))}, nil
}

func (benchVisitor) Submit(context.Context, upstream.Call) (Job, error) {
	panic("not called in benchmarks")
}
func (benchVisitor) Upload(context.Context, upstream.Upload, int64) (map[string]any, error) {
	panic("not called in benchmarks")
}
func (benchVisitor) SetHeader(http.Header) {}
func (benchVisitor) Close() error          { return nil }

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
			s := New(Config{API: &upstream.API{}}, nil, nil)
			v := benchVisitor{file: make([]byte, 48<<10)}
			j := &job{id: "j1", endpoint: "/generate"}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out, err := s.translate(ctx, v, j, bc.ev)
				if err != nil || out == nil {
					b.Fatalf("translate() = %v, %v", out, err)
				}
			}
		})
	}
}
