package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacerelay/spacerelay/upstream"
)

// Bounds of uploads.
const (
	// uploadWindow is how many chunks of an upload the relay holds for the
	// upstream at most: a page that keeps no more than this many chunks'
	// bytes in flight past the last upload_progress is never slowed down
	// (PROTOCOL.md section 9); a frame past it waits for room. Frames are
	// gathered into chunks, whatever their size.
	uploadWindow = 4
	// maxUploads bounds the uploads a session keeps.
	maxUploads = 256
	// holdStall ends a hold (see chunk) during which the upstream takes
	// nothing: the upload fails, and Run reads the socket again, so that
	// the page's other messages, a closed tab and pongs are seen. Well
	// under the ping interval.
	holdStall = 10 * time.Second
)

// errUploadStalled fails an upload whose upstream stopped taking bytes
// while the page's frames waited.
var errUploadStalled = &upstream.Error{Code: upstream.CodeUnavailable,
	Message: "The Space stopped taking the file. Try again in a moment."}

// upload is one file the page sends (PROTOCOL.md section 9). Its
// goroutine streams the bytes Run hands it to the upstream's upload route.
type upload struct {
	// Static after startUpload.
	id     string
	name   string
	mime   string
	size   int64
	cancel context.CancelFunc
	chunks chan []byte // full chunks, from Run to the goroutine; closed after the last byte

	// Owned by Run.
	received  int64  // bytes taken from the page
	fill      []byte // the chunk being gathered from the page's frames
	reported  int64  // sent, as last told to the page
	ignore    int64  // bytes of frames still to come for an upload that ended early
	over      bool
	cancelled bool
	file      map[string]any // the upstream FileData, once uploaded
	err       error

	// Written by the goroutine, read by Run.
	sent atomic.Int64 // bytes the upstream request has taken
}

// upEvent is an upload's end, from its goroutine.
type upEvent struct {
	u    *upload
	file map[string]any
	err  error
}

type (
	uploadProgressMsg struct {
		Type     string `json:"type"`
		ID       string `json:"id"`
		Received int64  `json:"received"`
		Size     int64  `json:"size"`
	}
	uploadedMsg struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Size int64  `json:"size"`
	}
)

