package demospace

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"path"
)

// The file endpoints of app.py's build_files: a Gallery, a File of
// several files, an Audio and a Video, each reporting the sha256 of every
// file it got. Their schemas are Gradio 6.31's own, as /config reports
// them: a Gallery's items are {"image": …} or {"video": …}, and a Video
// takes a FileData (Gradio 5's wants {"video": …}).

var (
	//go:embed gallery_schema.json
	gallerySchema []byte
	//go:embed files_schema.json
	filesSchema []byte
	//go:embed filedata_schema.json
	fileDataSchema []byte
)

// fileDataDescription is the python_type description Gradio gives an
// input that takes a FileData: the class's docstring.
var fileDataDescription = func() string {
	var s struct {
		Description string `json:"additional_description"`
	}
	_ = json.Unmarshal(fileDataSchema, &s)
	return s.Description
}()

// Python types of the file inputs in /info.
const (
	galleryPythonType = "list[dict(image: filepath, caption: str | None) | dict(video: filepath, caption: str | None)]"
	filesPythonType   = "list[filepath]"
)

// example is the example_inputs FileData of a file at url.
func example(url, name string) object {
	return object{{"path", url}, {"meta", object{{"_type", "gradio.FileData"}}}, {"orig_name", name}, {"url", url}}
}

func mediaComponents() []component {
	const assets = "https://github.com/gradio-app/gradio/raw/main/"
	return []component{
		tab(idTabGallery, "gallery"),
		{id: idGallery, typ: "gallery", api: json.RawMessage(gallerySchema),
			example: []any{object{{"image", example("https://raw.githubusercontent.com/gradio-app/gradio/main/test/test_files/bus.png", "bus.png")}}},
			props: object{
				{"value", []any{}}, {"format", "webp"}, {"label", "gallery"}, {"show_label", true},
				{"container", true}, {"min_width", 160}, {"visible", true}, {"elem_classes", []any{}},
				{"preserved_by_key", []any{"value"}}, {"columns", 2}, {"allow_preview", true},
				{"buttons", []any{"share", "download", "download_all", "fullscreen"}}, {"type", "pil"},
				{"fit_columns", true}, {"sources", []any{"upload"}}, {"name", "gallery"}, {"_selectable", false},
			}},
		textbox(idGalleryOut, "checksums"),
		button(idGalleryButton, "gallery"),
		form(idGalleryForm),
		tab(idTabFiles, "files"),
		{id: idFiles, typ: "file", api: json.RawMessage(filesSchema),
			example: []any{example(assets+"test/test_files/sample_file.pdf", "sample_file.pdf")},
			props: object{
				{"file_count", "multiple"}, {"type", "filepath"}, {"label", "files"}, {"show_label", true},
				{"container", true}, {"min_width", 160}, {"visible", true}, {"elem_classes", []any{}},
				{"preserved_by_key", []any{"value"}}, {"allow_reordering", false}, {"buttons", []any{}},
				{"name", "file"}, {"_selectable", false},
			}},
		textbox(idFilesOut, "checksums"),
		button(idFilesButton, "files"),
		form(idFilesForm),
		tab(idTabAudio, "audio"),
		{id: idAudio, typ: "audio", api: json.RawMessage(fileDataSchema),
			example: example(assets+"test/test_files/audio_sample.wav", "audio_sample.wav"),
			props: object{
				{"streamable", false}, {"sources", []any{"upload"}}, {"type", "filepath"}, {"label", "audio"},
				{"show_label", true}, {"container", true}, {"min_width", 160}, {"visible", true},
				{"streaming", false}, {"elem_classes", []any{}}, {"preserved_by_key", []any{"value"}},
				{"autoplay", false}, {"editable", true}, {"buttons", []any{"download", "share"}},
				{"waveform_options", object{{"waveform_color", nil}, {"waveform_progress_color", nil},
					{"trim_region_color", nil}, {"show_recording_waveform", true}, {"skip_length", 5},
					{"sample_rate", 44100}}},
				{"loop", false}, {"recording", false}, {"playback_position", 0}, {"name", "audio"},
				{"_selectable", false},
			}},
		textbox(idAudioOut, "checksums"),
		button(idAudioButton, "audio"),
		form(idAudioForm),
		tab(idTabVideo, "video"),
		{id: idVideo, typ: "video", api: json.RawMessage(fileDataSchema),
			example: example(assets+"gradio/media_assets/videos/world.mp4", "world.mp4"),
			props: object{
				{"sources", []any{"upload"}}, {"label", "video"}, {"show_label", true}, {"container", true},
				{"min_width", 160}, {"visible", true}, {"elem_classes", []any{}},
				{"preserved_by_key", []any{"value"}}, {"webcam_options", object{{"mirror", true}, {"constraints", nil}}},
				{"include_audio", true}, {"autoplay", false}, {"buttons", []any{"download"}}, {"loop", false},
				{"streaming", false}, {"watermark", object{{"watermark", nil}, {"position", "bottom-right"}}},
				{"playback_position", 0}, {"name", "video"}, {"_selectable", false},
			}},
		textbox(idVideoOut, "checksums"),
		button(idVideoButton, "video"),
		form(idVideoForm),
	}
}

