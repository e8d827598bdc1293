package upstream

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/spacerelay/spacerelay/upstream/demospace"
)

// Messages of the demo Space's /generate and /preview as Gradio 6.31
// sends them (testdata/gradio/transcripts).
const (
	benchID       = `"event_id":"6d8846e69f0940ee876c93089086fbba"`
	benchProgress = `{"msg":"progress",` + benchID + `,"progress_data":[{"index":3,"length":8,"unit":"steps","progress":null,"desc":null}]}`
	benchEstimate = `{"msg":"estimation",` + benchID + `,"rank":2,"queue_size":5,"rank_eta":7.5}`
	benchLog      = `{"msg":"log",` + benchID + `,"log":"Successfully acquired a GPU","level":"success","duration":10.0,"visible":true,"title":"ZeroGPU queue"}`
	benchFile     = `{"path":"/tmp/gradio/152cb990d26fb88abcf790c939a7df8067ba0d9541062dc549ec3ef073c7b667/image.png","url":"http://127.0.0.1:7906/gradio_api/file=/tmp/gradio/152cb990d26fb88abcf790c939a7df8067ba0d9541062dc549ec3ef073c7b667/image.png","size":null,"orig_name":"image.png","mime_type":null,"is_stream":false,"meta":{"_type":"gradio.FileData"}}`
	benchFirst    = `{"msg":"process_generating",` + benchID + `,"output":{"data":[` + benchFile + `],"is_generating":true,"duration":0.10244250297546387,"average_duration":0.10244250297546387,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`
	benchDiff     = `{"msg":"process_generating",` + benchID + `,"output":{"data":[[["replace",["path"],"/tmp/gradio/d3306cabddef1c149a39128ebf7651f7a56174d42bd3c90bd3a55035c2d6e90d/image.png"],["replace",["url"],"http://127.0.0.1:7906/gradio_api/file=/tmp/gradio/d3306cabddef1c149a39128ebf7651f7a56174d42bd3c90bd3a55035c2d6e90d/image.png"]]],"is_generating":true,"duration":0.1006622314453125,"average_duration":0.10155236721038818,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"time_limit":null}`
	benchResult   = `{"msg":"process_completed",` + benchID + `,"output":{"data":[` + benchFile + `,"{\"token\":\"\",\"prompt\":\"a red fox\",\"steps\":8}"],"is_generating":false,"duration":0.8,"average_duration":0.8,"render_config":null,"changed_state_ids":[],"used_cache":null},"success":true,"title":null,"used_cache":null,"cache_duration":0.8,"avg_time":0.8}`
)

// benchAPI discovers the demo Space's API.
func benchAPI(b *testing.B) *API {
	b.Helper()
	space := demospace.New(demospace.Config{})
	srv := httptest.NewServer(space)
	b.Cleanup(func() { srv.Close(); space.Close() })
	c, err := New(Config{Target: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	api, err := c.API(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	c.CloseIdleConnections()
	return api
}

// BenchmarkTranslate measures what the upstream client does with one SSE
// event's data: decode the message and turn it into an Event (for a
// generator's edit list, apply it to the previous output).
func BenchmarkTranslate(b *testing.B) {
	api := benchAPI(b)
	for _, bc := range []struct{ name, endpoint, msg string }{
		{"progress", "/generate", benchProgress},
		{"estimation", "/generate", benchEstimate},
		{"log", "/generate", benchLog},
		{"generating-diff", "/preview", benchDiff},
		{"completed-file", "/generate", benchResult},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ep, err := api.Endpoint(bc.endpoint)
			if err != nil {
				b.Fatal(err)
			}
			t := &translator{api: api, ep: ep}
			if m, err := decodeMessage([]byte(benchFirst)); err != nil {
				b.Fatal(err)
			} else if _, err := t.event(m); err != nil { // the edit lists' base
				b.Fatal(err)
			}
			raw := []byte(bc.msg)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := decodeMessage(raw)
				if err != nil {
					b.Fatal(err)
				}
				ev, err := t.event(m)
				if err != nil || ev == nil {
					b.Fatalf("event() = %v, %v", ev, err)
				}
			}
		})
	}
}
