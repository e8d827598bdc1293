package session_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// fakeUpstream is a scripted upstream: each job runs script with the
// call and an emit func, and files come from a map by path. Like the real
// upstream, emit never waits for the session: each job has a mailbox where
// the newest Queued, Progress and Partial replaces an older one not yet
// handed over; the job's Follow hands them on.
type fakeUpstream struct {
	script func(ctx context.Context, call upstream.Call, emit func(upstream.Event) error) error
	files  map[string][]byte

	mu      sync.Mutex
	headers []http.Header // the visitor's headers: at Open, then each SetHeader
	closed  int
	joins   []any // the first input of each job, in the order they were submitted
	calls   []upstream.Call
	tokens  []string // the X-IP-Token each job was submitted with
	// joinDelay, if set, is how long each job's join takes, by first input.
	joinDelay map[any]time.Duration
	// uploadGate, if set, lets an upload read one more chunk per receive.
	uploadGate chan struct{}
	uploaded   [][]byte // the bytes of each upload, in order
	// answerEarly, if set, makes an upload fail after its first read, while
	// a goroutine reads on, as net/http's does when the server answers
	// before the whole body went out.
	answerEarly bool
}

func (f *fakeUpstream) Open(h http.Header) session.Visitor {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, h)
	return &fakeVisitor{f: f, header: h}
}

func (f *fakeUpstream) closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// fakeVisitor is one visitor's session of a fakeUpstream. Like the real
// upstream's Close, Close waits for emits in progress.
type fakeVisitor struct {
	f       *fakeUpstream
	calling sync.RWMutex  // read-held by each emit in progress
	last    chan struct{} // closed once the last job submitted has handed on its Accepted
	header  http.Header   // the visitor's current headers (guarded by f.mu)
}

func (v *fakeVisitor) Submit(ctx context.Context, call upstream.Call) (session.Job, error) {
	var first any
	if len(call.Data) > 0 {
		first = call.Data[0]
	}
	v.f.mu.Lock()
	v.f.joins = append(v.f.joins, first)
	v.f.calls = append(v.f.calls, call)
	v.f.tokens = append(v.f.tokens, v.header.Get("X-IP-Token"))
	v.f.mu.Unlock()
	var delay time.Duration
	if v.f.joinDelay != nil { // (a first input that is a list is no map key)
		delay = v.f.joinDelay[first]
	}
	j := &fakeJob{v: v, ctx: ctx, call: call, box: newFakeBox(), delay: delay,
		prev: v.last, accepted: make(chan struct{})}
	v.last = j.accepted
	return j, nil
}

// fakeJob joins after the job before it has handed on its Accepted, as
// upstream jobs do, then runs its script in a goroutine of its own, into
// its mailbox.
type fakeJob struct {
	v        *fakeVisitor
	ctx      context.Context
	call     upstream.Call
	box      *fakeBox
	delay    time.Duration
	prev     chan struct{}
	accepted chan struct{}
}

func (j *fakeJob) Follow(fn func(upstream.Event) error) error {
	handedOn := false
	defer func() {
		if !handedOn {
			close(j.accepted)
		}
	}()
	if j.prev != nil {
		select {
		case <-j.prev:
		case <-j.ctx.Done():
			return j.ctx.Err()
		}
	}
	time.Sleep(j.delay)
	err := fn(&upstream.Accepted{EventID: "ev"})
	close(j.accepted)
	handedOn = true
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(j.ctx)
	scriptDone := make(chan struct{})
	defer func() { cancel(); <-scriptDone }()
	go func() {
		defer close(scriptDone)
		err := j.v.f.script(ctx, j.call, func(ev upstream.Event) error {
			j.v.calling.RLock()
			defer j.v.calling.RUnlock()
			if err := ctx.Err(); err != nil {
				return err
			}
			j.box.put(ev)
			return nil
		})
		j.box.end(err)
	}()
	for {
		evs, err, over := j.box.take(ctx)
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
			switch ev.(type) {
			case *upstream.Completed, *upstream.Cancelled:
				return nil
			}
		}
		if over {
			return err
		}
	}
}

// fakeBox is a job's mailbox, as upstream's.
type fakeBox struct {
	mu    sync.Mutex
	evs   []upstream.Event
	over  bool
	err   error
	ready chan struct{}
}

func newFakeBox() *fakeBox { return &fakeBox{ready: make(chan struct{}, 1)} }

func droppable(ev upstream.Event) string {
	switch ev.(type) {
	case *upstream.Queued:
		return "queued"
	case *upstream.Progress:
		return "progress"
	case *upstream.Partial:
		return "partial"
	}
	return ""
}

func (b *fakeBox) put(ev upstream.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k := droppable(ev); k != "" {
		for i, old := range b.evs {
			if droppable(old) == k {
				b.evs = append(b.evs[:i], b.evs[i+1:]...)
				break
			}
		}
	}
	b.evs = append(b.evs, ev)
	b.signal()
}

func (b *fakeBox) end(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.over, b.err = true, err
	b.signal()
}

func (b *fakeBox) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

func (b *fakeBox) take(ctx context.Context) ([]upstream.Event, error, bool) {
	for {
		b.mu.Lock()
		evs, over, err := b.evs, b.over, b.err
		b.evs = nil
		b.mu.Unlock()
		if len(evs) > 0 || over {
			return evs, err, over
		}
		select {
		case <-b.ready:
		case <-ctx.Done():
			return nil, ctx.Err(), true
		}
	}
}

func (v *fakeVisitor) Download(ctx context.Context, fd upstream.FileData, limit int64) (*upstream.Download, error) {
	b, ok := v.f.files[fd.Path]
	if !ok {
		return nil, &upstream.Error{Code: upstream.CodeUnavailable, Message: "no such file"}
	}
	if int64(len(b)) > limit {
		return nil, &upstream.Error{Code: upstream.CodeFileTooLarge, Message: "too large"}
	}
	return &upstream.Download{Body: io.NopCloser(bytes.NewReader(b)), Name: fd.Name(), MIME: "image/png", Size: int64(len(b))}, nil
}

// Upload reads the file to its end, a chunk at a time, waiting for
// uploadGate (if set) before each read, and keeps its bytes.
func (v *fakeVisitor) Upload(ctx context.Context, u upstream.Upload, limit int64) (map[string]any, error) {
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	if v.f.answerEarly {
		if _, err := u.Body.Read(buf); err != nil {
			return nil, err
		}
		go func() {
			b := make([]byte, 32<<10)
			for {
				if _, err := u.Body.Read(b); err != nil {
					return
				}
			}
		}()
		return nil, &upstream.Error{Code: upstream.CodeFileTooLarge, Message: "The Space refused the file."}
	}
	for {
		if v.f.uploadGate != nil {
			select {
			case <-v.f.uploadGate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		n, err := u.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	v.f.uploaded = append(v.f.uploaded, got.Bytes())
	path := fmt.Sprintf("/tmp/upload/%d/%s", len(v.f.uploaded), u.Name)
	return map[string]any{"path": path, "orig_name": u.Name, "size": int64(got.Len()),
		"meta": map[string]any{"_type": "gradio.FileData"}}, nil
}

func (v *fakeVisitor) SetHeader(h http.Header) {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	v.f.headers = append(v.f.headers, h)
	v.header = h
}

// snapshot returns what f has recorded so far.
func (f *fakeUpstream) snapshot() (calls []upstream.Call, tokens []string, uploaded [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(calls, f.calls...), append(tokens, f.tokens...), append(uploaded, f.uploaded...)
}

func (v *fakeVisitor) Close() error {
	v.calling.Lock() // no emit in progress
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
