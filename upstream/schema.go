package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	xmessage "golang.org/x/text/message"
)

// Inputs are checked against the JSON schema /info gives for each
// parameter before a job is joined: a value the app would refuse is
// refused here, with a message that names the parameter and what it
// wants, instead of reaching the Space and coming back as a failure that
// does not say why. The schemas are compiled once, at discovery, by
// github.com/santhosh-tekuri/jsonschema (draft 2020-12, which Gradio's
// pydantic schemas follow).

// schemaURL names the one schema of each compiler; nothing is loaded from
// it.
const schemaURL = "urn:spacerelay:param"

// setSchema keeps raw, the parameter's schema, for hello and compiles it.
// A schema that cannot be compiled is still kept; the parameter is then
// not checked.
func (p *Param) setSchema(raw json.RawMessage) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return
	}
	p.Schema = raw
	p.schema = compileSchema(raw)
}

func compileSchema(raw json.RawMessage) *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{}) // a Space's schema must not make us read files or URLs
	if c.AddResource(schemaURL, doc) != nil {
		return nil
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil
	}
	return s
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("schemas are not loaded from elsewhere")
}

// checkArgs checks the values given for the endpoint's parameters, args
// in the order of Inputs, those with given[i] false being defaults.
func (ep *Endpoint) checkArgs(args []any, given []bool) error {
	var problems []string
	for i := range ep.Inputs {
		if given[i] {
			if msg := ep.Inputs[i].check(args[i]); msg != "" {
				problems = append(problems, msg)
			}
		}
	}
	if len(problems) > 0 {
		return invalidInput(strings.Join(problems, "; "))
	}
	return nil
}

// checkSlots checks data, the full data of a join (State slots included).
func (ep *Endpoint) checkSlots(data []any) error {
	args := make([]any, len(ep.Inputs))
	given := make([]bool, len(ep.Inputs))
	for i, slot := range ep.slots {
		if slot >= 0 {
			args[slot], given[slot] = data[i], true
		}
	}
	return ep.checkArgs(args, given)
}

// check returns what is wrong with v as a value of p, or "" if nothing is
// or p is not checked. null always passes: Gradio hands it to the app as
// None, "no value", which is the app's to accept or not.
func (p *Param) check(v any) string {
	if p.schema == nil || v == nil {
		return ""
	}
	v = jsonValue(v)
	err := p.schema.Validate(v)
	if err == nil {
		return ""
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return p.Name + ": " + err.Error()
	}
	return p.explain(verr, v)
}

// jsonValue returns v as encoding/json decodes JSON (maps, slices,
// strings, numbers, bools, nil), which is what the validator reads. Data
// decoded from JSON is returned as it is; other Go values (a struct, a
// []string) go through an encoding.
func jsonValue(v any) any {
	if plainJSON(v) {
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return v // the validator reports it as not JSON
	}
	return decodeValue(b)
}

