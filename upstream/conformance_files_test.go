package upstream_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// The scenarios of SPEC.md's file endpoints, run like the others against
// the demo Space and every real Gradio.
func init() {
	scenarios = append(scenarios, []struct {
		name string
		run  func(t *testing.T, sp space, c *upstream.Client)
	}{
		{"file inputs", testFileInputs},
	}...)
}

// checksumsReport is what the file endpoints answer (SPEC.md).
type checksumsReport struct {
	Count int
	Files []struct {
		Kind    string
		SHA256  string
		Caption *string
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Files uploaded to the Space, named by reference and placed by
// Endpoint.PlaceFiles, reach a Gallery, a File of several files, an Audio
// and a Video intact on every version: the Space reports the sha256 of
// each, and for a gallery which object each item came in. A video put in
// a gallery as an image fails in the Space, as it would with Gradio's own
// frontend: the kind is the Space's to check, not the schema's.
func testFileInputs(t *testing.T, sp space, c *upstream.Client) {
	ctx := testCtx(t)
	s, _ := visitor(t, c)
	contents := map[string][]byte{
		"dot.png":  tinyPNG(t),
		"clip.mp4": bytes.Repeat([]byte("not really a video "), 50),
		"tone.wav": bytes.Repeat([]byte("RIFF and then some "), 40),
	}
	uploaded := map[string]upstream.FileRef{}
	for name, b := range contents {
		fd, err := c.Upload(ctx, name, bytes.NewReader(b), 1<<20)
		if err != nil {
			t.Fatalf("Upload(%s) = %v", name, err)
		}
		uploaded[name] = upstream.FileRef{File: fd, Name: name} // no media type: the name says
	}
	api, err := c.API(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := func(name string) map[string]any { return map[string]any{"ref": name} }
	for _, tc := range []struct {
		endpoint string
		value    any
		want     []string // file name [kind [caption]] of each entry
	}{
		{"/gallery", []any{ref("dot.png"), ref("clip.mp4"), map[string]any{"ref": "dot.png", "caption": "a dot"}},
			[]string{"dot.png image", "clip.mp4 video", "dot.png image a dot"}},
		{"/gallery", []any{}, nil},
		{"/files", []any{ref("tone.wav"), ref("dot.png")}, []string{"tone.wav", "dot.png"}},
		{"/audio", ref("tone.wav"), []string{"tone.wav"}},
		{"/video", ref("clip.mp4"), []string{"clip.mp4"}},
	} {
		ep, err := api.Endpoint(tc.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		call := upstream.Call{Endpoint: tc.endpoint, Data: []any{tc.value}}
		ep.PlaceFiles(&call, refs(uploaded))
		evs, err := run(ctx, s, call)
		if err != nil {
			t.Errorf("%s %s: %v", tc.endpoint, mustJSON(t, call.Data), err)
			continue
		}
		var got checksumsReport
		if text, _ := result(t, evs, err).Data[0].(string); json.Unmarshal([]byte(text), &got) != nil {
			t.Fatalf("%s: output %#v, want a JSON text", tc.endpoint, result(t, evs, err).Data[0])
		}
		if got.Count != len(tc.want) || len(got.Files) != len(tc.want) {
			t.Errorf("%s: %+v, want %d files", tc.endpoint, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			f := got.Files[i]
			desc := nameBySum(contents, f.SHA256)
			if f.Kind != "" {
				desc += " " + f.Kind
			}
			if f.Caption != nil {
				desc += " " + *f.Caption
			}
			if desc != w {
				t.Errorf("%s: file %d is %q, want %q", tc.endpoint, i, desc, w)
			}
		}
	}
	asImage := map[string]any{"image": maps.Clone(uploaded["clip.mp4"].File.(map[string]any)), "caption": nil}
	_, err = run(ctx, s, upstream.Call{Endpoint: "/gallery", Data: []any{[]any{asImage}}})
	var e *upstream.Error
	if !errors.As(err, &e) || e.Code != upstream.CodeAppError {
		t.Errorf("a video as a gallery's image: %v, want the Space's error", err)
	}
}

// nameBySum returns the name of the file of contents whose sha256 is sum, or
// the sum itself.
func nameBySum(contents map[string][]byte, sum string) string {
	for n, b := range contents {
		if sha256Hex(b) == sum {
			return n
		}
	}
	return sum
}
