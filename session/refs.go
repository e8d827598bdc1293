package session

import (
	"fmt"
	"maps"
	"strings"

	"github.com/spacerelay/spacerelay/upstream"
)

// maxFileRefs bounds the files a session remembers for {"file":…} inputs;
// the oldest are forgotten first.
const maxFileRefs = 256

// fileRefs are the files the session has sent, by file id, so that a page
// can feed one into a job without sending it back. Owned by Run.
type fileRefs struct {
	byID  map[string]upstream.FileData
	order []string // oldest first
}

func (r *fileRefs) add(id string, f upstream.FileData) {
	if r.byID == nil {
		r.byID = make(map[string]upstream.FileData)
	}
	if len(r.order) >= maxFileRefs {
		delete(r.byID, r.order[0])
		r.order = r.order[1:]
	}
	r.byID[id] = f
	r.order = append(r.order, id)
}

// pendingUpload stands in a call for a file still arriving: once it is
// in, fillUploads puts the upload's file in its place.
type pendingUpload struct{ u *upload }

// resolveCall replaces {"upload":id} and {"file":id} in the call's inputs,
// wherever they are (a gallery's items, a list of files), with the
// upstream's FileData. It returns the uploads still arriving, which the
// job waits for.
func (s *Session) resolveCall(call *upstream.Call) ([]*upload, error) {
	var waits []*upload
	var err error
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case map[string]any:
			if r, isRef := s.reference(x, &waits); isRef {
				if r == nil && err == nil {
					err = s.badReference(x)
				}
				return r
			}
			for k, e := range x {
				x[k] = walk(e)
			}
		}
		return v
	}
	replaceInputs(call, walk)
	return waits, err
}

// reference resolves one {"upload":id} or {"file":id} object: isRef says
// m is one; the result is nil for an id the session does not know. A
// gallery item, as the relay sends one ({"file":id,"caption":c}), becomes
// Gradio's ({"image":file,"caption":c}, or "video" for a video).
func (s *Session) reference(m map[string]any, waits *[]*upload) (v any, isRef bool) {
	caption, captioned := m["caption"]
	if len(m) != 1 && !(len(m) == 2 && captioned) {
		return nil, false
	}
	if !captioned {
		return s.fileOf(m, waits)
	}
	delete(m, "caption")
	f, isRef := s.fileOf(m, waits)
	m["caption"] = caption
	if !isRef || f == nil {
		return f, isRef
	}
	key := "image"
	if strings.HasPrefix(s.mimeOf(m), "video/") {
		key = "video"
	}
	return map[string]any{key: f, "caption": caption}, true
}

// mimeOf is the media type of the file a reference names, if known.
func (s *Session) mimeOf(m map[string]any) string {
	if id, ok := m["upload"].(string); ok && s.uploads[id] != nil {
		return s.uploads[id].mime
	}
	if id, ok := m["file"].(string); ok {
		return s.files.byID[id].MimeType
	}
	return ""
}

// fileOf resolves {"upload":id} or {"file":id}.
func (s *Session) fileOf(m map[string]any, waits *[]*upload) (v any, isRef bool) {
	if id, ok := m["upload"].(string); ok {
		u := s.uploads[id]
		switch {
		case u == nil:
			return nil, true
		case u.file != nil:
			return maps.Clone(u.file), true
		}
		*waits = append(*waits, u)
		return pendingUpload{u}, true
	}
	if id, ok := m["file"].(string); ok {
		f, known := s.files.byID[id]
		if !known {
			return nil, true
		}
		return fileValue(f), true
	}
	return nil, false
}

func (s *Session) badReference(m map[string]any) error {
	if id, ok := m["upload"].(string); ok {
		return &refusal{code: "invalid_input", message: fmt.Sprintf("There is no upload %q in this session.", id)}
	}
	return &refusal{code: "invalid_input", message: fmt.Sprintf("There is no file %q in this session (or it is too old to be kept).", m["file"])}
}

// fileValue is f as a job's input: Gradio's FileData with its meta.
func fileValue(f upstream.FileData) map[string]any {
	v := map[string]any{"path": f.Path, "meta": map[string]any{"_type": "gradio.FileData"}}
	if f.URL != "" {
		v["url"] = f.URL
	}
	if f.OrigName != "" {
		v["orig_name"] = f.OrigName
	}
	if f.MimeType != "" {
		v["mime_type"] = f.MimeType
	}
	if f.Size >= 0 {
		v["size"] = f.Size
	}
	return v
}

// fillUploads puts the files of finished uploads in place of their
// pendingUpload markers.
func fillUploads(call *upstream.Call) {
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case pendingUpload:
			return maps.Clone(x.u.file)
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		}
		return v
	}
	replaceInputs(call, walk)
}

// replaceInputs replaces each of call's inputs, positional and named, by
// f of it.
func replaceInputs(call *upstream.Call, f func(any) any) {
	for i, v := range call.Data {
		call.Data[i] = f(v)
	}
	for k, v := range call.Inputs {
		call.Inputs[k] = f(v)
	}
}
