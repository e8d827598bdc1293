package session_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// The schemas real Gradio gives in /info (descriptions and most FileData
// fields left out): a Gallery's, on 5.50 and 6.31 alike; a Video's on
// 5.50, which wants the file in {"video": …}; a File's of
// file_count="multiple".
const (
	fileDataDef    = `"FileData":{"properties":{"path":{"type":"string"},"meta":{"type":"object"}},"required":["path"],"type":"object"}`
	gallerySchema  = `{"$defs":{` + fileDataDef + `,"ImageData":{"properties":{"path":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null},"meta":{"type":"object"}},"type":"object"},"GalleryImage":{"properties":{"image":{"$ref":"#/$defs/ImageData"},"caption":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null}},"required":["image"],"type":"object"},"GalleryVideo":{"properties":{"video":{"$ref":"#/$defs/FileData"},"caption":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null}},"required":["video"],"type":"object"}},"items":{"anyOf":[{"$ref":"#/$defs/GalleryImage"},{"$ref":"#/$defs/GalleryVideo"}]},"title":"GalleryData","type":"array"}`
	video5Schema   = `{"$defs":{` + fileDataDef + `},"properties":{"video":{"$ref":"#/$defs/FileData"},"subtitles":{"anyOf":[{"$ref":"#/$defs/FileData"},{"type":"null"}],"default":null}},"required":["video"],"title":"VideoData","type":"object"}`
	listFileSchema = `{"$defs":{` + fileDataDef + `},"items":{"$ref":"#/$defs/FileData"},"title":"ListFiles","type":"array"}`
)

// albumAPI has /album(pictures: Gallery, clip: Video as on Gradio 5.50,
// attachments: File of several files).
var albumAPI = &upstream.API{Endpoints: []*upstream.Endpoint{{
	Name: "/album",
	Inputs: []upstream.Param{
		{Name: "pictures", Type: "array", Component: "Gallery", Schema: json.RawMessage(gallerySchema)},
		{Name: "clip", Type: "object", Component: "Video", Schema: json.RawMessage(video5Schema)},
		{Name: "attachments", Type: "array", Component: "File", Schema: json.RawMessage(listFileSchema)},
	},
	Outputs: []upstream.Output{{Name: "info", Component: "Textbox"}},
}}}

// A bare reference, as spacerelay.js sends a File, takes the shape of its
// input, read from the input's schema: each item of a Gallery becomes
// {"image"|"video": file, "caption": null} (a video by its media type,
// or by its name when the page gave none), a Gradio 5 Video gets its
// {"video": file, "subtitles": null}, and a File of several files stays a
// list of FileData. A captioned item keeps its caption, an item already
// in its object is left as it is, and an upload still arriving is put in
// its place once it is in.
func TestReferencesTakeTheInputsShape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{script: script(false, &upstream.Completed{Data: []any{"done"}})}
		cfg := uploadConfig()
		cfg.API = albumAPI
		h := start(t, up, cfg)
		h.readAhead()
		h.expect("hello")
		h.uploadAs("png", "cat.png", "image/png", pattern(100))
		h.until("uploaded")
		h.uploadAs("mov", "clip.mov", "", pattern(200)) // no media type: the name says video
		h.until("uploaded")
		late := pattern(chunk + 1)
		// No extension: the media type says video.
		h.send(fmt.Sprintf(`{"type":"upload","id":"mp4","name":"late","mime":"video/mp4","size":%d}`, len(late)))
		h.send(`{"type":"submit","id":"j1","inputs":{
			"pictures":[{"upload":"png"},{"upload":"mov"},{"upload":"mp4"},{"upload":"png","caption":"a cat"},
				{"image":{"upload":"png"},"caption":"as it is"}],
			"clip":{"upload":"mp4"},
			"attachments":[{"upload":"png"},{"upload":"mov"}]}}`)
		h.sendData("mp4", late)
		h.until("result")
		calls, _, _ := up.snapshot()
		if len(calls) != 1 {
			t.Fatalf("%d jobs reached the upstream, want 1", len(calls))
		}
		png := `{"meta":{"_type":"gradio.FileData"},"orig_name":"cat.png","path":"/tmp/upload/1/cat.png","size":100}`
		mov := `{"meta":{"_type":"gradio.FileData"},"orig_name":"clip.mov","path":"/tmp/upload/2/clip.mov","size":200}`
		mp4 := `{"meta":{"_type":"gradio.FileData"},"orig_name":"late","path":"/tmp/upload/3/late","size":513}`
		want := map[string]string{
			"pictures": `[{"caption":null,"image":` + png + `},{"caption":null,"video":` + mov + `},{"caption":null,"video":` + mp4 + `},` +
				`{"caption":"a cat","image":` + png + `},{"caption":"as it is","image":` + png + `}]`,
			"clip":        `{"subtitles":null,"video":` + mp4 + `}`,
			"attachments": `[` + png + `,` + mov + `]`,
		}
		for name, w := range want {
			got, err := json.Marshal(calls[0].Inputs[name])
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != w {
				t.Errorf("input %s reached the upstream as\n%s\nwant\n%s", name, got, w)
			}
		}
	})
}

// A file the relay sent, fed by its id into a gallery and into a Gradio 5
// Video, by position: its media type from the Space says video, whatever
// its name.
func TestFileReferenceInAGallery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := file("/tmp/out.mp4")
		out["mime_type"] = "video/mp4"
		up := &fakeUpstream{files: map[string][]byte{"/tmp/out.mp4": []byte("mp4")},
			script: script(false, &upstream.Completed{Data: []any{out}})}
		h := start(t, up, session.Config{API: albumAPI})
		h.readAhead()
		h.expect("hello")
		h.send(`{"type":"submit","id":"a","data":[[]]}`)
		f := h.expect("accepted", "file", "binary", "result")[1]
		h.send(fmt.Sprintf(`{"type":"submit","id":"b","data":[[{"file":%q}],{"file":%q}]}`, f["file"], f["file"]))
		h.expect("accepted")
		calls, _, _ := up.snapshot()
		got, _ := json.Marshal(calls[1].Data)
		fd := `{"meta":{"_type":"gradio.FileData"},"mime_type":"video/mp4","orig_name":"image.png","path":"/tmp/out.mp4"}`
		if want := `[[{"caption":null,"video":` + fd + `}],{"subtitles":null,"video":` + fd + `}]`; string(got) != want {
			t.Errorf("the second job's data = %s, want %s", got, want)
		}
	})
}