// mediaLayout is the layout of the file endpoints' tabs.
func mediaLayout() []node {
	tab := func(id, input, out, btn, frm int) node {
		return node{id, []node{{input, nil}, {frm, []node{{out, nil}}}, {btn, nil}}}
	}
	return []node{
		tab(idTabGallery, idGallery, idGalleryOut, idGalleryButton, idGalleryForm),
		tab(idTabFiles, idFiles, idFilesOut, idFilesButton, idFilesForm),
		tab(idTabAudio, idAudio, idAudioOut, idAudioButton, idAudioForm),
		tab(idTabVideo, idVideo, idVideoOut, idVideoButton, idVideoForm),
	}
}

func (s *Space) mediaEndpoints() []*endpoint {
	return []*endpoint{
		{index: 10, name: "gallery", params: []string{"gallery"},
			description: "A gallery: the kind, sha256 and caption of each item.",
			inputs:      []int{idGallery}, outputs: []int{idGalleryOut}, trigger: idGalleryButton, run: s.gallerySums},
		{index: 11, name: "files", params: []string{"files"}, description: "Several files: the sha256 of each.",
			inputs: []int{idFiles}, outputs: []int{idFilesOut}, trigger: idFilesButton, run: s.fileSums},
		{index: 12, name: "audio", params: []string{"audio"}, description: "An audio clip: its sha256.",
			inputs: []int{idAudio}, outputs: []int{idAudioOut}, trigger: idAudioButton, run: s.oneFileSum},
		{index: 13, name: "video", params: []string{"video"}, description: "A video: its sha256.",
			inputs: []int{idVideo}, outputs: []int{idVideoOut}, trigger: idVideoButton, run: s.oneFileSum},
	}
}

// uploadedFile is the file of a FileData: Gradio refuses a path that was
// not uploaded to this Space.
func (s *Space) uploadedFile(raw json.RawMessage) (*storedFile, error) {
	var fd struct {
		Path *string `json:"path"`
	}
	if err := json.Unmarshal(raw, &fd); err != nil || fd.Path == nil {
		return nil, fmt.Errorf("%w: a file input got %.40s", errHidden, raw)
	}
	f, ok := s.files.get(path.Clean(*fd.Path))
	if !ok {
		return nil, fmt.Errorf("%w: the file was not uploaded to this Space", errHidden)
	}
	return f, nil
}

// fileIn is the preprocess of gr.Audio(type="filepath") and gr.Video on
// Gradio 6 (a FileData, the file handed over as it is): None stays None.
func (s *Space) fileIn(raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	return s.uploadedFile(raw)
}