func plainJSON(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	case []any:
		for _, e := range v {
			if !plainJSON(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range v {
			if !plainJSON(e) {
				return false
			}
		}
		return true
	}
	return false
}

// explain words a validation failure for a page developer: where in the
// value it is, what was expected there and what came.
func (p *Param) explain(verr *jsonschema.ValidationError, v any) string {
	leaves := deepestLeaves(verr)
	loc := leaves[0].InstanceLocation
	at := p.Name + location(loc)
	got := valueAt(v, loc)
	if want, ok := wantedTypes(leaves); ok {
		if len(loc) == 0 {
			return at + ": expected " + p.expected(want) + ", got " + describeValue(got)
		}
		return at + ": expected " + typeWords(want) + ", got " + describeValue(got) + p.hint()
	}
	msg := at + ": " + kindWords(leaves[0].ErrorKind, got)
	if len(loc) > 0 || !isEnum(leaves[0].ErrorKind) {
		msg += p.hint()
	}
	return msg
}

// deepestLeaves returns the failures that are furthest into the value
// (the most precise), in the order the validator found them.
func deepestLeaves(verr *jsonschema.ValidationError) []*jsonschema.ValidationError {
	var leaves []*jsonschema.ValidationError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			switch {
			case len(leaves) == 0 || len(e.InstanceLocation) > len(leaves[0].InstanceLocation):
				leaves = []*jsonschema.ValidationError{e}
			case len(e.InstanceLocation) == len(leaves[0].InstanceLocation):
				leaves = append(leaves, e)
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(verr)
	return leaves
}

// wantedTypes returns the JSON types wanted at the failures' place, when
// every failure there is one of type (as with the branches of an anyOf).
func wantedTypes(leaves []*jsonschema.ValidationError) ([]string, bool) {
	var want []string
	for _, l := range leaves {
		t, ok := l.ErrorKind.(*kind.Type)
		if !ok {
			return nil, false
		}
		for _, w := range t.Want {
			if !contains(want, w) {
				want = append(want, w)
			}
		}
	}
	return want, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// expected says what the whole value of p should be, in the words of its
// component where the schema's would not help a person.
func (p *Param) expected(types []string) string {
	switch {
	case p.Component == "Chatbot":
		return "a list of messages"
	case p.Component == "Gallery":
		return "a list of images"
	case p.Type == "file":
		return "an uploaded file"
	}
	return typeWords(types)
}

// hint reminds of what the whole value should be, after a failure deep in
// it.
func (p *Param) hint() string {
	switch {
	case p.Component == "Chatbot":
		return " (a Chatbot takes a list of messages; hello gives this input's schema)"
	case p.Type == "file":
		return " (a file input takes an uploaded file)"
	}
	return ""
}

var typeWord = map[string]string{
	"string": "a string", "number": "a number", "integer": "a whole number",
	"boolean": "true or false", "array": "a list", "object": "an object", "null": "null",
}

func typeWords(types []string) string {
	words := make([]string, 0, len(types))
	for _, t := range types {
		if w, ok := typeWord[t]; ok {
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return "a value of another shape"
	}
	return strings.Join(words, " or ")
}

// describeValue says what a value is, with a sample of it when short.
func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(v)
	case string:
		return "a string (" + sample(v) + ")"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case json.Number:
		return "a number (" + v.String() + ")"
	case float32, float64, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("a number (%v)", v)
	}
	return "a value that is not JSON"
}

// sample quotes s, cut short if it is long.
func sample(s string) string {
	const max = 32
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max]) + "…")
	}
	return strconv.Quote(s)
}

func isEnum(k jsonschema.ErrorKind) bool {
	switch k.(type) {
	case *kind.Enum, *kind.Const:
		return true
	}
	return false
}

// printer words the failures kindWords has no words of its own for.
var printer = xmessage.NewPrinter(language.English)

func kindWords(k jsonschema.ErrorKind, got any) string {
	switch k := k.(type) {
	case *kind.Enum:
		return "expected one of " + listValues(k.Want) + ", got " + showValue(got)
	case *kind.Const:
		return "expected " + showValue(k.Want) + ", got " + showValue(got)
	case *kind.Required:
		if len(k.Missing) == 1 {
			return strconv.Quote(k.Missing[0]) + " is missing"
		}
		return quoteList(k.Missing) + " are missing"
	case *kind.AdditionalProperties:
		return quoteList(k.Properties) + " not expected here"
	case *kind.FalseSchema:
		return "no value is expected here"
	}
	return k.LocalizedString(printer)
}

// listValues shows an enum's values, the first few of them.
func listValues(vals []any) string {
	const max = 12
	shown := make([]string, 0, min(len(vals), max))
	for i, v := range vals {
		if i == max {
			shown = append(shown, "…")
			break
		}
		shown = append(shown, showValue(v))
	}
	return strings.Join(shown, ", ")
}

// showValue shows a value as JSON when it is short, else says what it is.
func showValue(v any) string {
	switch v.(type) {
	case string:
		return sample(v.(string))
	case []any, map[string]any:
		return describeValue(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return describeValue(v)
	}
	return string(b)
}

// location writes a JSON pointer's tokens as a path after the
// parameter's name: [0].content.
func location(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		if _, err := strconv.Atoi(t); err == nil {
			b.WriteString("[" + t + "]")
		} else {
			b.WriteString("." + t)
		}
	}
	return b.String()
}

// valueAt returns the part of v at the JSON pointer tokens, or nil.
func valueAt(v any, tokens []string) any {
	for _, t := range tokens {
		switch c := v.(type) {
		case map[string]any:
			v = c[t]
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}
