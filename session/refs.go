package session

import (
	"fmt"
	"maps"

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
// upstream's FileData, in the shape the endpoint's input takes it (see
// upstream.Endpoint.PlaceFiles). It returns the uploads still arriving,
// which the job waits for.
func (s *Session) resolveCall(ep *upstream.Endpoint, call *upstream.Call) ([]*upload, error) {
	var waits []*upload
	var err error
	ep.PlaceFiles(call, func(m map[string]any) (upstream.FileRef, bool) {
		r, isRef := s.reference(m, &waits)
		if isRef && r.File == nil && err == nil {
			err = s.badReference(m)
		}
		return r, isRef
	})
	return waits, err
}

// reference resolves one {"upload":id} or {"file":id} object, which may
// have a caption besides, as the relay writes a gallery item: isRef says
// m is one. Its File is nil for an id the session does not know, and an
// upload still arriving stands as a pendingUpload.
func (s *Session) reference(m map[string]any, waits *[]*upload) (r upstream.FileRef, isRef bool) {
	r.Caption, r.HasCaption = m["caption"]
	if len(m) != 1 && !(len(m) == 2 && r.HasCaption) {
		return upstream.FileRef{}, false
	}
	if id, ok := m["upload"].(string); ok {
		u := s.uploads[id]
		if u == nil {
			return r, true
		}
		r.MIME, r.Name = u.mime, u.name
		if u.file != nil {
			r.File = maps.Clone(u.file)
		} else {
			*waits = append(*waits, u)
			r.File = pendingUpload{u}
		}
		return r, true
	}
	if id, ok := m["file"].(string); ok {
		if f, known := s.files.byID[id]; known {
			r.File, r.MIME, r.Name = fileValue(f), f.MimeType, f.Name()
		}
		return r, true
	}
	return upstream.FileRef{}, false
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
