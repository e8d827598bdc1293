package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// errSSETooLarge is returned (wrapped) by parseSSE for an event whose data
// is over its size limit.
var errSSETooLarge = errors.New("sse: event too large")

var sseLF = []byte{'\n'}

// parseSSE reads a Server-Sent Events stream from r and calls fn with the
// data of each event, as soon as the blank line that ends the event has been
// read: it never waits for more input before handing an event over.
//
// The data of an event is its "data:" lines joined by "\n", each without the
// one space that may follow the colon. Comment lines (":…") and the fields
// event, id, retry and any unknown field are ignored, and so is an event
// without a data line. Lines may end in "\n", "\r\n" or "\r". A byte-order
// mark is not stripped (Gradio never sends one).
//
// The data slice passed to fn is reused for the next event: fn must copy it
// (or decode it) before it returns.
//
// An event whose data is over maxEvent bytes stops the parse with an error
// (wrapping errSSETooLarge): the parser holds at most one event's data, so
// its memory stays within about twice maxEvent plus a 4 KiB read buffer.
// Lines of other fields and comments are skipped without being buffered.
// parseSSE returns nil at the end of r, discarding a final event that lacks
// its blank line; fn's error as is; or a read error as "sse: %w".
func parseSSE(r io.Reader, maxEvent int, fn func(data []byte) error) error {
	p := sseParser{br: bufio.NewReader(r), max: maxEvent}
	return p.run(fn)
}

// Line states of sseParser.
const (
	sseHead = iota // at the start of a line, field name not known yet
	sseData        // in the value of a data line
	sseSkip        // in a line that is not a data line
)

// sseParser holds the state of one parseSSE call.
type sseParser struct {
	br  *bufio.Reader
	max int

	data    []byte // data of the event being read, lines joined by "\n"
	hasData bool   // the event has a data line

	state  int
	head   [6]byte // the first bytes of the line, while state == sseHead
	nhead  int
	skipLF bool // the last line ended in "\r": a "\n" next belongs to it
}

func (p *sseParser) run(fn func([]byte) error) error {
	for {
		if p.br.Buffered() == 0 {
			// Block only when nothing is buffered, so that every complete
			// event already read has been handed over.
			if _, err := p.br.Peek(1); err != nil {
				if err == io.EOF {
					return nil
				}
				return fmt.Errorf("sse: %w", err)
			}
		}
		b, _ := p.br.Peek(p.br.Buffered())
		if p.skipLF {
			p.skipLF = false
			if b[0] == '\n' {
				p.br.Discard(1)
				continue
			}
		}
		i := indexEOL(b)
		if i < 0 {
			err := p.feed(b)
			p.br.Discard(len(b))
			if err != nil {
				return err
			}
			continue
		}
		err := p.feed(b[:i])
		p.skipLF = b[i] == '\r'
		p.br.Discard(i + 1)
		if err == nil {
			err = p.endLine(fn)
		}
		if err != nil {
			return err
		}
	}
}

// indexEOL returns the index of the first '\r' or '\n' in b, or -1.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	search := b
	if i >= 0 {
		search = b[:i]
	}
	if j := bytes.IndexByte(search, '\r'); j >= 0 {
		return j
	}
	return i
}

// feed takes the next piece of the current line (without its line end).
func (p *sseParser) feed(b []byte) error {
	for p.state == sseHead && len(b) > 0 {
		c := b[0]
		b = b[1:]
		if p.nhead < len("data:") && c != "data:"[p.nhead] {
			p.state = sseSkip
			return nil
		}
		p.head[p.nhead] = c
		p.nhead++
		if p.nhead == len(p.head) {
			if err := p.startData(); err != nil {
				return err
			}
			p.state = sseData
			if c != ' ' {
				if err := p.appendData(p.head[5:]); err != nil {
					return err
				}
			}
		}
	}
	if p.state == sseData {
		return p.appendData(b)
	}
	return nil
}

// startData begins the value of a data line.
func (p *sseParser) startData() error {
	if p.hasData {
		return p.appendData(sseLF)
	}
	p.hasData = true
	return nil
}

func (p *sseParser) appendData(b []byte) error {
	if len(p.data)+len(b) > p.max {
		return fmt.Errorf("%w (limit %d bytes)", errSSETooLarge, p.max)
	}
	p.data = append(p.data, b...)
	return nil
}

// endLine finishes the current line and, on a blank line, delivers the event.
func (p *sseParser) endLine(fn func([]byte) error) error {
	state, head := p.state, p.head[:p.nhead]
	p.state, p.nhead = sseHead, 0
	if state != sseHead {
		return nil // the line was handled as it came
	}
	switch string(head) {
	case "":
		return p.dispatch(fn)
	case "data", "data:":
		return p.startData() // a data line with an empty value
	}
	return nil // a short line of another field
}

func (p *sseParser) dispatch(fn func([]byte) error) error {
	if !p.hasData {
		return nil
	}
	err := fn(p.data)
	p.data, p.hasData = p.data[:0], false
	return err
}
