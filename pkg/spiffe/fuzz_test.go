package spiffe_test

import (
	"errors"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// FuzzParse feeds Parse arbitrary strings, as a peer certificate or a CSR
// could. The seed corpus lives in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffe.Parse(s)
		if err != nil {
			if !errors.Is(err, spiffe.ErrInvalidIdentity) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidIdentity", s, err)
			}
			if !id.IsZero() {
				t.Fatalf("Parse(%q) returned %v with an error", s, id)
			}
			return
		}
		if id.IsZero() || id.Kind() == spiffe.KindUnknown {
			t.Fatalf("Parse(%q) returned the zero Identity without error", s)
		}
		// Parse accepts only canonical strings, so printing gives back the input.
		if id.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, id.String())
		}
		again, err := spiffe.Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("Parse(String()) = %v, %v; want %v", again, err, id)
		}
		fromID, err := spiffe.FromID(id.ID())
		if err != nil || fromID != id {
			t.Fatalf("FromID(ID()) = %v, %v; want %v", fromID, err, id)
		}
		rebuilt, err := rebuild(id)
		if err != nil || rebuilt != id {
			t.Fatalf("constructor from parts = %v, %v; want %v", rebuilt, err, id)
		}
	})
}

// rebuild makes the identity again from its parts with the constructor of
// its kind, checking that the accessors expose everything it is made of.
func rebuild(id spiffe.Identity) (spiffe.Identity, error) {
	td := id.TrustDomain()
	switch id.Kind() {
	case spiffe.KindWorkload:
		return spiffe.NewWorkload(td, id.Namespace(), id.ServiceAccount())
	case spiffe.KindNode:
		return spiffe.NewNode(td, id.Node())
	case spiffe.KindControlPlane:
		return spiffe.NewControlPlane(td, id.Component())
	case spiffe.KindAdmin:
		return spiffe.NewAdmin(td, id.AdminName())
	}
	return spiffe.Identity{}, errors.New("unknown kind")
}
