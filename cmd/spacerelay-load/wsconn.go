package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// wsConn is the client end of a WebSocket (RFC 6455), as small as the
// load needs: no compression, no TLS, messages read as streams. One
// goroutine reads (next, and the message readers it returns); writes may
// come from any goroutine. Control frames are answered as they are read.
//
// The load generator has its own client rather than coder/websocket's
// Dial so that its cost per session (an http.Transport round trip, two
// helper goroutines, a timer per write) does not take the CPU the relay
// under test needs: on two cores, a client as costly as the relay halves
// the handshake rate that can be measured.
type wsConn struct {
	conn  net.Conn
	br    *bufio.Reader
	limit int64 // largest message payload accepted

	wmu       sync.Mutex // guards what follows
	wbuf      []byte
	closeSent bool
}

// A closeError is a close frame from the relay.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("websocket closed: %d %s", e.code, e.reason) }

// closeStatus returns the code of the relay's close frame, or -1.
func closeStatus(err error) int {
	var ce *closeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return -1
}

// Frame opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

var errRefused = errors.New("websocket: upgrade refused")

// wsDial opens a WebSocket to u (ws://host[:port]/path), connecting to
// addr, with header. A refused upgrade returns its response (with up to
// 1 KiB of its body) and errRefused.
func wsDial(ctx context.Context, d *net.Dialer, addr string, u *url.URL, header http.Header) (*wsConn, *http.Response, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > writeTimeout {
		deadline = time.Now().Add(writeTimeout)
	}
	conn.SetDeadline(deadline)
	c := &wsConn{conn: conn, br: bufio.NewReaderSize(conn, 2048), limit: 1 << 20}
	resp, err := c.handshake(u, header)
	if err != nil {
		conn.Close()
		return nil, resp, err
	}
	conn.SetDeadline(time.Time{})
	return c, resp, nil
}

func (c *wsConn) handshake(u *url.URL, header http.Header) (*http.Response, error) {
	var k [16]byte // a key need not be secret, only fresh
	binary.LittleEndian.PutUint64(k[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(k[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(k[:])
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", u.RequestURI(), u.Host, key)
	for name, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return resp, errRefused
	}
	sum := sha1.Sum([]byte(key + acceptGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return resp, errors.New("websocket: bad Sec-WebSocket-Accept")
	}
	return resp, nil
}

// header is a frame's header.
type header struct {
	fin    bool
	op     byte
	length int64
}

func (c *wsConn) readHeader() (header, error) {
	var b [8]byte
	if _, err := io.ReadFull(c.br, b[:2]); err != nil {
		return header{}, err
	}
	h := header{fin: b[0]&0x80 != 0, op: b[0] & 0x0f, length: int64(b[1] & 0x7f)}
	if b[0]&0x70 != 0 || b[1]&0x80 != 0 {
		return h, errors.New("websocket: reserved bits or a masked frame from the server")
	}
	switch h.length {
	case 126:
		if _, err := io.ReadFull(c.br, b[:2]); err != nil {
			return h, err
		}
		h.length = int64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(c.br, b[:8]); err != nil {
			return h, err
		}
		h.length = int64(binary.BigEndian.Uint64(b[:8]) & (1<<63 - 1))
	}
	return h, nil
}

// next returns the next data message: its opcode and a reader of its
// payload, which must be read to its end before next is called again.
func (c *wsConn) next() (byte, io.Reader, error) {
	for {
		h, err := c.readHeader()
		if err != nil {
			return 0, nil, err
		}
		switch {
		case h.op >= opClose:
			if err := c.control(h); err != nil {
				return 0, nil, err
			}
		case h.op == opText || h.op == opBinary:
			if h.length > c.limit {
				return 0, nil, fmt.Errorf("websocket: a message of %d bytes, over the limit of %d", h.length, c.limit)
			}
			return h.op, &msgReader{c: c, left: h.length, fin: h.fin, size: h.length}, nil
		default:
			return 0, nil, fmt.Errorf("websocket: unexpected opcode %d", h.op)
		}
	}
}

// control handles a control frame: a ping is answered, a close is
// answered and returned as a *closeError.
func (c *wsConn) control(h header) error {
	if h.length > 125 || !h.fin {
		return errors.New("websocket: a bad control frame")
	}
	var p [125]byte
	if _, err := io.ReadFull(c.br, p[:h.length]); err != nil {
		return err
	}
	payload := p[:h.length]
	switch h.op {
	case opPing:
		return c.write(opPong, payload)
	case opClose:
		ce := &closeError{code: 1005}
		if len(payload) >= 2 {
			ce.code, ce.reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
		c.writeClose(ce.code)
		return ce
	}
	return nil
}

// msgReader reads the payload of one message, across its frames: a
// message may come in several, and only their sum is bounded by the limit.
type msgReader struct {
	c    *wsConn
	left int64 // of the current frame
	fin  bool  // the current frame is the message's last
	size int64 // of the frames so far
}

func (m *msgReader) Read(p []byte) (int, error) {
	for m.left == 0 {
		if m.fin {
			return 0, io.EOF
		}
		h, err := m.c.readHeader()
		switch {
		case err != nil:
			return 0, err
		case h.op >= opClose:
			if err := m.c.control(h); err != nil {
				return 0, err
			}
		case h.op != opContinuation:
			return 0, errors.New("websocket: a new message inside a fragmented one")
		case m.size+h.length > m.c.limit:
			return 0, fmt.Errorf("websocket: a message of over %d bytes, over the limit of %d", m.size+h.length, m.c.limit)
		default:
			m.left, m.fin, m.size = h.length, h.fin, m.size+h.length
		}
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.c.br.Read(p)
	m.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// write sends one masked frame within the write timeout.
func (c *wsConn) write(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	return c.writeLocked(op, p)
}

func (c *wsConn) writeLocked(op byte, p []byte) error {
	b := append(c.wbuf[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	maskBytes(b[start:], mask)
	c.wbuf = b
	c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.conn.Write(b)
	return err
}

// maskBytes XORs b with the repeated 4-byte mask, 8 bytes at a time: an
// upload's frames are large, and the load generator's CPU is the relay's
// on a small machine.
func maskBytes(b []byte, mask [4]byte) {
	m := uint64(binary.LittleEndian.Uint32(mask[:]))
	m |= m << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^m)
	}
	for ; i < len(b); i++ {
		b[i] ^= mask[i&3]
	}
}

// writeClose sends a close frame with code, once; the relay answers with
// its own and closes the connection, which ends the reader. If it does
// not within 5 s, the reader's deadline does.
func (c *wsConn) writeClose(code int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c.writeLocked(opClose, binary.BigEndian.AppendUint16(nil, uint16(code)))
}

// closeNow drops the connection.
func (c *wsConn) closeNow() error { return c.conn.Close() }
