package model

import (
	"slices"
	"strings"
)

// Label is one key=value pair.
type Label struct {
	Key, Value Atom
}

// Labels is a label set sorted by key, or a selector's matchLabels. The
// nil Labels is empty.
type Labels []Label

// LabelsFrom converts a map, interning keys and values. It returns nil for
// an empty map.
func LabelsFrom(m map[string]string) Labels {
	if len(m) == 0 {
		return nil
	}
	ls := make(Labels, 0, len(m))
	for k, v := range m {
		ls = append(ls, Label{Key: A(k), Value: A(v)})
	}
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return ls
}

// Get returns the value of key.
func (ls Labels) Get(key string) (string, bool) {
	i, ok := slices.BinarySearchFunc(ls, key, func(l Label, k string) int { return strings.Compare(l.Key.String(), k) })
	if !ok {
		return "", false
	}
	return ls[i].Value.String(), true
}

// Value returns the value of key, "" when absent.
func (ls Labels) Value(key string) string {
	v, _ := ls.Get(key)
	return v
}

// find returns the value atom of key.
func (ls Labels) find(key Atom) (Atom, bool) {
	k := key.String()
	i, ok := slices.BinarySearchFunc(ls, k, func(l Label, k string) int { return strings.Compare(l.Key.String(), k) })
	if !ok {
		return Atom{}, false
	}
	return ls[i].Value, true
}

// Matches reports whether the selector sel selects ls: every pair of sel is
// in ls. An empty selector matches everything; callers decide what an
// empty selector means for their kind.
func (sel Labels) Matches(ls Labels) bool {
	if len(sel) > len(ls) {
		return false
	}
	for _, s := range sel {
		v, ok := ls.find(s.Key)
		if !ok || v != s.Value {
			return false
		}
	}
	return true
}

// Equal reports whether both sets hold the same pairs.
func (ls Labels) Equal(o Labels) bool { return slices.Equal(ls, o) }

// Map returns the labels as a map (for dumps and tests).
func (ls Labels) Map() map[string]string {
	if len(ls) == 0 {
		return nil
	}
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Key.String()] = l.Value.String()
	}
	return m
}
