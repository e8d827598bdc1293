package upstream

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkPayload measures building a join's data, with the inputs
// checked against their schemas and without (the cost before checks).
func BenchmarkPayload(b *testing.B) {
	api := goldenAPI(b, "6.31.0")
	chat := make([]any, 20)
	for i := range chat {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		chat[i] = map[string]any{"role": role, "content": []any{map[string]any{"type": "text", "text": fmt.Sprintf("message %d of the conversation", i)}}}
	}
	upload := map[string]any{"path": "/tmp/gradio/1f3a/dot.png", "orig_name": "dot.png", "size": json.Number("75"),
		"meta": map[string]any{"_type": "gradio.FileData"}}
	for _, bc := range []struct {
		name, endpoint string
		data           []any
	}{
		{"text", "/greet", []any{"a red fox in the snow"}},
		{"six typed inputs", "/describe", []any{json.Number("20"), json.Number("7.5"), "ddim", "paint", []any{"hires"}, json.Number("3")}},
		{"image and slider", "/image_info", []any{upload, json.Number("0.5")}},
		{"chatbot of 20 messages", "/history_length", []any{chat}},
	} {
		ep := mustEndpoint(b, api, bc.endpoint)
		unchecked := *ep
		unchecked.Inputs = append([]Param(nil), ep.Inputs...)
		for i := range unchecked.Inputs {
			unchecked.Inputs[i].schema = nil
		}
		for _, v := range []struct {
			name string
			ep   *Endpoint
		}{{"checked", ep}, {"unchecked", &unchecked}} {
			b.Run(bc.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.ep.payload(Call{Data: bc.data}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
