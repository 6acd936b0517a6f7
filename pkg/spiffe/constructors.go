package spiffe

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// NewWorkload returns spiffe://<td>/ns/<namespace>/sa/<serviceAccount>.
func NewWorkload(td spiffeid.TrustDomain, namespace, serviceAccount string) (Identity, error) {
	return invalidParts(workload(td, namespace, serviceAccount))
}

// NewNode returns spiffe://<td>/ambit/node/<node>.
func NewNode(td spiffeid.TrustDomain, node string) (Identity, error) {
	return invalidParts(nodeIdentity(td, node))
}

// NewControlPlane returns spiffe://<td>/ambit/<component>.
func NewControlPlane(td spiffeid.TrustDomain, component Component) (Identity, error) {
	return invalidParts(controlPlane(td, component))
}

// NewAdmin returns spiffe://<td>/ambit/admin when name is empty, else
// spiffe://<td>/ambit/admin/<name>. Named admins let audit logs say which
// operator or orchestrator acted; all of them are equally privileged.
func NewAdmin(td spiffeid.TrustDomain, name string) (Identity, error) {
	return invalidParts(admin(td, name))
}

// invalidParts marks a constructor's error as ErrInvalidIdentity.
func invalidParts(ident Identity, err error) (Identity, error) {
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidIdentity, err)
	}
	return ident, nil
}

// The unexported constructors return the bare cause, which Parse and the
// New* functions wrap each in their own way.

func workload(td spiffeid.TrustDomain, namespace, serviceAccount string) (Identity, error) {
	if err := validateLabel("namespace", namespace); err != nil {
		return Identity{}, err
	}
	if err := validateSubdomain("service account", serviceAccount); err != nil {
		return Identity{}, err
	}
	return build(td, Identity{kind: KindWorkload, namespace: namespace, serviceAccount: serviceAccount})
}

func nodeIdentity(td spiffeid.TrustDomain, node string) (Identity, error) {
	if err := validateSubdomain("node", node); err != nil {
		return Identity{}, err
	}
	return build(td, Identity{kind: KindNode, node: node})
}

func controlPlane(td spiffeid.TrustDomain, component Component) (Identity, error) {
	if err := component.validate(); err != nil {
		return Identity{}, err
	}
	return build(td, Identity{kind: KindControlPlane, component: component})
}

func admin(td spiffeid.TrustDomain, name string) (Identity, error) {
	if name != "" {
		if err := validateLabel("admin name", name); err != nil {
			return Identity{}, err
		}
	}
	return build(td, Identity{kind: KindAdmin, adminName: name})
}

// build fills in the SPIFFE ID of an identity whose parts are validated.
func build(td spiffeid.TrustDomain, ident Identity) (Identity, error) {
	if td.IsZero() {
		return Identity{}, errors.New("trust domain: must not be empty")
	}
	id, err := spiffeid.FromSegments(td, ident.segments()...)
	if err != nil {
		return Identity{}, fmt.Errorf("building SPIFFE ID: %w", err)
	}
	ident.id = id
	return ident, nil
}

// segments returns the path segments of the identity's SPIFFE ID.
func (i Identity) segments() []string {
	switch i.kind {
	case KindWorkload:
		return []string{segmentNamespace, i.namespace, segmentSA, i.serviceAccount}
	case KindNode:
		return []string{segmentAmbit, segmentNode, i.node}
	case KindControlPlane:
		return []string{segmentAmbit, string(i.component)}
	case KindAdmin:
		if i.adminName == "" {
			return []string{segmentAmbit, segmentAdmin}
		}
		return []string{segmentAmbit, segmentAdmin, i.adminName}
	}
	return nil
}
