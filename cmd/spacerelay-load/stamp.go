package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spacerelay/spacerelay/session"
	"github.com/spacerelay/spacerelay/upstream"
)

// The harness's stamps (see the package doc): wall-clock times in unix
// nanoseconds, which the load generator, another process on the same
// machine, compares with its own clock.

// stampSSE stamps "w=<now>" into the desc of every progress bar of the
// demo Space's queue/data streams, as each event is written.
func stampSSE(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/queue/data") {
			w = stampWriter{w}
		}
		next.ServeHTTP(w, r)
	})
}

// stampWriter is an http.ResponseWriter whose writes of progress events
// are stamped. The demo Space writes each event in one Write.
type stampWriter struct{ http.ResponseWriter }

var (
	progressKind = []byte(`"msg":"progress"`)
	nullDesc     = []byte(`"desc":null`)
)

func (w stampWriter) Write(p []byte) (int, error) {
	if !bytes.Contains(p, progressKind) {
		return w.ResponseWriter.Write(p)
	}
	stamp := strconv.AppendInt([]byte(`"desc":"w=`), time.Now().UnixNano(), 10)
	stamp = append(stamp, '"')
	if _, err := w.ResponseWriter.Write(bytes.ReplaceAll(p, nullDesc, stamp)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush and Unwrap let http.ResponseController reach the real writer.
func (w stampWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w stampWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// stampUpstream stamps "e=<now>" into the desc of every progress bar as
// the upstream client hands the event to the session.
type stampUpstream struct{ session.Upstream }

func (u stampUpstream) Open(h http.Header) session.Visitor { return stampVisitor{u.Upstream.Open(h)} }

type stampVisitor struct{ session.Visitor }

func (v stampVisitor) Submit(ctx context.Context, call upstream.Call) (session.Job, error) {
	j, err := v.Visitor.Submit(ctx, call)
	if err != nil {
		return nil, err
	}
	return stampJob{j}, nil
}

type stampJob struct{ session.Job }

func (j stampJob) Follow(fn func(upstream.Event) error) error {
	return j.Job.Follow(func(ev upstream.Event) error {
		if p, ok := ev.(*upstream.Progress); ok {
			stampSteps(p.Steps, time.Now())
		}
		return fn(ev)
	})
}

func stampSteps(steps []upstream.ProgressStep, now time.Time) {
	for i := range steps {
		d := "e=" + strconv.FormatInt(now.UnixNano(), 10)
		if old := steps[i].Desc; old != nil && *old != "" {
			d = *old + " " + d
		}
		steps[i].Desc = &d
	}
}

// stampedFiles serves every file of the demo Space as size random bytes
// that begin with fileMagic and the time the response began.
type stampedFiles struct {
	next    http.Handler
	payload []byte
}

func newStampedFiles(next http.Handler, size int64) *stampedFiles {
	p := make([]byte, size)
	rand.Read(p)
	return &stampedFiles{next: next, payload: p}
}

func (f *stampedFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/file=") {
		f.next.ServeHTTP(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Content-Length", strconv.Itoa(len(f.payload)))
	w.WriteHeader(http.StatusOK)
	var head [16]byte
	copy(head[:8], fileMagic)
	binary.BigEndian.PutUint64(head[8:], uint64(time.Now().UnixNano()))
	if _, err := w.Write(head[:]); err == nil {
		w.Write(f.payload[len(head):])
	}
}
