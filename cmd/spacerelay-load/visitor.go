package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// writeTimeout bounds every write of a visitor.
const writeTimeout = 10 * time.Second

// fileMagic starts a file stamped by the harness (see the package doc).
const fileMagic = "SRLSTAMP"

// A visitor is one browser session of the load. One goroutine, run, owns
// its socket's reading and does the work of each message; timers submit
// the next job after --think and end the hold. mu guards what they share.
type visitor struct {
	// Static after newVisitor.
	load    *loadRun
	token   string
	onReady func(ok bool) // called once: hello arrived, or the session failed before it
	conn    *wsConn

	mu sync.Mutex
	// Guarded by mu.
	hello     bool
	submitted int
	cur       jobState
	closing   bool // we are closing the socket: its end is no error
	rec       recorder
}

// jobState is the visitor's current job.
type jobState struct {
	id       string
	sent     time.Time
	progress bool // a progress message has arrived
	done     bool
}

// message is what a visitor reads of a relay message.
type message struct {
	Type   string  `json:"type"`
	ID     *string `json:"id"`
	Code   string  `json:"code"`
	Steps  []step  `json:"steps"`
	Limits *limits `json:"limits"`
}

type limits struct {
	MaxFileBytes int64 `json:"max_file_bytes"`
}

type step struct {
	Desc *string `json:"desc"`
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// run dials, then reads until the socket closes. ctx ending closes it.
func (v *visitor) run(ctx context.Context) {
	var once sync.Once
	ready := func(ok bool) { once.Do(func() { v.onReady(ok) }) }
	defer ready(false)
	start := time.Now()
	v.rec.firstDial = start
	conn, resp, err := wsDial(ctx, v.load.dialer, v.load.addr, v.load.url, http.Header{
		v.load.cfg.header:        {v.token},
		"Sec-WebSocket-Protocol": {"spacerelay.v1"},
	})
	if err != nil {
		v.rec.sessionsFailed++
		v.rec.error(dialErrorKey(resp, err))
		return
	}
	v.conn = conn
	defer conn.closeNow()
	stop := context.AfterFunc(ctx, v.shutdown)
	defer stop()
	for {
		op, r, err := conn.next()
		if err != nil {
			v.ended(err)
			return
		}
		if op == opBinary {
			err = v.binary(r)
		} else {
			err = v.text(r, start, ready)
		}
		if err != nil {
			v.ended(err)
			return
		}
	}
}

// text handles one text message.
func (v *visitor) text(r io.Reader, start time.Time, ready func(bool)) error {
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	now := time.Now()
	var m message
	jsonErr := decode(buf.Bytes(), &m)
	v.mu.Lock()
	v.rec.messages++
	v.rec.textBytes += int64(buf.Len())
	if jsonErr != nil {
		v.rec.error("protocol:not_json")
		v.mu.Unlock()
		return nil
	}
	if !v.hello {
		return v.first(&m, start, now, ready)
	}
	next := v.handle(&m, now)
	v.mu.Unlock()
	if next != nil {
		next()
	}
	return nil
}

// decode decodes a message, but reads only the limit of a hello: it is
// the largest message, one per handshake, and the load generator's
// decoding of it would take the relay's CPU in the handshake mode.
func decode(b []byte, m *message) error {
	if !bytes.HasPrefix(b, []byte(`{"type":"hello"`)) {
		return json.Unmarshal(b, m)
	}
	m.Type = "hello"
	const key = `"max_file_bytes":`
	if i := bytes.Index(b, []byte(key)); i >= 0 {
		rest := b[i+len(key):]
		end := bytes.IndexAny(rest, ",}")
		if n, err := strconv.ParseInt(string(bytes.TrimSpace(rest[:max(end, 0)])), 10, 64); err == nil {
			m.Limits = &limits{MaxFileBytes: n}
		}
	}
	return nil
}

// first handles the first message, which must be hello. Called with mu
// held; it unlocks it.
func (v *visitor) first(m *message, start, now time.Time, ready func(bool)) error {
	if m.Type != "hello" {
		v.rec.error("protocol:no_hello")
		v.rec.sessionsFailed++
		v.closing = true
		v.mu.Unlock()
		ready(false)
		return errors.New("no hello")
	}
	v.hello = true
	v.rec.sessionsOpened++
	v.rec.add(figHello, now.Sub(start))
	v.rec.lastHello = now
	limit := int64(64 << 20)
	if m.Limits != nil && m.Limits.MaxFileBytes > 0 {
		limit = m.Limits.MaxFileBytes + 4096
	}
	v.conn.limit = limit
	next := v.next()
	v.mu.Unlock()
	ready(true)
	if next != nil {
		next()
	}
	return nil
}

// handle handles a message after hello and returns what to do next, to be
// done without mu (a write or a close). Called with mu held.
func (v *visitor) handle(m *message, now time.Time) func() {
	if m.Type == "pong" {
		return nil
	}
	if m.ID == nil {
		if m.Type == "error" {
			v.rec.error("message:" + m.Code)
		}
		return nil
	}
	j := &v.cur
	if *m.ID != j.id || j.done {
		v.rec.error("protocol:unknown_job")
		return nil
	}
	elapsed := now.Sub(j.sent)
	switch m.Type {
	case "accepted":
		v.rec.add(figAccepted, elapsed)
	case "progress":
		if !j.progress {
			j.progress = true
			v.rec.add(figFirstProgress, elapsed)
		}
		v.stamps(m, now)
	case "result":
		j.done = true
		v.rec.jobsCompleted++
		v.rec.add(figResult, elapsed)
	case "error":
		j.done = true
		v.rec.jobsFailed++
		v.rec.error("job:" + m.Code)
	case "cancelled":
		j.done = true
		v.rec.jobsCancelled++
	}
	if j.done {
		return v.next()
	}
	return nil
}

// stamps records the harness's stamps of a progress message.
func (v *visitor) stamps(m *message, now time.Time) {
	for _, s := range m.Steps {
		if s.Desc == nil {
			continue
		}
		w, e := parseStamps(*s.Desc)
		if w != 0 {
			v.rec.add(figEventWire, now.Sub(time.Unix(0, w)))
		}
		if e != 0 {
			v.rec.add(figEventSession, now.Sub(time.Unix(0, e)))
		}
	}
}

// next returns what comes after hello or a job's end: the next submit,
// now or after --think, or the end of the session, now or after --hold.
// Called with mu held.
func (v *visitor) next() func() {
	cfg := &v.load.cfg
	switch {
	case v.closing:
		return nil
	case v.submitted < cfg.jobs && (cfg.think == 0 || v.submitted == 0):
		return v.prepare()
	case v.submitted < cfg.jobs:
		time.AfterFunc(cfg.think, v.submitLater)
	case cfg.hold == 0:
		return v.shutdown
	case cfg.hold > 0:
		time.AfterFunc(cfg.hold, v.shutdown)
	}
	return nil // a negative hold: until the run ends
}

func (v *visitor) submitLater() {
	v.mu.Lock()
	send := v.prepare()
	v.mu.Unlock()
	send()
}

// prepare starts the next job and returns the write of its submit. Called
// with mu held.
func (v *visitor) prepare() func() {
	if v.closing {
		return func() {}
	}
	v.submitted++
	v.rec.jobsSubmitted++
	id := "j" + strconv.Itoa(v.submitted)
	msg := v.load.submit(id, v.token)
	v.cur = jobState{id: id, sent: time.Now()}
	return func() {
		if err := v.conn.write(opText, msg); err != nil {
			v.conn.closeNow() // the reader sees it
		}
	}
}

// binary reads a file's frame, and its stamp if it has one.
func (v *visitor) binary(r io.Reader) error {
	var head [16]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	rest, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rec.files++
	v.rec.binaryBytes += int64(n) + rest
	if n == len(head) && string(head[:8]) == fileMagic {
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(head[8:])))
		v.rec.add(figFile, now.Sub(sent))
		v.rec.fileBytes = int64(n) + rest
	}
	return nil
}

