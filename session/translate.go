package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spacerelay/spacerelay/upstream"
)

// Browser messages for job events (PROTOCOL.md section 4).
type (
	idMsg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	queuedMsg struct {
		Type      string   `json:"type"`
		ID        string   `json:"id"`
		Position  int      `json:"position"`
		QueueSize int      `json:"queue_size"`
		ETA       *float64 `json:"eta"`
	}
	startedMsg struct {
		Type string   `json:"type"`
		ID   string   `json:"id"`
		ETA  *float64 `json:"eta"`
	}
	progressMsg struct {
		Type  string                  `json:"type"`
		ID    string                  `json:"id"`
		Steps []upstream.ProgressStep `json:"steps"`
	}
	logMsg struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Level   string `json:"level"`
		Title   string `json:"title"`
		Message string `json:"message"`
	}
	dataMsg struct {
		Type     string   `json:"type"`
		ID       string   `json:"id"`
		Data     []any    `json:"data"`
		Duration *float64 `json:"duration,omitempty"`
	}
	fileMsg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		File string `json:"file"`
		Name string `json:"name"`
		MIME string `json:"mime"`
		Size int    `json:"size"`
	}
)

// translate turns an upstream event into a browser message, fetching the
// files it refers to. droppable says a newer message of the job may
// replace it under backpressure (PROTOCOL.md section 5).
func (s *Session) translate(ctx context.Context, j *job, ev upstream.Event) (out *outgoing, droppable bool, err error) {
	switch ev := ev.(type) {
	case *upstream.Accepted:
		return encode("accepted", j.id, idMsg{"accepted", j.id}), false, nil
	case *upstream.Queued:
		return encode("queued", j.id, queuedMsg{"queued", j.id, ev.Rank, ev.QueueSize, ev.ETA}), true, nil
	case *upstream.Started:
		return encode("started", j.id, startedMsg{"started", j.id, ev.ETA}), false, nil
	case *upstream.Progress:
		return encode("progress", j.id, progressMsg{"progress", j.id, ev.Steps}), true, nil
	case *upstream.Log:
		return encode("log", j.id, logMsg{"log", j.id, ev.Level, ev.Title, ev.Message}), false, nil
	case *upstream.Partial:
		out, err := s.withFiles(ctx, j, "partial", ev.Data, nil)
		return out, true, err
	case *upstream.Completed:
		d := ev.Duration
		out, err := s.withFiles(ctx, j, "result", ev.Data, &d)
		if out != nil {
			out.terminal = true
		}
		return out, false, err
	case *upstream.Cancelled:
		out := encode("cancelled", j.id, idMsg{"cancelled", j.id})
		out.terminal = true
		return out, false, nil
	}
	return nil, false, nil
}

func encode(kind, id string, v any) *outgoing {
	b, err := json.Marshal(v)
	if err != nil { // only for values the upstream sent that JSON cannot carry
		b, _ = json.Marshal(errorMsg{Type: "error", ID: id, Code: "internal", Message: "the relay could not encode a message"})
		return &outgoing{msg: b, kind: "error", terminal: true, code: "internal"}
	}
	return &outgoing{msg: b, kind: kind}
}

// withFiles fetches every file of data and encodes a partial or result
// whose files are replaced by references.
func (s *Session) withFiles(ctx context.Context, j *job, kind string, data []any, duration *float64) (*outgoing, error) {
	out := &outgoing{kind: kind}
	var held int64
	fetch := func(f upstream.FileData) (string, error) {
		file, err := s.fetch(ctx, f, s.cfg.MaxJobBytes-held)
		if err != nil {
			return "", err
		}
		held += int64(len(file.data))
		id := "f" + strconv.FormatInt(s.fileSeq.Add(1), 10)
		header, err := json.Marshal(fileMsg{"file", j.id, id, f.Name(), file.mime, len(file.data)})
		out.files = append(out.files, outFile{header: header, data: file.data})
		return id, err
	}
	refs := make([]any, len(data))
	for i, v := range data {
		r, err := replaceFiles(v, fetch)
		if err != nil {
			return nil, err
		}
		refs[i] = r
	}
	b, err := json.Marshal(dataMsg{kind, j.id, refs, duration})
	if err != nil {
		return nil, fmt.Errorf("session: encode %s: %w", kind, err)
	}
	out.msg = b
	return out, nil
}

type fetched struct {
	data []byte
	mime string
}

// fetch downloads one file, at most MaxFileBytes and at most budget.
func (s *Session) fetch(ctx context.Context, f upstream.FileData, budget int64) (*fetched, error) {
	limit := min(s.cfg.MaxFileBytes, budget)
	if limit <= 0 {
		return nil, &upstream.Error{Code: upstream.CodeFileTooLarge, Message: "the job's files are over the session's buffer limit"}
	}
	d, err := s.up.Download(ctx, f, limit)
	if err != nil {
		return nil, err
	}
	defer d.Body.Close()
	size := 512
	if d.Size > 0 && d.Size <= limit {
		size = int(d.Size) + 1 // room to read the EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := d.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return &fetched{data: buf, mime: d.MIME}, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
	}
}

// replaceFiles returns a copy of v in which every file is replaced by
// {"file": id}. A gallery item {"image": file, "caption": c} becomes
// {"file": id, "caption": c}.
func replaceFiles(v any, fetch func(upstream.FileData) (string, error)) (any, error) {
	if f, ok := upstream.AsFile(v); ok {
		id, err := fetch(f)
		return map[string]any{"file": id}, err
	}
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := replaceFiles(e, fetch)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		if f, ok := galleryFile(x); ok {
			id, err := fetch(f)
			return map[string]any{"file": id, "caption": x["caption"]}, err
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := replaceFiles(e, fetch)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	}
	return v, nil
}

// galleryFile returns the file of a gallery item {"image"|"video": file,
// "caption": c}.
func galleryFile(m map[string]any) (upstream.FileData, bool) {
	if _, ok := m["caption"]; !ok || len(m) != 2 {
		return upstream.FileData{}, false
	}
	for _, key := range []string{"image", "video"} {
		if f, ok := upstream.AsFile(m[key]); ok {
			return f, true
		}
	}
	return upstream.FileData{}, false
}
