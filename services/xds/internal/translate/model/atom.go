package model

import "unique"

// Atom is an interned string: 8 bytes instead of 16, equal strings share
// one copy, and equality is a pointer comparison. The zero Atom is "".
type Atom struct{ h unique.Handle[string] }

// A interns s.
func A(s string) Atom {
	if s == "" {
		return Atom{}
	}
	return Atom{unique.Make(s)}
}

// String returns the text.
func (a Atom) String() string {
	if a == (Atom{}) {
		return ""
	}
	return a.h.Value()
}

// IsZero reports whether a is "".
func (a Atom) IsZero() bool { return a == Atom{} }
