package upstream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// scanMessage decodes the plain shapes of a stream message without
// reflection: a job's progress, queue and log updates arrive several times
// a second, and encoding/json spends most of its time on them finding
// fields and allocating pointers. It reports false for anything it does
// not handle itself (an escaped string, a key in another case, a number
// where it wants an integer, …) and decodeMessage then uses encoding/json,
// which stays the reference: FuzzScanMessage holds the two equal.
func scanMessage(b []byte) (*message, bool) {
	s := scanner{b: b}
	m := &message{}
	if !s.consume('{') {
		return nil, false
	}
	if s.consume('}') {
		return m, s.end()
	}
	var seen uint32
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') || !once(&seen, key, messageKeys) || !s.field(m, key) {
			return nil, false
		}
		if s.consume('}') {
			return m, s.end()
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

// scanner reads JSON tokens from b; every method skips white space first.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

func (s *scanner) null() bool {
	s.space()
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// str reads a string without escapes, of valid UTF-8.
func (s *scanner) str() (string, bool) {
	v, ok := s.strBytes()
	return string(v), ok
}

// kind reads a msg: the kinds Gradio sends cost no allocation.
func (s *scanner) kind() (string, bool) {
	v, ok := s.strBytes()
	for _, k := range messageKinds {
		if string(v) == k {
			return k, ok
		}
	}
	return string(v), ok
}

var messageKinds = []string{"progress", "estimation", "heartbeat", "process_starts", "log",
	"process_generating", "process_streaming", "process_completed", "close_stream", "unexpected_error", "send_hash"}

func (s *scanner) strBytes() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

func (s *scanner) optStr() (*string, bool) {
	if s.null() {
		return nil, true
	}
	v, ok := s.str()
	return &v, ok
}

// literal reads the bytes of a number.
func (s *scanner) literal() []byte {
	s.space()
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			s.i++
			continue
		}
		break
	}
	return s.b[start:s.i]
}

func (s *scanner) optFloat() (*float64, bool) {
	if s.null() {
		return nil, true
	}
	lit := s.literal()
	if !validNumber(lit) {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, false
	}
	return &f, true
}

func (s *scanner) optInt() (*int, bool) {
	if s.null() {
		return nil, true
	}
	lit := s.literal()
	if !validNumber(lit) || bytes.ContainsAny(lit, ".eE") {
		return nil, false
	}
	n, err := strconv.Atoi(string(lit))
	if err != nil {
		return nil, false
	}
	return &n, true
}

func (s *scanner) boolean() (bool, bool) {
	s.space()
	switch rest := s.b[s.i:]; {
	case bytes.HasPrefix(rest, []byte("true")):
		s.i += 4
		return true, true
	case bytes.HasPrefix(rest, []byte("false")):
		s.i += 5
		return false, true
	}
	return false, false
}

// raw reads any one value, whole, checked by encoding/json.
func (s *scanner) raw() ([]byte, bool) {
	s.space()
	start, depth := s.i, 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			if !s.skipString() {
				return nil, false
			}
			if depth == 0 {
				return s.checked(start)
			}
			continue
		case '{', '[':
			if depth++; depth > maxRawDepth {
				return nil, false // encoding/json counts the enclosing levels too
			}
		case '}', ']':
			if depth == 0 { // the end of the enclosing object or array
				return s.checked(start)
			}
			depth--
			if depth == 0 {
				s.i++
				return s.checked(start)
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.checked(start)
			}
		}
		s.i++
	}
	return s.checked(start)
}

// maxRawDepth bounds the nesting of a value the scanner takes whole, well
// under encoding/json's limit for the message around it.
const maxRawDepth = 512

// skipString moves past the string that starts at s.i.
func (s *scanner) skipString() bool {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return true
		}
	}
	return false
}

func (s *scanner) checked(start int) ([]byte, bool) {
	v := s.b[start:s.i]
	return v, len(v) > 0 && json.Valid(v)
}

// field reads the value of key into m.
func (s *scanner) field(m *message, key string) bool {
	ok := true
	switch key {
	case "msg":
		m.Msg, ok = s.kind()
	case "event_id":
		m.EventID, ok = s.optStr()
	case "rank":
		m.Rank, ok = s.optInt()
	case "queue_size":
		m.QueueSize, ok = s.optInt()
	case "rank_eta":
		m.RankETA, ok = s.optFloat()
	case "eta":
		m.ETA, ok = s.optFloat()
	case "progress_data":
		m.ProgressData, ok = s.steps()
	case "log":
		m.Log, ok = s.optStr()
	case "level":
		m.Level, ok = s.str()
	case "title":
		m.Title, ok = s.optStr()
	case "output":
		var v []byte
		v, ok = s.raw() // (null too: encoding/json gives RawMessage "null")
		m.Output = json.RawMessage(bytes.Clone(v))
	case "success":
		m.Success, ok = s.boolean()
	case "message":
		m.Message, ok = s.optStr()
	case "session_not_found":
		m.SessionNotFound, ok = s.boolean()
	default:
		if isMessageKey(key) { // another case of a known key: encoding/json's rules
			return false
		}
		_, ok = s.raw()
	}
	return ok
}

var messageKeys = []string{"msg", "event_id", "rank", "queue_size", "rank_eta", "eta", "progress_data",
	"log", "level", "title", "output", "success", "message", "session_not_found",
	"index", "length", "unit", "progress", "desc"}

// once reports whether key, if it is one of keys, comes for the first
// time: encoding/json decodes a repeated key into what the first one left
// (a slice's elements, for one), which the scanner does not do.
func once(seen *uint32, key string, keys []string) bool {
	for i, k := range keys {
		if k == key {
			if *seen&(1<<i) != 0 {
				return false
			}
			*seen |= 1 << i
			return true
		}
	}
	return true
}

func isMessageKey(k string) bool {
	for _, known := range messageKeys {
		if strings.EqualFold(k, known) {
			return true
		}
	}
	return false
}

// steps reads progress_data: null, or an array of progress bars.
func (s *scanner) steps() ([]ProgressStep, bool) {
	if s.null() {
		return nil, true
	}
	if !s.consume('[') {
		return nil, false
	}
	steps := make([]ProgressStep, 0, 1)
	if s.consume(']') {
		return steps, true
	}
	for {
		st, ok := s.step()
		if !ok {
			return nil, false
		}
		steps = append(steps, st)
		if s.consume(']') {
			return steps, true
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

func (s *scanner) step() (ProgressStep, bool) {
	var st ProgressStep
	if !s.consume('{') {
		return st, false
	}
	if s.consume('}') {
		return st, true
	}
	var seen uint32
	for {
		key, ok := s.str()
		if !ok || !s.consume(':') || !once(&seen, key, messageKeys) {
			return st, false
		}
		switch key {
		case "index":
			st.Index, ok = s.optFloat()
		case "length":
			st.Length, ok = s.optFloat()
		case "unit":
			st.Unit, ok = s.optStr()
		case "progress":
			st.Progress, ok = s.optFloat()
		case "desc":
			st.Desc, ok = s.optStr()
		default:
			if isMessageKey(key) {
				return st, false
			}
			_, ok = s.raw()
		}
		if !ok {
			return st, false
		}
		if s.consume('}') {
			return st, true
		}
		if !s.consume(',') {
			return st, false
		}
	}
}

// validNumber reports whether lit is a JSON number.
func validNumber(lit []byte) bool {
	i := 0
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(lit) && lit[i] >= '0' && lit[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	switch {
	case i < len(lit) && lit[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(lit) && lit[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(lit)
}
