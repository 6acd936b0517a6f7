package spiffe

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// Kind says which of Ambit's identity shapes an Identity has.
type Kind uint8

// Identity kinds. The zero Kind belongs only to the zero Identity.
const (
	KindUnknown      Kind = iota
	KindWorkload          // spiffe://<td>/ns/<namespace>/sa/<service-account>
	KindNode              // spiffe://<td>/ambit/node/<node>
	KindControlPlane      // spiffe://<td>/ambit/<component>
	KindAdmin             // spiffe://<td>/ambit/admin[/<name>]
)

// String returns the kind's name as used in logs and audit records.
func (k Kind) String() string {
	switch k {
	case KindWorkload:
		return "workload"
	case KindNode:
		return "node"
	case KindControlPlane:
		return "control-plane"
	case KindAdmin:
		return "admin"
	}
	return "unknown"
}

// Identity is a validated Ambit SPIFFE identity. The only ways to get a
// non-zero one are Parse, FromID, FromCertificate and the New* constructors,
// so every Identity in hand is well formed. Identities are comparable with ==
// and usable as map keys.
type Identity struct {
	id             spiffeid.ID
	kind           Kind
	namespace      string
	serviceAccount string
	node           string
	component      Component
	adminName      string
}

// Kind returns the identity's kind; KindUnknown only for the zero Identity.
func (i Identity) Kind() Kind { return i.kind }

// TrustDomain returns the identity's trust domain.
func (i Identity) TrustDomain() spiffeid.TrustDomain { return i.id.TrustDomain() }

// Namespace returns a workload's namespace, "" for other kinds.
func (i Identity) Namespace() string { return i.namespace }

// ServiceAccount returns a workload's service account, "" for other kinds.
func (i Identity) ServiceAccount() string { return i.serviceAccount }

// Node returns a node identity's node name, "" for other kinds.
func (i Identity) Node() string { return i.node }

// Component returns a control-plane identity's component, "" for other kinds.
func (i Identity) Component() Component { return i.component }

// AdminName returns an admin identity's name, "" for the unnamed admin and
// for other kinds.
func (i Identity) AdminName() string { return i.adminName }

// IsZero reports whether i is the zero Identity.
func (i Identity) IsZero() bool { return i.kind == KindUnknown }

// ID returns the identity as a go-spiffe ID (zero for the zero Identity).
func (i Identity) ID() spiffeid.ID { return i.id }

// String returns the SPIFFE ID, e.g. "spiffe://cluster.local/ns/default/sa/web".
// Parse(i.String()) returns i.
func (i Identity) String() string { return i.id.String() }

// MarshalText encodes the identity as its SPIFFE ID, so identities can sit in
// JSON and YAML config; the zero Identity encodes as empty text.
func (i Identity) MarshalText() ([]byte, error) {
	return []byte(i.String()), nil
}

// UnmarshalText parses text with Parse; empty text gives the zero Identity.
func (i *Identity) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*i = Identity{}
		return nil
	}
	parsed, err := Parse(string(text))
	if err != nil {
		return err
	}
	*i = parsed
	return nil
}
