package session_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// fakeUpstream is a scripted upstream: each job runs script with the
// call and the event callback, and files come from a map by path.
type fakeUpstream struct {
	script func(ctx context.Context, call upstream.Call, emit func(upstream.Event) error) error
	files  map[string][]byte

	mu      sync.Mutex
	headers []http.Header
	closed  int
	joins   []any // the first input of each job, in the order they joined
	// joinDelay, if set, is how long each job's join takes, by first input.
	joinDelay map[any]time.Duration
}

func (f *fakeUpstream) Open(h http.Header) session.Visitor {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, h)
	return &fakeVisitor{f: f}
}

func (f *fakeUpstream) Download(ctx context.Context, fd upstream.FileData, limit int64) (*upstream.Download, error) {
	b, ok := f.files[fd.Path]
	if !ok {
		return nil, &upstream.Error{Code: upstream.CodeUnavailable, Message: "no such file"}
	}
	if int64(len(b)) > limit {
		return nil, &upstream.Error{Code: upstream.CodeFileTooLarge, Message: "too large"}
	}
	return &upstream.Download{Body: io.NopCloser(bytes.NewReader(b)), Name: fd.Name(), MIME: "image/png", Size: int64(len(b))}, nil
}

func (f *fakeUpstream) closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// fakeVisitor runs each job's script on the job's goroutine; like the
// real upstream's Close, which waits for the stream reader that calls the
// jobs' callbacks, Close waits for callbacks in progress.
type fakeVisitor struct {
	f       *fakeUpstream
	calling sync.RWMutex // read-held by each callback in progress
}

func (v *fakeVisitor) Stream(ctx context.Context, call upstream.Call, fn func(upstream.Event) error) error {
	var first any
	if len(call.Data) > 0 {
		first = call.Data[0]
	}
	time.Sleep(v.f.joinDelay[first])
	v.f.mu.Lock()
	v.f.joins = append(v.f.joins, first)
	v.f.mu.Unlock()
	if err := fn(&upstream.Accepted{EventID: "ev"}); err != nil {
		return err
	}
	return v.f.script(ctx, call, func(ev upstream.Event) error {
		v.calling.RLock()
		defer v.calling.RUnlock()
		return fn(ev)
	})
}

func (v *fakeVisitor) Close() error {
	v.calling.Lock() // no callback in progress
	v.calling.Unlock()
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	v.f.closed++
	return nil
}

// file returns a FileData value as it appears in upstream outputs.
func file(path string) map[string]any {
	return map[string]any{"path": path, "orig_name": "image.png", "meta": map[string]any{"_type": "gradio.FileData"}}
}
