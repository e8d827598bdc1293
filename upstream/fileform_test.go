package upstream_test

import (
	"maps"
	"testing"

	"github.com/spacerelay/spacerelay/upstream"
)

// fileData is a FileData value as a caller puts one in a call.
func fileData(path string) map[string]any {
	return map[string]any{"path": path, "meta": map[string]any{"_type": "gradio.FileData"}}
}

// refs resolves {"ref": name} objects, with an optional caption, to the
// files of byName; an unknown name is a reference to no file.
func refs(byName map[string]upstream.FileRef) func(map[string]any) (upstream.FileRef, bool) {
	return func(m map[string]any) (upstream.FileRef, bool) {
		name, ok := m["ref"].(string)
		caption, captioned := m["caption"]
		if !ok || len(m) != 1 && !(len(m) == 2 && captioned) {
			return upstream.FileRef{}, false
		}
		r := byName[name]
		if f, ok := r.File.(map[string]any); ok {
			r.File = maps.Clone(f)
		}
		r.Caption, r.HasCaption = caption, captioned
		return r, true
	}
}

// A reference takes the shape its input's schema in /info wants, read
// from real Gradio's answers: a Gallery's items are {"image"|"video":
// file, "caption": …} on both versions, and a Video is {"video": file,
// "subtitles": null} on 5.50 but the file itself on 6.31; a list of files
// stays a list of FileData. What is placed passes the relay's own check
// of the input against that schema.
func TestPlaceFilesByRealSchemas(t *testing.T) {
	files := map[string]upstream.FileRef{
		"png":  {File: fileData("/tmp/a.png"), MIME: "image/png", Name: "a.png"},
		"mp4":  {File: fileData("/tmp/b.mp4"), MIME: "video/mp4", Name: "b.mp4"},
		"webm": {File: fileData("/tmp/c.webm"), MIME: "application/octet-stream", Name: "c.webm"},
		"wav":  {File: fileData("/tmp/d.wav"), Name: "d.wav"},
	}
	ref := func(name string) map[string]any { return map[string]any{"ref": name} }
	for _, version := range goldenVersions {
		t.Run(version, func(t *testing.T) {
			c, _ := goldenClient(t, version)
			api, err := c.API(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			video := any(fileData("/tmp/b.mp4"))
			if version == "5.50.0" {
				video = map[string]any{"video": video, "subtitles": nil}
			}
			for _, tc := range []struct {
				endpoint string
				inputs   map[string]any
				want     map[string]any
			}{
				{"/album", map[string]any{
					"pictures": []any{
						ref("png"), ref("mp4"), ref("webm"),
						map[string]any{"ref": "png", "caption": "a cat"},
						map[string]any{"image": ref("png"), "caption": "kept as it is"},
					},
					"attachments": []any{ref("wav"), ref("png")},
				}, map[string]any{
					"pictures": []any{
						map[string]any{"image": fileData("/tmp/a.png"), "caption": nil},
						map[string]any{"video": fileData("/tmp/b.mp4"), "caption": nil},
						map[string]any{"video": fileData("/tmp/c.webm"), "caption": nil},
						map[string]any{"image": fileData("/tmp/a.png"), "caption": "a cat"},
						map[string]any{"image": fileData("/tmp/a.png"), "caption": "kept as it is"},
					},
					"attachments": []any{fileData("/tmp/d.wav"), fileData("/tmp/a.png")},
				}},
				{"/media", map[string]any{"audio": ref("wav"), "video": ref("mp4")},
					map[string]any{"audio": fileData("/tmp/d.wav"), "video": video}},
				{"/image_info", map[string]any{"image": ref("png")},
					map[string]any{"image": fileData("/tmp/a.png")}},
			} {
				ep, err := api.Endpoint(tc.endpoint)
				if err != nil {
					t.Fatal(err)
				}
				call := upstream.Call{Endpoint: tc.endpoint, Inputs: tc.inputs}
				ep.PlaceFiles(&call, refs(files))
				if got, want := mustJSON(t, call.Inputs), mustJSON(t, tc.want); got != want {
					t.Errorf("%s: placed\n%s\nwant\n%s", tc.endpoint, got, want)
				}
				// The golden Space refuses every join: anything but
				// invalid_input means the relay's check let the call go.
				s, _ := visitor(t, c)
				if _, err := run(testCtx(t), s, call); upstream.CodeOf(err) == upstream.CodeInvalidInput {
					t.Errorf("%s: the placed files fail the input's schema: %v", tc.endpoint, err)
				}
			}
		})
	}
}

// By position, for an endpoint made by hand: a Gallery with no schema
// takes gallery items, a value past the parameters takes the file as it
// is, and a reference to no file leaves null.
func TestPlaceFilesByPosition(t *testing.T) {
	files := map[string]upstream.FileRef{"mp4": {File: fileData("/tmp/b.mp4"), Name: "b.mp4"}}
	ref := map[string]any{"ref": "mp4"}
	ep := &upstream.Endpoint{Name: "/g", Inputs: []upstream.Param{{Name: "gallery", Component: "Gallery"}, {Name: "clip", Component: "Video"}}}
	call := upstream.Call{Data: []any{[]any{maps.Clone(ref)}, maps.Clone(ref), maps.Clone(ref)}}
	ep.PlaceFiles(&call, refs(files))
	want := []any{
		[]any{map[string]any{"video": fileData("/tmp/b.mp4"), "caption": nil}},
		fileData("/tmp/b.mp4"),
		fileData("/tmp/b.mp4"), // past the parameters: as it is
	}
	if got, want := mustJSON(t, call.Data), mustJSON(t, want); got != want {
		t.Errorf("placed %s, want %s", got, want)
	}
	missing := upstream.Call{Data: []any{[]any{map[string]any{"ref": "gone"}}}}
	ep.PlaceFiles(&missing, func(map[string]any) (upstream.FileRef, bool) { return upstream.FileRef{}, true })
	if got := mustJSON(t, missing.Data); got != `[[null]]` {
		t.Errorf("a reference to no file placed as %s, want null", got)
	}
}

// A wrapper's other properties come with their schema's scalar defaults;
// one whose default is an object or a list is left out (the Space's model
// fills it in), since every session's values would share it.
func TestPlaceFilesKeepsScalarDefaultsOnly(t *testing.T) {
	schema := `{"type":"array","items":{"type":"object","required":["image"],"properties":{
		"image":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]},
		"caption":{"default":null},"label":{"default":"x"},"tags":{"default":["a"]},"extra":{"default":{"k":1}}}}}`
	files := map[string]upstream.FileRef{"png": {File: fileData("/tmp/a.png"), Name: "a.png", MIME: "image/png"}}
	ep := &upstream.Endpoint{Name: "/g", Inputs: []upstream.Param{{Name: "g", Schema: []byte(schema)}}}
	call := upstream.Call{Data: []any{[]any{map[string]any{"ref": "png"}}}}
	ep.PlaceFiles(&call, refs(files))
	want := `[[{"caption":null,"image":` + mustJSON(t, fileData("/tmp/a.png")) + `,"label":"x"}]]`
	if got := mustJSON(t, call.Data); got != want {
		t.Errorf("placed %s, want %s", got, want)
	}
}
