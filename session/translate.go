package session

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
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
// files it refers to (on the job's goroutine: one job's downloads hold up
// no other job).
func (s *Session) translate(ctx context.Context, v Visitor, j *job, ev upstream.Event) (*outgoing, error) {
	switch ev := ev.(type) {
	case *upstream.Accepted:
		return encode("accepted", j.id, idMsg{"accepted", j.id}), nil
	case *upstream.Queued:
		return encode("queued", j.id, queuedMsg{"queued", j.id, ev.Rank, ev.QueueSize, ev.ETA}), nil
	case *upstream.Started:
		return encode("started", j.id, startedMsg{"started", j.id, ev.ETA}), nil
	case *upstream.Progress:
		return encode("progress", j.id, progressMsg{"progress", j.id, ev.Steps}), nil
	case *upstream.Log:
		return encode("log", j.id, logMsg{"log", j.id, ev.Level, ev.Title, ev.Message}), nil
	case *upstream.Partial:
		out, refs, err := s.withFiles(ctx, v, j, "partial", ev.Data, nil)
		if err == nil {
			j.lastPartial, j.lastRefs = ev.Data, refs
		}
		return out, err
	case *upstream.Completed:
		return s.result(ctx, v, j, ev)
	case *upstream.Cancelled:
		out := encode("cancelled", j.id, idMsg{"cancelled", j.id})
		out.terminal = true
		return out, nil
	}
	return nil, nil
}

func encode(kind, id string, v any) *outgoing {
	b, err := json.Marshal(v)
	if err != nil { // only for values the upstream sent that JSON cannot carry
		b, _ = json.Marshal(errorMsg{Type: "error", ID: id, Code: "internal", Message: "The relay could not pass on a message of the Space."})
		return &outgoing{msg: b, kind: "error", terminal: true, code: "internal", err: err}
	}
	return &outgoing{msg: b, kind: kind}
}

// result encodes a job's result. A generator's result repeats its last
// partial output, which upstream holds back for that reason; should that
// partial have gone out all the same, the result refers to its files
// rather than sending their bytes again.
func (s *Session) result(ctx context.Context, v Visitor, j *job, ev *upstream.Completed) (*outgoing, error) {
	d := ev.Duration
	var out *outgoing
	var err error
	if j.lastPartial != nil && reflect.DeepEqual(ev.Data, j.lastPartial) {
		out = encode("result", j.id, dataMsg{"result", j.id, j.lastRefs, &d})
	} else {
		out, _, err = s.withFiles(ctx, v, j, "result", ev.Data, &d)
	}
	if out != nil {
		out.terminal = true
	}
	return out, err
}

// withFiles fetches every file of data and encodes a partial or result
// whose files are replaced by references (refs: data so).
func (s *Session) withFiles(ctx context.Context, v Visitor, j *job, kind string, data []any, duration *float64) (out *outgoing, refs []any, err error) {
	out = &outgoing{kind: kind}
	fetch := func(f upstream.FileData) (string, error) {
		file, err := s.fetch(ctx, v, f, s.cfg.MaxJobBytes-out.held, out.held == 0)
		if err != nil {
			return "", err
		}
		out.held += file.held
		id := "f" + strconv.FormatInt(s.fileSeq.Add(1), 10)
		header, err := json.Marshal(fileMsg{"file", j.id, id, f.Name(), file.mime, len(file.data)})
		src := f
		if src.MimeType == "" {
			src.MimeType = file.mime // for a reference to it as an input
		}
		out.files = append(out.files, outFile{id: id, src: src, header: header, data: file.data})
		return id, err
	}
	refs = make([]any, len(data))
	for i, v := range data {
		r, err := replaceFiles(v, fetch)
		if err != nil {
			out.release(s.cfg.Budget)
			return nil, nil, err
		}
		refs[i] = r
	}
	b, err := json.Marshal(dataMsg{kind, j.id, refs, duration})
	if err != nil {
		out.release(s.cfg.Budget)
		return nil, nil, fmt.Errorf("session: encode %s: %w", kind, err)
	}
	out.msg = b
	return out, refs, nil
}

type fetched struct {
	data []byte
	mime string
	held int64 // bytes taken from the relay's budget
}

// fetchStep is how much room in the relay's budget a download of unknown
// size takes at a time.
const fetchStep = 64 << 10

// fetch downloads one file, at most MaxFileBytes and at most limit, with
// room for it in the relay's budget. It waits for room (budgetWait at
// most) only if wait is set, that is if it holds none yet: a job that
// waited while holding room could keep others waiting on it in turn, so
// a job's second file, or a download of unknown size that grows, fails
// at once when there is no room.
func (s *Session) fetch(ctx context.Context, v Visitor, f upstream.FileData, limit int64, wait bool) (*fetched, error) {
	limit = min(s.cfg.MaxFileBytes, limit)
	if limit <= 0 {
		return nil, &upstream.Error{Code: upstream.CodeFileTooLarge, Message: "The job's files are over the relay's limit for one job."}
	}
	d, err := v.Download(ctx, f, limit)
	if err != nil {
		return nil, err
	}
	defer d.Body.Close()
	file := &fetched{mime: d.MIME}
	size := 512
	if d.Size > 0 && d.Size <= limit {
		size = int(d.Size) + 1 // room to read the EOF without growing
	}
	grow := func(n int) error {
		var err error
		switch {
		case wait && file.held == 0:
			err = s.cfg.Budget.acquire(ctx, int64(n))
		case !s.cfg.Budget.tryAcquire(int64(n)):
			err = errNoRoom
		}
		if err != nil {
			s.cfg.Budget.release(file.held)
			return err
		}
		file.held += int64(n)
		return nil
	}
	if err := grow(size); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) { // double, within the limit: the budget counts what is allocated
			step := int(min(max(int64(cap(buf)), fetchStep), limit+1-int64(cap(buf))))
			if step <= 0 {
				step = 1 // one byte more: enough to see that the file is over the limit
			}
			if err := grow(step); err != nil {
				return nil, err
			}
			buf = slices.Grow(buf, step)[:len(buf)]
		}
		n, err := d.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			file.data = buf
			return file, nil
		}
		if err != nil {
			s.cfg.Budget.release(file.held)
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
