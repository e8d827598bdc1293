package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// decodeJSON decodes s as the upstream client does (UseNumber).
func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	v, err := decodeNumber([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

func decodeNumber(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data")
	}
	return v, nil
}

// TestApplyEdits uses vectors made with gradio 6.31: edits is
// gradio.utils.diff(old, new) and want is gradio_client.utils.apply_diff(old,
// edits), as printed by json.dumps.
func TestApplyEdits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		old, edits, want string
	}{
		{"string grows", `"Hello"`, `[["append", [], ", world"]]`, `"Hello, world"`},
		{"string changes", `"Hello"`, `[["replace", [], "Help"]]`, `"Help"`},
		{"string from empty", `""`, `[["append", [], "abc"]]`, `"abc"`},
		{"type change", `"text"`, `[["replace", [], 42]]`, `42`},
		{"number", `1`, `[["replace", [], 2.5]]`, `2.5`},
		{"null to value", `null`, `[["replace", [], {"a": 1}]]`, `{"a": 1}`},
		{"equal", `{"a": [1, 2]}`, `[]`, `{"a": [1, 2]}`},
		{"list grows", `[1, 2]`, `[["add", [2], 3], ["add", [3], 4]]`, `[1, 2, 3, 4]`},
		{"list shrinks", `[1, 2, 3, 4]`, `[["delete", [2], null], ["delete", [2], null]]`, `[1, 2]`},
		{"list element changes", `["a", "b"]`, `[["append", [1], "c"]]`, `["a", "bc"]`},
		{"dict key added and removed", `{"a": 1, "b": 2}`, `[["delete", ["b"], null], ["add", ["c"], 3]]`, `{"a": 1, "c": 3}`},
		{"nested dict string append", `{"value": {"text": "Hel"}}`, `[["append", ["value", "text"], "lo"]]`, `{"value": {"text": "Hello"}}`},
		{"chatbot token", `[["hi", "Hel"]]`, `[["append", [0, 1], "lo"]]`, `[["hi", "Hello"]]`},
		{"chatbot messages", `[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hel"}]`, `[["append", [1, "content"], "lo there"], ["add", [2], {"role": "user", "content": "ok"}]]`, `[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "ok"}]`},
		{"chatbot cleared", `[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]`, `[["delete", [0], null], ["delete", [0], null]]`, `[]`},
		{"nested list shrink", `[[1, 2, 3], [4]]`, `[["delete", [0, 1], null], ["delete", [0, 0], null]]`, `[[3], [4]]`}, // Gradio's diff is wrong here; want is what its client computes
		{"file data", `{"path": "/tmp/a.png", "url": "http://x/a.png", "size": null, "meta": {"_type": "gradio.FileData"}}`, `[["replace", ["path"], "/tmp/b.png"], ["replace", ["url"], "http://x/b.png"], ["replace", ["size"], 10]]`, `{"path": "/tmp/b.png", "url": "http://x/b.png", "size": 10, "meta": {"_type": "gradio.FileData"}}`},
		{"bool", `true`, `[["replace", [], false]]`, `false`},
		{"list of dicts key removed", `[{"a": 1, "b": 2}]`, `[["delete", [0, "b"], null]]`, `[{"a": 1}]`},
		{"gallery grows", `[{"image": {"path": "a"}, "caption": null}]`, `[["add", [1], {"image": {"path": "b"}, "caption": "two"}]]`, `[{"image": {"path": "a"}, "caption": null}, {"image": {"path": "b"}, "caption": "two"}]`},
		{"chatbot content parts", `[{"role": "user", "metadata": null, "content": [{"text": "abc", "type": "text"}], "options": null}, {"role": "assistant", "metadata": null, "content": [{"text": "Hello", "type": "text"}], "options": null}]`, `[["append", [1, "content", 0, "text"], " there"], ["add", [1, "content", 1], {"file": {"path": "/tmp/a.png"}, "type": "file"}]]`, `[{"role": "user", "metadata": null, "content": [{"text": "abc", "type": "text"}], "options": null}, {"role": "assistant", "metadata": null, "content": [{"text": "Hello there", "type": "text"}, {"file": {"path": "/tmp/a.png"}, "type": "file"}], "options": null}]`},
		{"dict in list in list", `[[{"a": "x"}]]`, `[["append", [0, 0, "a"], "y"], ["add", [0, 0, "b"], 1]]`, `[[{"a": "xy", "b": 1}]]`},
		{"list shrinks and changes", `["a", "b", "c"]`, `[["append", [1], "b"], ["delete", [2], null]]`, `["a", "bb"]`},
		{"keys and order", `{"z": 1, "a": [1], "m": "q"}`, `[["delete", ["z"], null], ["add", ["a", 1], 2], ["append", ["m"], "r"], ["add", ["n"], null]]`, `{"a": [1, 2], "m": "qr", "n": null}`},
		{"highlighted text", `[["The", null], [" cat", "ANIMAL"]]`, `[["add", [2], [" sat", null]]]`, `[["The", null], [" cat", "ANIMAL"], [" sat", null]]`},
		{"number to list", `3`, `[["replace", [], [3]]]`, `[3]`},
		{"list to empty dict", `[1]`, `[["replace", [], {}]]`, `{}`},
		{"unicode append", `"hé"`, `[["append", [], "llo ✨"]]`, `"héllo ✨"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := decodeJSON(t, tt.old)
			got, err := applyEdits(old, decodeJSON(t, tt.edits))
			if err != nil {
				t.Fatalf("applyEdits() error = %v", err)
			}
			if want := decodeJSON(t, tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("applyEdits() = %#v, want %#v", got, want)
			}
			if !reflect.DeepEqual(old, decodeJSON(t, tt.old)) {
				t.Errorf("applyEdits() changed old to %#v", old)
			}
			if ref, err := refApplyEdits(old, decodeJSON(t, tt.edits)); err != nil || !reflect.DeepEqual(ref, got) {
				t.Errorf("refApplyEdits() = %#v, %v; want the same as applyEdits", ref, err)
			}
		})
	}
}

func TestApplyEditsFloatPaths(t *testing.T) {
	t.Parallel()
	// Decoded without UseNumber, indices are float64.
	var old, edits any
	json.Unmarshal([]byte(`[["hi", "Hel"]]`), &old)
	json.Unmarshal([]byte(`[["append", [0, 1], "lo"], ["add", [1], 2], ["delete", [0.0, 0], null]]`), &edits)
	got, err := applyEdits(old, edits)
	want := []any{[]any{"Hello"}, 2.0}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("applyEdits() = %#v, %v; want %#v", got, err, want)
	}
}

// TestApplyEditsStream replays the process_generating messages of a chatbot
// generator captured from gradio 6.31 and ends at its process_completed value.
func TestApplyEditsStream(t *testing.T) {
	t.Parallel()
	first := `[{"role":"user","metadata":null,"content":[{"text":"abc","type":"text"}],"options":null},{"role":"assistant","metadata":null,"content":[{"text":"Hello","type":"text"}],"options":null}]`
	updates := []string{
		`[["append",[1,"content",0,"text"]," there"]]`,
		`[["append",[1,"content",0,"text"],", how"]]`,
		`[["append",[1,"content",0,"text"]," are"]]`,
		`[["append",[1,"content",0,"text"]," you"]]`,
		`[["append",[1,"content",0,"text"],"?"]]`,
	}
	final := `[{"role":"user","metadata":null,"content":[{"text":"abc","type":"text"}],"options":null},{"role":"assistant","metadata":null,"content":[{"text":"Hello there, how are you?","type":"text"}],"options":null}]`

	v := decodeJSON(t, first)
	var kept []any // every intermediate value, as a caller may keep them
	for _, u := range updates {
		kept = append(kept, v)
		var err error
		if v, err = applyEdits(v, decodeJSON(t, u)); err != nil {
			t.Fatalf("applyEdits(%s) error = %v", u, err)
		}
	}
	if want := decodeJSON(t, final); !reflect.DeepEqual(v, want) {
		t.Errorf("after all updates: %#v, want %#v", v, want)
	}
	texts := []string{"Hello", "Hello there", "Hello there, how", "Hello there, how are", "Hello there, how are you"}
	for i, k := range kept {
		got := k.([]any)[1].(map[string]any)["content"].([]any)[0].(map[string]any)["text"]
		if got != texts[i] {
			t.Errorf("kept value %d changed: text %q, want %q", i, got, texts[i])
		}
	}
}

func TestApplyEditsAppendList(t *testing.T) {
	t.Parallel()
	got, err := applyEdits(decodeJSON(t, `{"a":[1]}`), decodeJSON(t, `[["append",["a"],[2,3]],["append",["a"],4],["append",[],[]]]`))
	if err == nil {
		t.Fatalf("applyEdits() = %v, want an error for append to an object", got)
	}
	got, err = applyEdits(decodeJSON(t, `{"a":[1]}`), decodeJSON(t, `[["append",["a"],[2,3]],["append",["a"],4]]`))
	if want := decodeJSON(t, `{"a":[1,2,3,4]}`); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("applyEdits() = %v, %v; want %v", got, err, want)
	}
	got, err = applyEdits(decodeJSON(t, `[1]`), decodeJSON(t, `[["append",[],[2]],["add",[0],0]]`))
	if want := decodeJSON(t, `[0,1,2]`); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("applyEdits() = %v, %v; want %v", got, err, want)
	}
}

func TestApplyEditsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, old, edits string
	}{
		{"edits not a list", `1`, `{"a":1}`},
		{"edit not a triple", `1`, `[["replace", []]]`},
		{"edit not a list", `1`, `["replace"]`},
		{"action not a string", `1`, `[[1, [], 2]]`},
		{"path not a list", `{"a":1}`, `[["replace", "a", 2]]`},
		{"unknown action", `[1]`, `[["move", [0], 1]]`},
		{"unknown action at root", `[1]`, `[["move", [], 1]]`},
		{"add at root", `[1]`, `[["add", [], 1]]`},
		{"delete at root", `[1]`, `[["delete", [], null]]`},
		{"index past the end", `[1]`, `[["replace", [1], 2]]`},
		{"add past the end", `[1]`, `[["add", [2], 2]]`},
		{"negative index", `[1]`, `[["delete", [-1], null]]`},
		{"fractional index", `[1, 2]`, `[["replace", [0.5], 2]]`},
		{"huge index", `[1]`, `[["replace", [1e400], 2]]`},
		{"string index on a list", `[1]`, `[["replace", ["0"], 2]]`},
		{"number key on an object", `{"0": 1}`, `[["replace", [0], 2]]`},
		{"bool in path", `[1]`, `[["replace", [true], 2]]`},
		{"path through a string", `["ab"]`, `[["replace", [0, 1], "c"]]`},
		{"path through null", `{"a": null}`, `[["replace", ["a", "b"], 1]]`},
		{"missing key in path", `{"a": {}}`, `[["replace", ["b", "c"], 1]]`},
		{"index into an empty list", `[]`, `[["replace", [0], 1]]`},
		{"index into a number", `1`, `[["replace", [0], 1]]`},
		{"append a number", `1`, `[["append", [], 2]]`},
		{"append to null", `null`, `[["append", [], "a"]]`},
		{"append a string to an object", `{}`, `[["append", [], "a"]]`},
		{"append a list to a string", `["a"]`, `[["append", [0], ["b"]]]`},
		{"append to a missing key", `{}`, `[["append", ["a"], "b"]]`},
		{"delete a missing key", `{}`, `[["delete", ["a"], null]]`},
		{"later edit fails", `{"a": [1]}`, `[["add", ["a", 1], 2], ["delete", ["b"], null]]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := decodeJSON(t, tt.old)
			got, err := applyEdits(old, decodeJSON(t, tt.edits))
			if err == nil || got != nil {
				t.Errorf("applyEdits() = %#v, %v; want nil and an error", got, err)
			}
			if !reflect.DeepEqual(old, decodeJSON(t, tt.old)) {
				t.Errorf("applyEdits() changed old to %#v", old)
			}
		})
	}
}

