package demospace

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// maxBodySize bounds JSON request bodies.
const maxBodySize = 8 << 20

// fieldKind is the pydantic type of a body field.
type fieldKind int

const (
	kindStr fieldKind = iota
	kindInt
	kindBool
	kindList
	kindAny
)

// field describes one field of a pydantic body model.
type field struct {
	name     string
	kind     fieldKind
	required bool
	nullable bool
}

// predictBody and cancelBody are PredictBody and CancelBody of
// gradio/data_classes.py, in declaration order.
var (
	predictBody = []field{
		{"session_hash", kindStr, false, true},
		{"event_id", kindStr, false, true},
		{"data", kindList, true, false},
		{"oauth_token", kindStr, false, true},
		{"event_data", kindAny, false, true},
		{"fn_index", kindInt, false, true},
		{"trigger_id", kindInt, false, true},
		{"simple_format", kindBool, false, false},
		{"batched", kindBool, false, true},
	}
	cancelBody = []field{
		{"session_hash", kindStr, true, false},
		{"fn_index", kindInt, true, false},
		{"event_id", kindStr, true, false},
	}
)

// body is a decoded and validated request body: the raw value of each
// field that was present and not null.
type body map[string]json.RawMessage

func (b body) str(name string) (string, bool) {
	raw, ok := b[name]
	if !ok {
		return "", false
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s, true
}

func (b body) int(name string) (int, bool) {
	raw, ok := b[name]
	if !ok {
		return 0, false
	}
	n, _ := parseInt(raw)
	return n, true
}

func (b body) bool(name string) bool {
	v, _ := parseBool(b[name])
	return v
}

// readBody decodes r's body as FastAPI would for a pydantic model of
// fields. On failure it has already answered 422 with FastAPI's detail list.
func readBody(w http.ResponseWriter, r *http.Request, fields []field) (body, bool) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodySize))
	if err != nil {
		writeText(w, http.StatusRequestEntityTooLarge, "Request body too large")
		return nil, false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		writeDetail(w, http.StatusUnprocessableEntity, []any{object{
			{"type", "missing"}, {"loc", []any{"body"}}, {"msg", "Field required"}, {"input", nil}}})
		return nil, false
	}
	var whole any = string(raw) // not JSON: FastAPI validates the raw text
	if isJSON(r.Header.Get("Content-Type")) {
		if !json.Valid(raw) {
			writeDetail(w, http.StatusUnprocessableEntity, []any{jsonInvalid(raw)})
			return nil, false
		}
		whole = json.RawMessage(raw)
	}
	b, errs := validate(whole, fields)
	if len(errs) > 0 {
		writeDetail(w, http.StatusUnprocessableEntity, errs)
		return nil, false
	}
	return b, true
}

// isJSON tells whether FastAPI would parse a body of this type as JSON:
// no type at all, application/json or application/*+json.
func isJSON(contentType string) bool {
	if contentType == "" {
		return true
	}
	typ, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return typ == "application/json" || strings.HasPrefix(typ, "application/") && strings.HasSuffix(typ, "+json")
}

func jsonInvalid(raw []byte) object {
	var se *json.SyntaxError
	pos := 0
	if err := json.Unmarshal(raw, new(any)); errors.As(err, &se) {
		pos = int(se.Offset)
	}
	return object{{"type", "json_invalid"}, {"loc", []any{"body", pos}}, {"msg", "JSON decode error"},
		{"input", object{}}, {"ctx", object{{"error", "Expecting value"}}}}
}

// validate checks a body against fields and returns pydantic's errors.
func validate(whole any, fields []field) (body, []any) {
	raw, isRaw := whole.(json.RawMessage)
	var members map[string]json.RawMessage
	if !isRaw || json.Unmarshal(raw, &members) != nil || members == nil {
		return nil, []any{object{{"type", "model_attributes_type"}, {"loc", []any{"body"}},
			{"msg", "Input should be a valid dictionary or object to extract fields from"}, {"input", whole}}}
	}
	out := body{}
	var errs []any
	for _, f := range fields {
		v, ok := members[f.name]
		isNull := ok && bytes.Equal(bytes.TrimSpace(v), []byte("null"))
		switch {
		case !ok && f.required:
			errs = append(errs, missing("body", f.name, raw))
		case !ok || isNull && f.nullable:
		default:
			if e := checkKind(f, v); e != nil {
				errs = append(errs, e)
			} else if !isNull {
				out[f.name] = v
			}
		}
	}
	return out, errs
}

func missing(where, name string, input any) object {
	return object{{"type", "missing"}, {"loc", []any{where, name}}, {"msg", "Field required"}, {"input", input}}
}

// checkKind returns pydantic's (lax mode) error for v, or nil.
func checkKind(f field, v json.RawMessage) object {
	loc := []any{"body", f.name}
	bad := func(typ, msg string) object {
		return object{{"type", typ}, {"loc", loc}, {"msg", msg}, {"input", v}}
	}
	switch f.kind {
	case kindStr:
		if v[0] != '"' {
			return bad("string_type", "Input should be a valid string")
		}
	case kindList:
		if v[0] != '[' {
			return bad("list_type", "Input should be a valid list")
		}
	case kindBool:
		if _, ok := parseBool(v); !ok {
			return bad("bool_parsing", "Input should be a valid boolean, unable to interpret input")
		}
	case kindInt:
		if _, err := parseInt(v); err != nil {
			return bad(err.typ, err.msg)
		}
	}
	return nil
}

type intError struct{ typ, msg string }

// parseInt accepts what pydantic's lax int does: integers, floats without
// a fraction, and strings of those.
func parseInt(v json.RawMessage) (int, *intError) {
	s := string(bytes.TrimSpace(v))
	typeErr := &intError{"int_type", "Input should be a valid integer"}
	if strings.HasPrefix(s, `"`) {
		if json.Unmarshal(v, &s) != nil {
			return 0, typeErr
		}
		s = strings.TrimSpace(s)
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return 0, &intError{"int_parsing", "Input should be a valid integer, unable to parse string as an integer"}
		}
	} else if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, typeErr
	}
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, typeErr
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, &intError{"int_from_float", "Input should be a valid integer, got a number with a fractional part"}
	}
	return int(f), nil
}

// parseBool accepts what pydantic's lax bool does.
func parseBool(v json.RawMessage) (bool, bool) {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false, false
	}
	switch x := x.(type) {
	case bool:
		return x, true
	case float64:
		if x == 0 || x == 1 {
			return x == 1, true
		}
	case string:
		switch strings.ToLower(x) {
		case "0", "off", "f", "false", "n", "no":
			return false, true
		case "1", "on", "t", "true", "y", "yes":
			return true, true
		}
	}
	return false, false
}
