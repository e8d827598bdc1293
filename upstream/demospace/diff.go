package demospace

import "strings"

// diff returns the edit list that turns old into new, with the algorithm
// of Gradio's utils.diff (sse_v2+ generator updates): [action, path,
// value] with actions replace, append, add and delete.
func diff(old, new any) []any {
	edits := compare(old, new, []any{})
	if edits == nil {
		return []any{}
	}
	return edits
}

func compare(a, b any, path []any) []any {
	if equal(a, b) {
		return nil
	}
	if kindOf(a) != kindOf(b) {
		return []any{edit("replace", path, b)}
	}
	switch a := a.(type) {
	case string:
		if bs := b.(string); strings.HasPrefix(bs, a) {
			return []any{edit("append", path, bs[len(a):])}
		}
	case []any:
		return compareLists(a, b.([]any), path)
	case object:
		return compareObjects(a, b.(object), path)
	}
	return []any{edit("replace", path, b)}
}

func compareLists(a, b []any, path []any) []any {
	var edits []any
	common := min(len(a), len(b))
	for i := range common {
		edits = append(edits, compare(a[i], b[i], with(path, i))...)
	}
	for i := common; i < len(a); i++ {
		edits = append(edits, edit("delete", with(path, i), nil))
	}
	for i := common; i < len(b); i++ {
		edits = append(edits, edit("add", with(path, i), b[i]))
	}
	// Gradio shifts every delete (nested ones too) by the deletes before
	// it, so that applying them in order works.
	seen := 0
	for _, e := range edits {
		e := e.([]any)
		p := e[1].([]any)
		if e[0] == "delete" && len(p) > 0 {
			if i, ok := p[len(p)-1].(int); ok {
				p[len(p)-1] = i - seen
				seen++
			}
		}
	}
	return edits
}

func compareObjects(a, b object, path []any) []any {
	var edits []any
	for _, m := range a {
		if v, ok := lookup(b, m.key); ok {
			edits = append(edits, compare(m.val, v, with(path, m.key))...)
		} else {
			edits = append(edits, edit("delete", with(path, m.key), nil))
		}
	}
	for _, m := range b {
		if _, ok := lookup(a, m.key); !ok {
			edits = append(edits, edit("add", with(path, m.key), m.val))
		}
	}
	return edits
}

func edit(action string, path []any, value any) []any {
	return []any{action, path, value}
}

// with returns a copy of path with elem appended.
func with(path []any, elem any) []any {
	p := make([]any, len(path), len(path)+1)
	copy(p, path)
	return append(p, elem)
}

func lookup(o object, key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// kindOf names the Python type a value would have.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "none"
	case bool:
		return "bool"
	case int, int64:
		return "int"
	case float64, pyFloat:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case object:
		return "dict"
	}
	return "other"
}

// numeric returns v as a float if Python would compare it as a number.
func numeric(v any) (float64, bool) {
	switch v := v.(type) {
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case float64:
		return v, true
	case pyFloat:
		return float64(v), true
	}
	return 0, false
}

// equal is Python's ==: numbers compare by value, dicts ignore key order.
func equal(a, b any) bool {
	if x, ok := numeric(a); ok {
		y, ok := numeric(b)
		return ok && x == y
	}
	switch a := a.(type) {
	case nil:
		return b == nil
	case string:
		s, ok := b.(string)
		return ok && s == a
	case []any:
		l, ok := b.([]any)
		if !ok || len(l) != len(a) {
			return false
		}
		for i := range a {
			if !equal(a[i], l[i]) {
				return false
			}
		}
		return true
	case object:
		o, ok := b.(object)
		if !ok || len(o) != len(a) {
			return false
		}
		for _, m := range a {
			if v, ok := lookup(o, m.key); !ok || !equal(m.val, v) {
				return false
			}
		}
		return true
	}
	return false
}