// refApplyEdits is a plain reference: it copies every container it passes.
func refApplyEdits(old, edits any) (any, error) {
	list, ok := edits.([]any)
	if !ok {
		return nil, fmt.Errorf("not a list")
	}
	v := old
	for _, e := range list {
		edit, ok := e.([]any)
		if !ok || len(edit) != 3 {
			return nil, fmt.Errorf("bad edit")
		}
		action, ok1 := edit[0].(string)
		path, ok2 := edit[1].([]any)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("bad edit")
		}
		var err error
		if v, err = refEdit(v, path, action, edit[2]); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func refEdit(v any, path []any, action string, value any) (any, error) {
	if len(path) == 0 {
		switch action {
		case "replace":
			return value, nil
		case "append":
			switch o := v.(type) {
			case string:
				if s, ok := value.(string); ok {
					return o + s, nil
				}
			case []any:
				if l, ok := value.([]any); ok {
					return slices.Concat(o, l), nil
				}
				return slices.Concat(o, []any{value}), nil
			}
		}
		return nil, fmt.Errorf("bad root edit")
	}
	k, rest := path[0], path[1:]
	switch c := v.(type) {
	case map[string]any:
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("bad key")
		}
		m := make(map[string]any, len(c))
		for k, x := range c {
			m[k] = x
		}
		x, exists := m[key]
		if len(rest) > 0 || action == "append" {
			if !exists {
				return nil, fmt.Errorf("no key")
			}
			nx, err := refEdit(x, rest, action, value)
			m[key] = nx
			return m, err
		}
		switch action {
		case "replace", "add":
			m[key] = value
		case "delete":
			if !exists {
				return nil, fmt.Errorf("no key")
			}
			delete(m, key)
		default:
			return nil, fmt.Errorf("bad action")
		}
		return m, nil
	case []any:
		i, err := refIndex(k)
		if err != nil {
			return nil, err
		}
		l := slices.Clone(c)
		if len(rest) == 0 && action == "add" {
			if i > len(l) {
				return nil, fmt.Errorf("index")
			}
			return slices.Insert(l, i, value), nil
		}
		if i >= len(l) {
			return nil, fmt.Errorf("index")
		}
		if len(rest) > 0 || action == "append" {
			l[i], err = refEdit(l[i], rest, action, value)
			return l, err
		}
		switch action {
		case "replace":
			l[i] = value
		case "delete":
			l = slices.Delete(l, i, i+1)
		default:
			return nil, fmt.Errorf("bad action")
		}
		return l, nil
	}
	return nil, fmt.Errorf("not a container")
}

