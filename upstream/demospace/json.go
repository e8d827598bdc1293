package demospace

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strconv"
	"unicode/utf8"
)

// member is one key of an object.
type member struct {
	key string
	val any
}

// object is a JSON object that keeps its keys in order, so that messages
// come out with Gradio's field order.
type object []member

// get returns the value of key, or nil.
func (o object) get(key string) any {
	for _, m := range o {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// pyFloat is a float that encodes the way Python prints one: 10.0, not 10.
type pyFloat float64

// optFloat returns nil (JSON null) for a nil pointer, else its pyFloat.
func optFloat(p *float64) any {
	if p == nil {
		return nil
	}
	return pyFloat(*p)
}

// encodeJSON encodes v compactly, without HTML escaping, as orjson and
// Starlette's JSONResponse do. v may hold nil, bool, the int and float
// kinds, pyFloat, string, object, []any, []object, []string, []int,
// json.RawMessage and map[string]any; anything else encodes as null.
func encodeJSON(v any) []byte {
	return appendJSON(make([]byte, 0, 256), v)
}

func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return appendPyFloat(b, v)
	case pyFloat:
		return appendPyFloat(b, float64(v))
	case string:
		return appendString(b, v)
	case object:
		return appendObject(b, v)
	case json.RawMessage:
		if len(v) == 0 {
			return append(b, "null"...)
		}
		return append(b, v...)
	case map[string]any:
		return appendMap(b, v)
	}
	return appendList(b, v)
}

func appendList(b []byte, v any) []byte {
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	case []object:
		items = make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
	case []string:
		items = make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
	case []int:
		items = make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
	default:
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, item := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSON(b, item)
	}
	return append(b, ']')
}

func appendObject(b []byte, o object) []byte {
	b = append(b, '{')
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, m.key)
		b = append(b, ':')
		b = appendJSON(b, m.val)
	}
	return append(b, '}')
}

func appendMap(b []byte, m map[string]any) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	o := make(object, len(keys))
	for i, k := range keys {
		o[i] = member{k, m[k]}
	}
	return appendObject(b, o)
}

// appendPyFloat writes f as Python's repr would: the shortest digits that
// round-trip, always with a fraction or an exponent. NaN and the
// infinities, which JSON lacks, become null.
func appendPyFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-4 || a >= 1e16) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, ".0"...)
}

const hexDigits = "0123456789abcdef"

// appendString quotes s, escaping only what JSON requires; invalid UTF-8
// becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

// writeJSON sends v as an application/json response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body := encodeJSON(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeDetail sends FastAPI's error shape, {"detail": detail}.
func writeDetail(w http.ResponseWriter, status int, detail any) {
	writeJSON(w, status, object{{"detail", detail}})
}

// writeText sends a text/plain response, as Starlette's PlainTextResponse.
func writeText(w http.ResponseWriter, status int, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}
