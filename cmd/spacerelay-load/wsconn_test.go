package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// serverFrame appends a server frame (unmasked) with payload p.
func serverFrame(b []byte, fin bool, op byte, p []byte) []byte {
	first := op
	if fin {
		first |= 0x80
	}
	switch n := len(p); {
	case n < 126:
		b = append(b, first, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, first, 126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, first, 127), uint64(n))
	}
	return append(b, p...)
}

// fragments returns a binary message of p in frames of at most frame
// bytes (0: one frame), with a ping between the first two.
func fragments(p []byte, frame int, ping bool) []byte {
	if frame <= 0 || frame >= len(p) {
		return serverFrame(nil, true, opBinary, p)
	}
	var b []byte
	op := byte(opBinary)
	for i := 0; i < len(p); i += frame {
		end := min(i+frame, len(p))
		b = serverFrame(b, end == len(p), op, p[i:end])
		op = opContinuation
		if ping && i == 0 {
			b = serverFrame(b, true, opPing, []byte("hi"))
		}
	}
	return b
}

// testConn returns a wsConn that reads wire, and what it writes.
func testConn(wire []byte) (*wsConn, *pipeSink) {
	sink := &pipeSink{}
	c := &wsConn{conn: sink, br: bufio.NewReaderSize(&onceReader{b: wire}, 2048), limit: 1 << 20}
	return c, sink
}

type onceReader struct{ b []byte }

func (r *onceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// pipeSink is a net.Conn that keeps what is written.
type pipeSink struct {
	net.Conn
	written []byte
}

func (s *pipeSink) Write(p []byte) (int, error) {
	s.written = append(s.written, p...)
	return len(p), nil
}
func (s *pipeSink) SetWriteDeadline(time.Time) error { return nil }

func TestReadFragmentedMessage(t *testing.T) {
	payload := make([]byte, 300_000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, frame := range []int{0, 1, 1000, 65536, 299_999} {
		t.Run(strconv.Itoa(frame), func(t *testing.T) {
			c, sink := testConn(fragments(payload, frame, frame > 0))
			op, r, err := c.next()
			if err != nil || op != opBinary {
				t.Fatalf("next() = %d, %v", op, err)
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != string(payload) {
				t.Fatalf("read %d bytes, %v; want %d bytes", len(got), err, len(payload))
			}
			if frame > 0 && (len(sink.written) == 0 || sink.written[0] != 0x80|opPong) {
				t.Errorf("wrote % x, want a pong for the ping between the fragments", sink.written)
			}
		})
	}
}

func TestFragmentedMessageOverLimit(t *testing.T) {
	c, _ := testConn(fragments(make([]byte, 5000), 1000, false))
	c.limit = 4096
	_, r, err := c.next()
	if err != nil {
		t.Fatalf("next() = %v", err)
	}
	if n, err := io.Copy(io.Discard, r); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read %d bytes of a 5000-byte message over a limit of 4096: %v, want an error", n, err)
	}
}

// BenchmarkReadMessage reads a 1 MiB binary message from loopback TCP as
// the visitors of the throughput mode do, in one frame or in fragments,
// beside reading the same bytes raw (as the direct download does).
func BenchmarkReadMessage(b *testing.B) {
	payload := make([]byte, 1<<20)
	for _, tc := range []struct {
		name  string
		frame int // 0: one frame; -1: raw bytes, no WebSocket
	}{{"raw", -1}, {"one-frame", 0}, {"frames-16KiB", 16 << 10}, {"frames-64KiB", 64 << 10}, {"frames-256KiB", 256 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			wire := payload
			if tc.frame >= 0 {
				wire = fragments(payload, tc.frame, false)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				for {
					var one [1]byte // one message per request
					if _, err := conn.Read(one[:]); err != nil {
						return
					}
					if _, err := conn.Write(wire); err != nil {
						return
					}
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := &wsConn{conn: conn, br: bufio.NewReaderSize(conn, 2048), limit: 1 << 20}
			v := &visitor{}
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write([]byte{1}); err != nil {
					b.Fatal(err)
				}
				if tc.frame < 0 {
					if _, err := io.Copy(io.Discard, io.LimitReader(c.br, int64(len(payload)))); err != nil {
						b.Fatal(err)
					}
					continue
				}
				_, r, err := c.next()
				if err != nil {
					b.Fatal(err)
				}
				if err := v.binary(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