func refIndex(k any) (int, error) {
	n, ok := k.(json.Number)
	if !ok {
		return 0, fmt.Errorf("bad index")
	}
	if i, err := n.Int64(); err == nil && i >= 0 && i < 1<<40 {
		return int(i), nil
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f != float64(int64(f)) || f >= 1<<40 {
		return 0, fmt.Errorf("bad index")
	}
	return int(f), nil
}

// checkPlain fails if v holds a container type of applyEdits' own.
func checkPlain(t *testing.T, v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			checkPlain(t, x)
		}
	case []any:
		for _, x := range v {
			checkPlain(t, x)
		}
	case nil, string, bool, json.Number:
	default:
		t.Fatalf("result holds a %T", v)
	}
}

func FuzzApplyEdits(f *testing.F) {
	f.Add([]byte(`[["hi","Hel"]]`), []byte(`[["append",[0,1],"lo"],["add",[1],["a"]],["delete",[0],null]]`))
	f.Add([]byte(`{"a":[1,{"b":"x"}],"c":null}`), []byte(`[["append",["a",1,"b"],"y"],["delete",["c"],null],["add",["a",0],2],["replace",["a",2,"b"],1]]`))
	f.Add([]byte(`[[1,2,3],[4]]`), []byte(`[["delete",[0,1],null],["delete",[0,0],null],["append",[],[5]]]`))
	f.Add([]byte(`"a"`), []byte(`[["append",[],"b"],["replace",[],[]],["add",[0],{}],["add",[0,"k"],"v"]]`))
	f.Fuzz(func(t *testing.T, oldJSON, editsJSON []byte) {
		old, err1 := decodeNumber(oldJSON)
		edits, err2 := decodeNumber(editsJSON)
		if err1 != nil || err2 != nil {
			return
		}
		got, err := applyEdits(old, edits)
		want, wantErr := refApplyEdits(old, edits)
		if again, _ := decodeNumber(oldJSON); !reflect.DeepEqual(old, again) {
			t.Fatalf("applyEdits() changed old from %s to %#v", oldJSON, old)
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("applyEdits() error = %v, reference error = %v", err, wantErr)
		}
		if err != nil {
			return
		}
		checkPlain(t, got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("applyEdits() = %#v, reference gives %#v", got, want)
		}
	})
}
