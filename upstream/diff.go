package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// applyEdits applies a Gradio edit list (the later process_generating
// updates of a generator, GRADIO.md 2.4) to old and returns the new value.
//
// edits is the decoded JSON list [[action, path, value], …]; values are what
// encoding/json decodes into an any (map[string]any, []any, string, bool,
// nil, and json.Number or float64 for numbers). Actions, applied in order:
//
//   - "replace": set the value at path (path [] replaces the whole value).
//   - "append": concatenate at path: strings to strings; a list value is
//     concatenated to a list, any other value is appended to it as one
//     element. Other types are an error (Python would add numbers, but
//     Gradio emits append only for strings that grew).
//   - "add": insert into a list at the index (index == len appends), or set
//     a key of an object.
//   - "delete": remove an index of a list or a key of an object.
//
// Path elements are object keys (strings) and list indices (json.Number,
// float64 or int holding a whole number). An index or key that is not there
// is an error, except for the index len of "add".
//
// old is never modified: the lists and objects on the edited paths are
// copied, and everything else is shared between old and the result (so a
// caller must not modify either in place). On error the result is nil and
// old is intact.
//
// Gradio's own diff (utils.diff in gradio 6.31) double-counts the index
// shift of deletes in a list nested in a list, so a nested list that shrinks
// comes out wrong; applyEdits does what Gradio's clients do with those
// edits. Join with "simple_format": true to avoid diffs altogether.
func applyEdits(old any, edits any) (any, error) {
	list, ok := edits.([]any)
	if !ok {
		return nil, fmt.Errorf("edits: want a list, got %s", jsonType(edits))
	}
	v := old
	for i, e := range list {
		var err error
		if v, err = applyEdit(v, e); err != nil {
			return nil, fmt.Errorf("edit %d: %w", i, err)
		}
	}
	return freeze(v), nil
}

// ownedList and ownedMap are containers that applyEdits copied, and may
// therefore change in place. freeze turns them back into []any and
// map[string]any before the value leaves applyEdits.
type (
	ownedList struct{ v []any }
	ownedMap  struct{ v map[string]any }
)

func applyEdit(root any, e any) (any, error) {
	edit, ok := e.([]any)
	if !ok || len(edit) != 3 {
		return nil, errors.New("want [action, path, value]")
	}
	action, ok := edit[0].(string)
	if !ok {
		return nil, fmt.Errorf("action: want a string, got %s", jsonType(edit[0]))
	}
	path, ok := edit[1].([]any)
	if !ok {
		return nil, fmt.Errorf("path: want a list, got %s", jsonType(edit[1]))
	}
	value := edit[2]
	if len(path) == 0 {
		switch action {
		case "replace":
			return value, nil
		case "append":
			return appendValue(root, value)
		}
		return nil, fmt.Errorf("action %q needs a non-empty path", action)
	}
	root, err := own(root)
	if err != nil {
		return nil, err
	}
	parent := root
	for _, k := range path[:len(path)-1] {
		if parent, err = child(parent, k); err != nil {
			return nil, err
		}
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case *ownedMap:
		err = editMap(p, action, last, value)
	case *ownedList:
		err = editList(p, action, last, value)
	}
	return root, err
}

// own returns v as a container that may be changed in place, copying it
// unless it already is one.
func own(v any) (any, error) {
	switch v := v.(type) {
	case *ownedMap, *ownedList:
		return v, nil
	case map[string]any:
		m := make(map[string]any, len(v)+1)
		for k, x := range v {
			m[k] = x
		}
		return &ownedMap{m}, nil
	case []any:
		return &ownedList{append(make([]any, 0, len(v)+1), v...)}, nil
	}
	return nil, fmt.Errorf("cannot index into %s", jsonType(v))
}

// child returns the element k of the owned container parent, owned.
func child(parent any, k any) (any, error) {
	switch p := parent.(type) {
	case *ownedMap:
		key, err := mapKey(k)
		if err != nil {
			return nil, err
		}
		c, ok := p.v[key]
		if !ok {
			return nil, fmt.Errorf("no key %q", key)
		}
		if c, err = own(c); err != nil {
			return nil, err
		}
		p.v[key] = c
		return c, nil
	case *ownedList:
		i, err := listIndex(k, len(p.v)-1)
		if err != nil {
			return nil, err
		}
		c, err := own(p.v[i])
		if err != nil {
			return nil, err
		}
		p.v[i] = c
		return c, nil
	}
	panic("upstream: child of a container not owned")
}

func editMap(m *ownedMap, action string, k, value any) error {
	key, err := mapKey(k)
	if err != nil {
		return err
	}
	old, exists := m.v[key]
	switch action {
	case "replace", "add":
		m.v[key] = value
		return nil
	case "append", "delete":
		if !exists {
			return fmt.Errorf("%s: no key %q", action, key)
		}
		if action == "delete" {
			delete(m.v, key)
			return nil
		}
		m.v[key], err = appendValue(old, value)
		return err
	}
	return fmt.Errorf("unknown action %q", action)
}

func editList(l *ownedList, action string, k, value any) error {
	max := len(l.v) - 1
	if action == "add" {
		max = len(l.v)
	}
	i, err := listIndex(k, max)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	switch action {
	case "replace":
		l.v[i] = value
	case "append":
		l.v[i], err = appendValue(l.v[i], value)
	case "add":
		l.v = slices.Insert(l.v, i, value)
	case "delete":
		l.v = slices.Delete(l.v, i, i+1)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	return err
}

// appendValue returns old + value for "append".
func appendValue(old, value any) (any, error) {
	switch o := old.(type) {
	case string:
		if s, ok := value.(string); ok {
			return o + s, nil
		}
	case []any, *ownedList:
		l, _ := own(o)
		ol := l.(*ownedList)
		if vs, ok := value.([]any); ok {
			ol.v = append(ol.v, vs...)
		} else {
			ol.v = append(ol.v, value)
		}
		return ol, nil
	}
	return nil, fmt.Errorf("cannot append %s to %s", jsonType(value), jsonType(old))
}

func mapKey(k any) (string, error) {
	if s, ok := k.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("object key: want a string, got %s", jsonType(k))
}

// listIndex returns k as an index in [0, max].
func listIndex(k any, max int) (int, error) {
	var f float64
	switch k := k.(type) {
	case int:
		f = float64(k)
	case float64:
		f = k
	case json.Number:
		n, err := k.Float64()
		if err != nil {
			return 0, fmt.Errorf("list index %q: %w", k, err)
		}
		f = n
	default:
		return 0, fmt.Errorf("list index: want a number, got %s", jsonType(k))
	}
	if f != math.Trunc(f) || f < 0 || f > float64(max) {
		return 0, fmt.Errorf("list index %v out of range [0, %d]", k, max)
	}
	return int(f), nil
}

// freeze turns the owned containers in v back into plain ones.
func freeze(v any) any {
	switch v := v.(type) {
	case *ownedMap:
		for k, x := range v.v {
			v.v[k] = freeze(x)
		}
		return v.v
	case *ownedList:
		for i, x := range v.v {
			v.v[i] = freeze(x)
		}
		return v.v
	}
	return v
}

// jsonType names the JSON type of a decoded value, for errors.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int:
		return "a number"
	case []any, *ownedList:
		return "a list"
	case map[string]any, *ownedMap:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