// shutdown closes the socket normally, once.
func (v *visitor) shutdown() {
	v.mu.Lock()
	if v.closing {
		v.mu.Unlock()
		return
	}
	v.closing = true
	v.mu.Unlock()
	if v.conn.writeClose(1000) != nil {
		v.conn.closeNow()
	}
}

// ended records why the socket closed, if we did not close it.
func (v *visitor) ended(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	unfinished := v.cur.id != "" && !v.cur.done
	if unfinished {
		v.rec.jobsUnfinished++
	}
	if v.closing {
		if unfinished {
			v.rec.error("timeout")
		}
		return
	}
	v.closing = true
	if !v.hello {
		v.rec.sessionsFailed++
	}
	code := closeStatus(err)
	var ce *closeError
	switch {
	case code == -1:
		v.rec.error("closed:abnormal")
	case code >= 4000 && !v.hello && errors.As(err, &ce): // a refusal a page can read
		refused, _, _ := strings.Cut(ce.reason, " ")
		v.rec.error("handshake:" + refused)
	default:
		v.rec.error("closed:" + strconv.Itoa(int(code)))
	}
}

// dialErrorKey names a failed handshake: the refusal's code, or why the
// connection failed.
func dialErrorKey(resp *http.Response, err error) string {
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
				return "handshake:" + body.Error.Code
			}
		}
		return "handshake:http_" + strconv.Itoa(resp.StatusCode)
	}
	for _, c := range []struct {
		errno syscall.Errno
		key   string
	}{
		{syscall.ECONNREFUSED, "dial:refused"}, {syscall.ECONNRESET, "dial:reset"},
		{syscall.EADDRNOTAVAIL, "dial:no_local_port"}, {syscall.EMFILE, "dial:too_many_files"},
		{syscall.ETIMEDOUT, "dial:timeout"},
	} {
		if errors.Is(err, c.errno) {
			return c.key
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "dial:cancelled"
	case errors.Is(err, errNotLoopback):
		return "dial:not_loopback"
	}
	return "dial:other"
}
