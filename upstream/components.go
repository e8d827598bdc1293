package upstream

import (
	"encoding/json"
	"slices"
	"strings"
)

// Descriptive fields of an app (labels, help texts, choice labels) are
// read leniently: Gradio puts translation objects, or null, where a string
// is expected, and an app must never be lost for a field of an unexpected
// shape. Each reader here takes any JSON and never fails; what it cannot
// use it leaves empty.

// text is a descriptive text: a string, a translation object
// ({"key":…,"_type":"translation_metadata"} in /info, the string
// `__i18n__{"__type__":"translation_metadata","key":…}` in /config), or
// anything else, which reads as no text.
type text struct {
	s   string // the text, when it was a plain string
	key string // the translation key, when it was a translation object
}

const i18nPrefix = "__i18n__"

func (t *text) UnmarshalJSON(b []byte) error {
	*t = text{}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	switch v := v.(type) {
	case string:
		if rest, ok := strings.CutPrefix(v, i18nPrefix); ok {
			var obj map[string]any
			if json.Unmarshal([]byte(rest), &obj) == nil {
				t.key = translationKey(obj)
				return nil
			}
		}
		t.s = v
	case map[string]any:
		t.key = translationKey(v)
	}
	return nil
}

// translationKey returns the key of a Gradio translation object, or "".
func translationKey(obj map[string]any) string {
	typ, _ := obj["_type"].(string)
	if typ == "" {
		typ, _ = obj["__type__"].(string)
	}
	key, _ := obj["key"].(string)
	if typ != "translation_metadata" {
		return ""
	}
	return key
}

// translations are the app's own texts for its translation keys, in
// English: the i18n_translations of /config.
type translations map[string]string

// readTranslations reads /config's i18n_translations ({"en":{key:text},
// …}, or null) and keeps the English texts.
func readTranslations(raw json.RawMessage) translations {
	var all map[string]map[string]any
	if json.Unmarshal(raw, &all) != nil {
		return nil
	}
	var tr translations
	for key, v := range all["en"] {
		if s, ok := v.(string); ok {
			if tr == nil {
				tr = make(translations)
			}
			tr[key] = s
		}
	}
	return tr
}

// in returns the text for people: a plain string as it is, a translation
// object as the app's own (English) text for its key if it has one, else
// as the key itself.
func (t text) in(tr translations) string {
	if t.key == "" {
		return t.s
	}
	if s := tr[t.key]; s != "" {
		return s
	}
	return t.key
}

// number is a numeric detail (a slider's bounds): a JSON number, or
// anything else, which reads as none.
type number struct{ v *float64 }

func (n *number) UnmarshalJSON(b []byte) error {
	n.v = nil
	var v any
	if json.Unmarshal(b, &v) == nil {
		if f, ok := v.(float64); ok {
			n.v = &f
		}
	}
	return nil
}

// stringList is a list of strings; other items, and other shapes, are
// left out.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	*l = nil
	var items []any
	if json.Unmarshal(b, &items) != nil {
		return nil
	}
	for _, it := range items {
		if s, ok := it.(string); ok {
			*l = append(*l, s)
		}
	}
	return nil
}

// Choice is one of the choices of a Dropdown, Radio or CheckboxGroup:
// Value is what a submit sends, Label what a person sees.
type Choice struct {
	Value any    `json:"value"`
	Label string `json:"label"`
}

// choice is a Choice as /config gives it: a [label, value] pair (Gradio
// 4.x and later), or a bare value that is its own label.
type choice struct {
	value any
	label text
	ok    bool
}

type choiceList []choice

func (l *choiceList) UnmarshalJSON(b []byte) error {
	*l = nil
	var items []json.RawMessage
	if json.Unmarshal(b, &items) != nil {
		return nil
	}
	for _, raw := range items {
		*l = append(*l, readChoice(raw))
	}
	return nil
}

func readChoice(raw json.RawMessage) choice {
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) == nil {
		if len(pair) != 2 {
			return choice{}
		}
		c := choice{ok: true}
		_ = json.Unmarshal(pair[0], &c.label) // text never fails
		c.value = decodeValue(pair[1])
		return c
	}
	c := choice{value: decodeValue(raw), ok: true}
	switch v := c.value.(type) {
	case string:
		c.label.s = v
	case json.Number:
		c.label.s = v.String()
	}
	return c
}

// decodeValue decodes a JSON value with its numbers kept as json.Number,
// as the rest of a job's data is.
func decodeValue(raw json.RawMessage) any {
	var v any
	_ = decodeNumbers(raw, &v)
	return v
}

// props are the parts of a component's /config props that describe an
// input to a page.
type props struct {
	Label     text       `json:"label"`
	Info      text       `json:"info"`
	Choices   choiceList `json:"choices"`
	Minimum   number     `json:"minimum"`
	Maximum   number     `json:"maximum"`
	Step      number     `json:"step"`
	FileTypes stringList `json:"file_types"`
}

// readProps reads a component's props; props of another shape than an
// object read as none.
func readProps(raw json.RawMessage) props {
	var p props
	if json.Unmarshal(raw, &p) != nil {
		return props{}
	}
	return p
}

// mediaTypes are the components whose upload accepts one kind of media,
// and that kind, as a file_types entry.
var mediaTypes = map[string]string{"image": "image", "audio": "audio", "video": "video"}

// defaultFileTypes are what the other components that take files accept
// when their props give no file_types, in Gradio's own words: a Gallery
// any image or video, a File (of one file or several) any file, which
// Gradio calls "file". Without them a page could not tell that a Gallery
// or a File of several files, whose type is "array", takes files.
var defaultFileTypes = map[string][]string{"gallery": {"image", "video"}, "file": {"file"}}

// choiceComponents have choices, and numericComponents bounds and a step.
var (
	choiceComponents  = map[string]bool{"dropdown": true, "radio": true, "checkboxgroup": true}
	numericComponents = map[string]bool{"slider": true, "number": true}
)

// describe fills in what a page needs to build a form for p, from the
// props of its component of type typ (lower case, as /config has it).
func (p *Param) describe(typ string, pr props, tr translations) {
	if p.Label == "" {
		p.Label = pr.Label.in(tr)
	}
	p.Info = pr.Info.in(tr)
	if choiceComponents[typ] {
		for _, c := range pr.Choices {
			if c.ok {
				p.Choices = append(p.Choices, Choice{Value: c.value, Label: c.label.in(tr)})
			}
		}
	}
	if numericComponents[typ] {
		p.Minimum, p.Maximum, p.Step = pr.Minimum.v, pr.Maximum.v, pr.Step.v
	}
	switch {
	case mediaTypes[typ] != "":
		p.FileTypes = []string{mediaTypes[typ]}
	case len(pr.FileTypes) > 0:
		p.FileTypes = pr.FileTypes
	default:
		p.FileTypes = slices.Clone(defaultFileTypes[typ])
	}
}