// startUpload begins an upload: its bytes follow in binary frames.
func (s *Session) startUpload(ctx context.Context, m *inbound) error {
	id, ok := s.newID(m)
	if !ok {
		return s.refuse(&errorMsg{Code: "bad_request", Message: idProblem("upload", m)})
	}
	s.bad = 0
	refuse := func(code, format string, args ...any) error {
		// Its frames may be on their way already: as many as a page may
		// send before it hears from the relay are let pass.
		if s.current == nil {
			s.discard = min(*m.Size, uploadWindow*s.cfg.UploadChunkBytes)
		}
		return s.sendError(&errorMsg{ID: id, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case m.Size == nil || *m.Size < 0:
		return s.sendError(&errorMsg{ID: id, Code: "bad_request", Message: `upload: "size" must be the file's size in bytes`})
	case s.current != nil:
		return refuse("bad_request", "upload: upload %q is still arriving: send one file at a time", s.current.id)
	case len(s.uploads) >= maxUploads:
		return refuse("bad_request", "upload: at most %d uploads per session", maxUploads)
	case *m.Size > s.cfg.MaxUploadBytes:
		return refuse("file_too_large", "The file is %d bytes; files of up to %d bytes can be sent here.", *m.Size, s.cfg.MaxUploadBytes)
	case s.uploaded+*m.Size > s.cfg.MaxSessionUploadBytes:
		return refuse("file_too_large", "This page has uploaded %d bytes; the relay takes %d per visit.", s.uploaded, s.cfg.MaxSessionUploadBytes)
	}
	uctx, cancel := context.WithCancel(ctx)
	u := &upload{id: id, name: m.Name, mime: m.MIME, size: *m.Size, cancel: cancel,
		chunks: make(chan []byte, uploadWindow+1)}
	if u.name == "" {
		u.name = "file"
	}
	if s.uploads == nil {
		s.uploads = make(map[string]*upload)
		s.upWake = make(chan struct{}, 1)
	}
	s.uploads[id] = u
	s.uploaded += u.size
	if u.size == 0 {
		close(u.chunks) // all in: no frame belongs to it
	} else {
		s.current = u
	}
	v := s.open()
	s.jobsGroup.Go(func() { s.sendUpload(uctx, v, u) })
	return nil
}

// chunk takes one binary frame of the current upload; the frame's buffer
// goes back to bufs. A frame that would take the upload past its window
// (a page that does not pace itself by upload_progress) is held instead
// (see hold).
func (s *Session) chunk(b []byte) error {
	if u := s.current; u != nil && s.pastWindow(u, int64(len(b))) {
		return s.hold(u, b)
	}
	defer putBuf(b)
	u := s.current
	if u == nil {
		if s.swallow(int64(len(b))) {
			return nil
		}
		return s.refuse(&errorMsg{Code: "bad_request", Message: "a binary frame came with no upload open"})
	}
	n := int64(len(b))
	var problem string
	switch {
	case n > s.cfg.UploadChunkBytes:
		problem = fmt.Sprintf("upload: a frame of %d bytes is over the chunk limit of %d", n, s.cfg.UploadChunkBytes)
	case u.received+n > u.size:
		problem = fmt.Sprintf("upload: more than the %d bytes announced", u.size)
	}
	if problem != "" {
		s.bad++
		return s.failUpload(u, &refusal{code: "bad_request", message: problem})
	}
	if !s.cfg.Budget.tryAcquire(n) {
		return s.failUpload(u, errNoRoom)
	}
	s.gather(u, b)
	u.received += n
	if u.received == u.size {
		if len(u.fill) > 0 {
			u.chunks <- u.fill
			u.fill = nil
		}
		close(u.chunks)
		s.current = nil // the next upload may start
	}
	return nil
}

// pastWindow reports whether a good frame of n bytes would take u past its
// window: more than uploadWindow chunks that the upstream has not taken.
func (s *Session) pastWindow(u *upload, n int64) bool {
	return n <= s.cfg.UploadChunkBytes && u.received+n <= u.size &&
		u.received+n-u.sent.Load() > uploadWindow*s.cfg.UploadChunkBytes
}

// hold keeps frame b of u until the upstream has taken enough of u: Run
// reads no more of the browser's messages meanwhile, so the Space's pace
// becomes the page's, through TCP. Run goes on serving the session's jobs,
// pings and writes. The frame counts in the relay's budget while held, as
// the window's chunks do. A hold the upstream does not move for holdStall
// fails the upload (checkHold).
func (s *Session) hold(u *upload, b []byte) error {
	if !s.cfg.Budget.tryAcquire(int64(len(b))) {
		putBuf(b)
		return s.failUpload(u, errNoRoom)
	}
	s.held, s.holds = b, s.holds+1
	s.holdSent, s.holdMoved = u.sent.Load(), time.Now()
	if s.holdTimer == nil {
		s.holdTimer = time.AfterFunc(holdStall, func() {
			select {
			case s.work <- s.checkHold:
			case <-s.done:
			}
		})
	} else {
		s.holdTimer.Reset(holdStall)
	}
	return nil
}

// resume looks at the held frame again, after each of Run's events: it
// waits on while the upstream has not taken enough of its upload, and
// otherwise (room, or the upload over) goes on as any frame.
func (s *Session) resume() error {
	if u := s.current; u != nil && s.pastWindow(u, int64(len(s.held))) {
		if sent := u.sent.Load(); sent != s.holdSent {
			s.holdSent, s.holdMoved = sent, time.Now()
		}
		return nil
	}
	b := s.held
	s.held = nil
	s.holdTimer.Stop()
	s.cfg.Budget.release(int64(len(b)))
	return s.chunk(b)
}

// checkHold ends a hold that the upstream has not moved for holdStall:
// the upload fails (and the held frame then passes as one already on its
// way). For a hold that moved since, the timer is armed again.
func (s *Session) checkHold() error {
	u := s.current
	if s.held == nil || u == nil {
		return nil
	}
	if sent := u.sent.Load(); sent != s.holdSent {
		s.holdSent, s.holdMoved = sent, time.Now()
	}
	if idle := time.Since(s.holdMoved); idle < holdStall {
		s.holdTimer.Reset(holdStall - idle) // (a firing queued before the upstream moved)
		return nil
	}
	return s.failUpload(u, errUploadStalled)
}

// gather copies a frame's bytes into u's chunks, and hands each full one
// to the upload's goroutine. The window keeps the full ones waiting to at
// most uploadWindow, which u.chunks has room for: this never blocks.
func (s *Session) gather(u *upload, b []byte) {
	size := int(s.cfg.UploadChunkBytes)
	for len(b) > 0 {
		if u.fill == nil {
			u.fill = getBuf(size)[:0]
		}
		k := copy(u.fill[len(u.fill):size], b)
		u.fill, b = u.fill[:len(u.fill)+k], b[k:]
		if len(u.fill) == size {
			u.chunks <- u.fill
			u.fill = nil
		}
	}
}

// swallow takes a frame of an upload that ended early, or was refused,
// within what it announced: frames already on their way are not an error.
func (s *Session) swallow(n int64) bool {
	if s.discard >= n {
		s.discard -= n
		return true
	}
	for _, u := range s.uploads {
		if u.ignore >= n {
			u.ignore -= n
			return true
		}
	}
	return false
}

// failUpload ends the current upload u with err, at once.
func (s *Session) failUpload(u *upload, err error) error {
	if s.current == u {
		s.current = nil
		u.ignore = u.size - u.received
	}
	if u.err == nil {
		u.err = err
	}
	u.cancel()
	return nil // the goroutine reports the end
}

// sendUpload is an upload's goroutine.
func (s *Session) sendUpload(ctx context.Context, v Visitor, u *upload) {
	body := &chunkReader{ctx: ctx, u: u, budget: s.cfg.Budget, wake: s.upWake}
	file, err := v.Upload(ctx, upstream.Upload{Name: u.name, MIME: u.mime, Size: u.size, Body: body}, s.cfg.MaxUploadBytes)
	// The HTTP client may still be reading the body after an early answer
	// (an error before the whole file was sent): cut it, and give back
	// what it holds.
	u.cancel()
	body.close()
	ev := upEvent{u: u, file: file, err: err}
	select {
	case s.work <- func() error { return s.uploadEnded(ev) }:
	case <-s.done:
	}
}

// uploadEnded reports an upload's end to the page, and to the jobs that
// wait for it.
func (s *Session) uploadEnded(ev upEvent) error {
	u := ev.u
	if s.current == u {
		s.current = nil
		u.ignore = u.size - u.received
	}
	u.over = true
	s.drain(u)
	switch {
	case u.err != nil: // the relay ended it: the page's own problem, or no room
	case u.cancelled:
		u.err = context.Canceled
	case ev.err != nil:
		u.err = ev.err
	default:
		u.file = ev.file
	}
	if err := s.reportEnd(u); err != nil {
		return err
	}
	return s.submitWaiting()
}

// reportEnd tells the page how an upload ended.
func (s *Session) reportEnd(u *upload) error {
	if u.file != nil {
		if err := s.reportProgress(u, u.size); err != nil {
			return err
		}
		return s.writeJSON(uploadedMsg{"uploaded", u.id, u.size})
	}
	s.uploaded -= u.size // a failed upload uses none of the session's allowance
	if errors.Is(u.err, context.Canceled) {
		return s.writeJSON(idMsg{"cancelled", u.id})
	}
	return s.sendError(upstreamError(u.id, u.err))
}

// uploadProgress tells the page how far its uploads have gone upstream.
func (s *Session) uploadProgress() error {
	for _, u := range s.uploads {
		if !u.over {
			if err := s.reportProgress(u, u.sent.Load()); err != nil {
				return err
			}
		}
	}
	return nil
}

// reportProgress sends upload_progress for u up to sent bytes: once for
// each chunk's worth the upstream took since the last, and once at the
// end.
func (s *Session) reportProgress(u *upload, sent int64) error {
	step := s.cfg.UploadChunkBytes
	for sent > u.reported {
		next := min(u.reported+step, sent)
		if next-u.reported < step && next < u.size {
			return nil // less than a chunk since the last, and not the end
		}
		u.reported = next
		if err := s.writeJSON(uploadProgressMsg{"upload_progress", u.id, next, u.size}); err != nil {
			return err
		}
	}
	return nil
}

// drain gives back the budget and the buffers of the chunks of u its
// request never took. Its goroutine has ended: nothing else takes from
// u.chunks.
func (s *Session) drain(u *upload) {
	s.cfg.Budget.release(int64(len(u.fill)))
	putBuf(u.fill)
	u.fill = nil
	for {
		select {
		case b, ok := <-u.chunks:
			if !ok {
				return
			}
			s.cfg.Budget.release(int64(len(b)))
			putBuf(b)
		default:
			return
		}
	}
}

// chunkReader is the body of an upload's request: the chunks Run hands
// over, in order. Each chunk's room in the relay's budget is given back as
// the request takes it.
//
// The HTTP client reads it on a goroutine of its own, which may go on
// after the request has returned; mu orders those reads with close, and
// nothing else.
type chunkReader struct {
	ctx    context.Context
	u      *upload
	budget *Budget
	wake   chan struct{}

	mu     sync.Mutex
	buf    []byte // the chunk being read, whole
	cur    []byte // what is left of it
	closed bool
}

// errBodyClosed is a read of an upload's body after its request ended.
var errBodyClosed = errors.New("session: the upload's request is over")

func (r *chunkReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errBodyClosed
	}
	if len(r.cur) == 0 {
		r.giveBack()
		r.mu.Unlock() // not held while it waits
		var (
			b   []byte
			ok  bool
			err error
		)
		select {
		case b, ok = <-r.u.chunks:
			if !ok {
				err = io.EOF
			}
		case <-r.ctx.Done():
			err = r.ctx.Err()
		}
		r.mu.Lock()
		switch {
		case err != nil:
			return 0, err
		case r.closed: // while it waited: the chunk goes back
			r.budget.release(int64(len(b)))
			putBuf(b)
			return 0, errBodyClosed
		}
		r.buf, r.cur = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.u.sent.Add(int64(n))
	select { // Run tells the page, when it gets to it
	case r.wake <- struct{}{}:
	default:
	}
	return n, nil
}

// close ends the body: no read takes a chunk from now on, and the one
// being read goes back.
func (r *chunkReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.giveBack()
}

// giveBack returns the chunk read last, its budget and its buffer. The
// caller holds mu.
func (r *chunkReader) giveBack() {
	r.budget.release(int64(len(r.buf)))
	putBuf(r.buf)
	r.buf, r.cur = nil, nil
}

// bufs holds the buffers of upload frames and chunks for reuse: a frame is
// read into one, its bytes are gathered into a chunk (another), and each
// comes back here once copied, so that a large upload allocates little.
var bufs sync.Pool

// getBuf returns a buffer of n bytes, from bufs if it has one large enough.
func getBuf(n int) []byte {
	if p, ok := bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

// putBuf gives b back to bufs. b must not be used after.
func putBuf(b []byte) {
	if cap(b) >= minPooled {
		b = b[:0]
		bufs.Put(&b)
	}
}

// minPooled: smaller buffers are not worth keeping.
const minPooled = 16 << 10

// readFrame reads a binary frame into a buffer of bufs (of the chunk
// size, grown if the frame is larger: the socket's read limit bounds it).
func readFrame(r io.Reader, chunk int) ([]byte, error) {
	b := getBuf(chunk)
	n := 0
	for {
		if n == len(b) {
			b = append(b, 0)[:n]
			b = b[:cap(b)]
		}
		k, err := r.Read(b[n:])
		n += k
		if err == io.EOF {
			return b[:n], nil
		}
		if err != nil {
			putBuf(b)
			return nil, err
		}
	}
}
