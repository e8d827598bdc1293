package upstream

import (
	"encoding/json"
	"maps"
	"mime"
	"path"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A caller names a file in a call's inputs by reference, and the file must
// reach the Space in the shape the input's component wants: a FileData for
// an Image, an Audio or a File (a list of them for file_count="multiple");
// {"image": FileData, "caption": …} or {"video": …} for each item of a
// Gallery; {"video": FileData, "subtitles": null} for a Video on Gradio 5,
// where Gradio 6 takes the FileData itself. The JSON schema /info gives for
// the parameter says which, on every version, so the shape is read from it
// at discovery; the component is only the fallback for a schema that says
// nothing about files.

// A FileRef is a file that a call's inputs name by reference, as the caller
// resolved it; see Endpoint.PlaceFiles.
type FileRef struct {
	// File stands for the file in the call: its FileData, or a value the
	// caller replaces with the FileData before the call is submitted. nil
	// means the reference names no file: nil takes its place, and the
	// caller reports it.
	File any
	MIME string // the file's media type, if known
	Name string // the file's name, whose extension counts when MIME says nothing
	// Caption is the reference's caption, when HasCaption: a gallery
	// item's.
	Caption    any
	HasCaption bool
}

// fileForm is how a parameter takes a file.
type fileForm struct {
	list bool // the value is a list, and each of its items is a file in this form
	// wraps are the objects that can hold the file, picked by its media;
	// none means the file as it is.
	wraps []fileWrap
}

// fileWrap is an object that holds a file under key, such as a gallery
// item; rest are its other properties, with their defaults.
type fileWrap struct {
	key  string
	rest map[string]any
}

// galleryWraps are a Gallery's items on Gradio 5 and 6: the form of a
// Gallery whose schema says nothing, and what holds a captioned reference
// where the parameter's own form has no object for it.
var galleryWraps = []fileWrap{
	{"image", map[string]any{"caption": nil}},
	{"video", map[string]any{"caption": nil}},
}

// fileForm returns how p takes a file. A nil p (an input the endpoint does
// not have) takes a file as it is.
func (p *Param) fileForm() fileForm {
	switch {
	case p == nil:
		return fileForm{}
	case p.files != nil:
		return *p.files
	}
	// A Param made by hand, not by discovery.
	s := p.schema
	if s == nil && len(p.Schema) > 0 {
		s = compileSchema(p.Schema)
	}
	return readFileForm(s, p.Component)
}

// readFileForm reads how a parameter takes a file from its compiled
// schema s, or, when s says nothing of files (or is nil), from its
// component.
func readFileForm(s *jsonschema.Schema, component string) fileForm {
	if f, ok := schemaFileForm(s); ok {
		return f
	}
	if component == "Gallery" {
		return fileForm{list: true, wraps: galleryWraps}
	}
	return fileForm{}
}

func schemaFileForm(s *jsonschema.Schema) (fileForm, bool) {
	s = resolveRef(s)
	if s == nil {
		return fileForm{}, false
	}
	if items := arrayItems(s); items != nil {
		wraps, ok := itemWraps(items)
		return fileForm{list: true, wraps: wraps}, ok
	}
	wraps, ok := itemWraps(s)
	return fileForm{wraps: wraps}, ok
}

// itemWraps reads how a value of schema s holds one file: as it is (no
// wraps), or in the object of one of s's alternatives. ok is false if s
// takes no file.
func itemWraps(s *jsonschema.Schema) (wraps []fileWrap, ok bool) {
	for _, alt := range alternatives(s) {
		if isFileSchema(alt) {
			return nil, true
		}
		if w, ok := wrapOf(alt); ok {
			wraps = append(wraps, w)
		}
	}
	return wraps, len(wraps) > 0
}

// wrapOf reads an object schema with exactly one required property that
// is a file, such as a gallery item's {"image": ImageData, "caption": …}.
func wrapOf(s *jsonschema.Schema) (fileWrap, bool) {
	var w fileWrap
	for _, key := range s.Required {
		if isFileSchema(s.Properties[key]) {
			if w.key != "" {
				return fileWrap{}, false // two files: not one file's object
			}
			w.key = key
		}
	}
	if w.key == "" {
		return fileWrap{}, false
	}
	w.rest = map[string]any{}
	for name, p := range s.Properties {
		if name == w.key || p.Default == nil {
			continue
		}
		// Only a scalar default is kept: every session's wrapped values
		// share it, so it must be a value nothing can write into. (A
		// key left out takes its default in the Space's own model.)
		switch v := *p.Default; v.(type) {
		case nil, bool, string, float64, json.Number:
			w.rest[name] = v
		}
	}
	return w, true
}

// isFileSchema reports whether s is Gradio's FileData (or ImageData): an
// object with a path.
func isFileSchema(s *jsonschema.Schema) bool {
	s = resolveRef(s)
	return s != nil && s.Properties["path"] != nil
}

// alternatives returns the branches of s's anyOf and oneOf, null left out,
// or s itself if it has none.
func alternatives(s *jsonschema.Schema) []*jsonschema.Schema {
	branches := slices.Concat(s.AnyOf, s.OneOf)
	if len(branches) == 0 {
		return []*jsonschema.Schema{s}
	}
	var alts []*jsonschema.Schema
	for _, b := range branches {
		if b = resolveRef(b); b != nil && !isNullSchema(b) {
			alts = append(alts, b)
		}
	}
	return alts
}

func isNullSchema(s *jsonschema.Schema) bool {
	return s.Types != nil && slices.Equal(s.Types.ToStrings(), []string{"null"})
}

// arrayItems returns the schema of each item of an array schema, or nil.
func arrayItems(s *jsonschema.Schema) *jsonschema.Schema {
	if s.Items2020 != nil {
		return resolveRef(s.Items2020)
	}
	if items, ok := s.Items.(*jsonschema.Schema); ok {
		return resolveRef(items)
	}
	return nil
}

// resolveRef follows $ref: pydantic's schemas name their models in $defs.
func resolveRef(s *jsonschema.Schema) *jsonschema.Schema {
	for i := 0; s != nil && s.Ref != nil && i < 16; i++ {
		s = s.Ref
	}
	return s
}

// PlaceFiles replaces each file reference in call's inputs with its file,
// in the shape the reference's parameter takes one (see fileForm). ref
// reports whether an object of the inputs is a reference, and resolves
// it. Values that are not references are left as they are, and so is a
// file already in its object ({"image": reference, "caption": …}).
func (ep *Endpoint) PlaceFiles(call *Call, ref func(map[string]any) (FileRef, bool)) {
	for i, v := range call.Data {
		call.Data[i] = ep.dataParam(call, i).placeFiles(v, ref)
	}
	for name, v := range call.Inputs {
		var p *Param
		if i := ep.param(name); i >= 0 {
			p = &ep.Inputs[i]
		}
		call.Inputs[name] = p.placeFiles(v, ref)
	}
}

// dataParam returns the parameter of call.Data[i], or nil for a State slot
// or a value past the parameters. Data fills the State slots itself when
// it has a value for every slot (see payload).
func (ep *Endpoint) dataParam(call *Call, i int) *Param {
	if len(call.Data) == len(ep.slots) && len(ep.slots) != len(ep.Inputs) {
		if slot := ep.slots[i]; slot >= 0 {
			return &ep.Inputs[slot]
		}
		return nil
	}
	if i < len(ep.Inputs) {
		return &ep.Inputs[i]
	}
	return nil
}

// placeFiles places the references in v, a value of p: a reference in p's
// place for a file (the value, or each item of a list) takes p's form;
// one deeper in the value is the file as it is.
func (p *Param) placeFiles(v any, ref func(map[string]any) (FileRef, bool)) any {
	form := p.fileForm()
	if items, ok := v.([]any); ok && form.list {
		for i, it := range items {
			items[i] = placeFile(it, form.wraps, ref)
		}
		return items
	}
	if form.list {
		return placeDeeper(v, ref)
	}
	return placeFile(v, form.wraps, ref)
}

// placeFile puts v in one of wraps if it is a reference; otherwise it
// places the references inside v.
func placeFile(v any, wraps []fileWrap, ref func(map[string]any) (FileRef, bool)) any {
	if m, ok := v.(map[string]any); ok {
		if r, isRef := ref(m); isRef {
			return r.in(wraps)
		}
	}
	return placeDeeper(v, ref)
}

// placeDeeper replaces every reference inside v with its file as it is.
func placeDeeper(v any, ref func(map[string]any) (FileRef, bool)) any {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			x[i] = placeDeeper(e, ref)
		}
	case map[string]any:
		if r, isRef := ref(x); isRef {
			return r.in(nil)
		}
		for k, e := range x {
			x[k] = placeDeeper(e, ref)
		}
	}
	return v
}