// filesIn is gr.File(file_count="multiple", type="filepath")'s
// preprocess: None stays None, else each item must be a FileData.
func (s *Space) filesIn(raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: a file list got %.40s", errHidden, raw)
	}
	files := make([]*storedFile, len(items))
	for i, it := range items {
		f, err := s.uploadedFile(it)
		if err != nil {
			return nil, err
		}
		files[i] = f
	}
	return files, nil
}

// galleryItem is one item of a gallery, as the function gets it.
type galleryItem struct {
	kind    string // "image" or "video"
	file    *storedFile
	caption *string
}

// galleryIn is gr.Gallery(type="pil")'s preprocess: None and [] are
// None; each item must be {"image": ImageData, "caption": …}, whose file
// opens as an image, or {"video": FileData, "caption": …}, as pydantic
// reads Gradio's GalleryImage | GalleryVideo. A bare FileData is refused.
func (s *Space) galleryIn(raw json.RawMessage) (any, error) {
	var items []struct {
		Image   json.RawMessage `json:"image"`
		Video   json.RawMessage `json:"video"`
		Caption *string         `json:"caption"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: a gallery got %.40s", errHidden, raw)
	}
	if len(items) == 0 {
		return nil, nil
	}
	out := make([]galleryItem, len(items))
	for i, it := range items {
		g := galleryItem{kind: "image", caption: it.Caption}
		media := it.Image
		if media == nil {
			g.kind, media = "video", it.Video
		}
		if media == nil || string(media) == "null" {
			return nil, fmt.Errorf("%w: gallery item %d is neither {\"image\": …} nor {\"video\": …}", errHidden, i)
		}
		f, err := s.uploadedFile(media)
		if err != nil {
			return nil, err
		}
		if g.kind == "image" && !isImage(f.data) {
			return nil, fmt.Errorf("%w: cannot identify image file", errHidden)
		}
		g.file = f
		out[i] = g
	}
	return out, nil
}

// isImage reports whether data opens as an image, as PIL's Image.open
// checks (here with Go's decoders).
func isImage(data []byte) bool {
	_, _, err := image.DecodeConfig(bytes.NewReader(data))
	return err == nil
}

// checksums is the report of the file endpoints: how many files came, and
// what of each.
func checksums(files []any) string {
	return string(encodeJSON(object{{"count", len(files)}, {"files", files}}))
}

func fileSum(f *storedFile) string {
	sum := sha256.Sum256(f.data)
	return hex.EncodeToString(sum[:])
}

// gallerySums is /gallery: the kind, sha256 and caption of each item.
func (s *Space) gallerySums(c *call) ([]any, error) {
	in, err := c.args(s.galleryIn)
	if err != nil {
		return nil, err
	}
	items, _ := in[0].([]galleryItem)
	files := make([]any, len(items))
	for i, g := range items {
		var caption any
		if g.caption != nil {
			caption = *g.caption
		}
		files[i] = object{{"kind", g.kind}, {"sha256", fileSum(g.file)}, {"caption", caption}}
	}
	return []any{checksums(files)}, nil
}

// fileSums is /files: the sha256 of each file.
func (s *Space) fileSums(c *call) ([]any, error) {
	in, err := c.args(s.filesIn)
	if err != nil {
		return nil, err
	}
	list, _ := in[0].([]*storedFile)
	files := make([]any, len(list))
	for i, f := range list {
		files[i] = object{{"sha256", fileSum(f)}}
	}
	return []any{checksums(files)}, nil
}

// oneFileSum is /audio and /video: the sha256 of the file, if one came.
func (s *Space) oneFileSum(c *call) ([]any, error) {
	in, err := c.args(s.fileIn)
	if err != nil {
		return nil, err
	}
	files := []any{}
	if f, ok := in[0].(*storedFile); ok {
		files = append(files, object{{"sha256", fileSum(f)}})
	}
	return []any{checksums(files)}, nil
}
