package upstream

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestTextReadsAnyShape(t *testing.T) {
	tr := translations{"greeting": "Greeting"}
	for _, tc := range []struct{ in, want string }{
		{`"Prompt"`, "Prompt"},
		{`""`, ""},
		{`null`, ""},
		{`42`, ""},
		{`["a"]`, ""},
		{`{"key":"chat_interface.chatbot","_type":"translation_metadata"}`, "chat_interface.chatbot"},
		{`{"key":"greeting","_type":"translation_metadata"}`, "Greeting"},
		{`"__i18n__{\"__type__\": \"translation_metadata\", \"key\": \"greeting\"}"`, "Greeting"},
		{`"__i18n__{\"__type__\": \"translation_metadata\", \"key\": \"chat_interface.submit\"}"`, "chat_interface.submit"},
		{`"__i18n__ not an object"`, "__i18n__ not an object"},
		{`{"key":"x","_type":"something else"}`, ""},
		{`{"label":"?"}`, ""},
	} {
		var v struct {
			Label text `json:"label"`
		}
		if err := json.Unmarshal([]byte(`{"label":`+tc.in+`}`), &v); err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := v.Label.in(tr); got != tc.want {
			t.Errorf("%s reads as %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPropsReadAnyShape(t *testing.T) {
	tr := readTranslations(json.RawMessage(`{"en":{"photo":"Photo"},"fr":{"photo":"Photographie"}}`))
	for _, tc := range []struct {
		typ, props, want string
	}{
		{"dropdown", `{"choices":[["Photo","photo"],["Painting",2]]}`, `[{photo Photo} {2 Painting}]`},
		{"radio", `{"choices":["a",3,null,["only one"]]}`, `[{a a} {3 3}]`},
		{"checkboxgroup", `{"choices":[["__i18n__{\"__type__\":\"translation_metadata\",\"key\":\"photo\"}","p"]]}`, `[{p Photo}]`},
		{"dropdown", `{"choices":"abc"}`, `[]`},
		{"textbox", `{"choices":[["a","a"]]}`, ``}, // choices only for components that have them
		{"slider", `{"minimum":0,"maximum":"ten","step":null}`, `min 0 max <nil> step <nil>`},
		{"number", `{"minimum":-1.5,"maximum":1e3,"step":0.5}`, `min -1.5 max 1000 step 0.5`},
		{"image", `{"file_types":[".png"]}`, `types [image]`},
		{"file", `{"file_types":[".txt",7,".md"]}`, `types [.txt .md]`},
		{"file", `{"file_types":null}`, `types [file]`},
		{"file", `{"file_count":"multiple"}`, `types [file]`},
		{"gallery", `{"file_types":null}`, `types [image video]`},
		{"gallery", `{"file_types":["image"]}`, `types [image]`},
		{"textbox", `[1,2]`, ``},
		{"textbox", `{"info":{"key":"photo","_type":"translation_metadata"}}`, `info Photo`},
	} {
		var p Param
		p.describe(tc.typ, readProps(json.RawMessage(tc.props)), tr)
		var got string
		switch {
		case choiceComponents[tc.typ]:
			got = fmt.Sprint(choicesOf(p))
		case numericComponents[tc.typ]:
			got = fmt.Sprintf("min %v max %v step %v", deref(p.Minimum), deref(p.Maximum), deref(p.Step))
		case tc.typ == "image" || tc.typ == "file" || tc.typ == "gallery":
			got = fmt.Sprintf("types %v", p.FileTypes)
		case p.Info != "":
			got = "info " + p.Info
		}
		if got != tc.want {
			t.Errorf("%s %s: %s, want %s", tc.typ, tc.props, got, tc.want)
		}
	}
}

func choicesOf(p Param) []Choice {
	if p.Choices == nil {
		return []Choice{}
	}
	return p.Choices
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
