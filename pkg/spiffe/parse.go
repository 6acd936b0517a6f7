package spiffe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// maxQuotedInput bounds how much of an untrusted input an error message
// repeats, so a hostile certificate cannot flood the logs.
const maxQuotedInput = 256

// Parse parses a SPIFFE ID string into an Identity. It is strict: the string
// must be a valid SPIFFE ID (go-spiffe rules: lowercase trust domain, no
// query, fragment, port, user info, percent-encoding, empty or dot segments,
// trailing slash) whose path has exactly one of Ambit's shapes, with every
// part following its naming rule. Errors wrap ErrInvalidIdentity and name the
// offending part. Parse(s).String() == s for every s it accepts.
func Parse(s string) (Identity, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return Identity{}, invalidInput(s, err)
	}
	ident, err := fromValidID(id)
	if err != nil {
		return Identity{}, invalidInput(s, err)
	}
	return ident, nil
}

// MustParse is Parse for identities fixed in code; it panics on error.
func MustParse(s string) Identity {
	ident, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return ident
}

// FromID converts a go-spiffe ID (e.g. from a verified certificate) into an
// Identity, with the same rules as Parse.
func FromID(id spiffeid.ID) (Identity, error) {
	if id.IsZero() {
		return Identity{}, fmt.Errorf("%w: SPIFFE ID is empty", ErrInvalidIdentity)
	}
	ident, err := fromValidID(id)
	if err != nil {
		return Identity{}, invalidInput(id.String(), err)
	}
	return ident, nil
}

// fromValidID matches the path of a syntactically valid SPIFFE ID against
// Ambit's identity shapes.
func fromValidID(id spiffeid.ID) (Identity, error) {
	td := id.TrustDomain()
	path := id.Path()
	if path == "" {
		return Identity{}, errors.New("path is empty: a trust domain ID is not an identity")
	}
	// spiffeid guarantees a leading '/', no empty segments and no trailing '/'.
	segs := strings.Split(path[1:], "/")
	switch segs[0] {
	case segmentNamespace:
		if len(segs) != 4 || segs[2] != segmentSA {
			return Identity{}, fmt.Errorf("path %q: a workload path must be /ns/<namespace>/sa/<service-account>", path)
		}
		return workload(td, segs[1], segs[3])
	case segmentAmbit:
		return fromAmbitPath(td, path, segs[1:])
	}
	return Identity{}, fmt.Errorf("path %q: must start with /ns/ (workload) or /ambit/ (node, control plane, admin)", path)
}

// fromAmbitPath handles the segments after /ambit/.
func fromAmbitPath(td spiffeid.TrustDomain, path string, segs []string) (Identity, error) {
	if len(segs) == 0 {
		return Identity{}, fmt.Errorf("path %q: /ambit must be followed by node/<node>, admin or <component>", path)
	}
	switch segs[0] {
	case segmentNode:
		if len(segs) != 2 {
			return Identity{}, fmt.Errorf("path %q: a node path must be /ambit/node/<node>", path)
		}
		return nodeIdentity(td, segs[1])
	case segmentAdmin:
		switch len(segs) {
		case 1:
			return admin(td, "")
		case 2:
			return admin(td, segs[1])
		}
		return Identity{}, fmt.Errorf("path %q: an admin path must be /ambit/admin or /ambit/admin/<name>", path)
	}
	if len(segs) != 1 {
		return Identity{}, fmt.Errorf("path %q: a control-plane path must be /ambit/<component>", path)
	}
	return controlPlane(td, Component(segs[0]))
}

// invalidInput wraps err with ErrInvalidIdentity and the (bounded) input.
func invalidInput(input string, err error) error {
	if len(input) > maxQuotedInput {
		input = input[:maxQuotedInput] + "..."
	}
	return fmt.Errorf("%w %q: %w", ErrInvalidIdentity, input, err)
}