// in returns the file held as wraps hold one: in the wrap for its media
// (a video's, else an image's, else the first), or as it is if there are
// no wraps. A captioned reference is a gallery item wherever it is
// (PROTOCOL.md section 9).
func (r FileRef) in(wraps []fileWrap) any {
	if r.File == nil {
		return nil
	}
	if len(wraps) == 0 {
		if !r.HasCaption {
			return r.File
		}
		wraps = galleryWraps
	}
	want := "image"
	if isVideo(r.MIME, r.Name) {
		want = "video"
	}
	w := wraps[0]
	if i := slices.IndexFunc(wraps, func(w fileWrap) bool { return w.key == want }); i >= 0 {
		w = wraps[i]
	}
	obj := make(map[string]any, len(w.rest)+2)
	maps.Copy(obj, w.rest)
	obj[w.key] = r.File
	if r.HasCaption {
		obj["caption"] = r.Caption
	}
	return obj
}

// videoExts are the extensions of video files, for a file whose media
// type is not known: Gradio tells a gallery's videos from its images by
// their type, guessed from the name.
var videoExts = map[string]bool{
	".mp4": true, ".m4v": true, ".mov": true, ".webm": true, ".mkv": true, ".avi": true,
	".ogv": true, ".mpeg": true, ".mpg": true, ".3gp": true, ".wmv": true, ".flv": true,
}

// isVideo reports whether a file is a video: by its media type, or by its
// name's extension when the type is unknown or says only "bytes".
func isVideo(mimeType, name string) bool {
	if mt, _, err := mime.ParseMediaType(mimeType); err == nil && mt != "application/octet-stream" {
		return strings.HasPrefix(mt, "video/")
	}
	return videoExts[strings.ToLower(path.Ext(name))]
}
