package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Object is one decoded resource: its type, metadata, typed spec and opaque
// status. Objects come from Decode (or KindTable.New) and know their Kind.
type Object struct {
	// APIVersion is the storage apiVersion after Decode (e.g. an Istio
	// v1beta1 manifest becomes security.istio.io/v1).
	APIVersion string
	Kind       string
	Metadata   metav1.ObjectMeta
	// Spec is the kind's Go type: a proto message for Istio kinds, a pointer
	// to the ecosystem's struct for core and Gateway API kinds
	// (*corev1.ServiceSpec, *gatewayv1.HTTPRouteSpec, ...), *SecretContent
	// for Secrets.
	Spec any
	// Status is kept as compact JSON: it is written through a separate call by
	// the controllers that own it, never interpreted on apply.
	Status json.RawMessage

	desc   *Kind
	origin origin
}

// origin is where Decode found an object, so later errors about it can name
// its document.
type origin struct {
	document, item int
}

// Key names an object's place in storage:
// /ambit/v1/res/<Group>/<Kind>/<Namespace>/<Name>.
type Key struct {
	Group     string // "core" for the core group
	Kind      string
	Namespace string // "_" for cluster-scoped kinds
	Name      string
}

// String joins the parts with "/", e.g. "security.istio.io/AuthorizationPolicy/default/deny-all".
func (k Key) String() string {
	return k.Group + "/" + k.Kind + "/" + k.Namespace + "/" + k.Name
}

// Descriptor returns the object's Kind, or nil for a hand-built object of an
// unknown kind.
func (o *Object) Descriptor() *Kind {
	if o.desc != nil {
		return o.desc
	}
	k, _ := Kinds().ByAPIVersionKind(o.APIVersion, o.Kind)
	return k
}

// Key returns the storage key parts of the object.
func (o *Object) Key() Key {
	k := Key{Kind: o.Kind, Namespace: o.Metadata.Namespace, Name: o.Metadata.Name}
	if d := o.Descriptor(); d != nil {
		k.Group = d.KeyGroup()
		if !d.Namespaced() {
			k.Namespace = ClusterScopeSegment
		}
	} else {
		group, _ := splitAPIVersion(o.APIVersion)
		k.Group = group
		if group == GroupCore {
			k.Group = CoreKeyGroup
		}
	}
	return k
}

// NamespaceKey returns the key of the Namespace the object lives in, so the
// store can require it in the same transaction as the write; ok is false
// for cluster-scoped kinds.
func (o *Object) NamespaceKey() (key Key, ok bool) {
	d := o.Descriptor()
	if d == nil || !d.Namespaced() {
		return Key{}, false
	}
	return Key{Group: CoreKeyGroup, Kind: "Namespace", Namespace: ClusterScopeSegment, Name: o.Metadata.Namespace}, true
}

// SpecEqual reports whether two objects of the same kind have the same spec
// (for a Secret, the same type and data). The store bumps
// metadata.generation only when this is false, as Kubernetes does.
func (o *Object) SpecEqual(other *Object) bool {
	if o == nil || other == nil {
		return o == other
	}
	d, od := o.Descriptor(), other.Descriptor()
	if d == nil || od == nil || d.group != od.group || d.name != od.name {
		return false
	}
	return d.spec.equal(o.Spec, other.Spec)
}

// DeepCopy returns a copy sharing no memory with o.
func (o *Object) DeepCopy() *Object {
	if o == nil {
		return nil
	}
	c := &Object{
		APIVersion: o.APIVersion,
		Kind:       o.Kind,
		Metadata:   *o.Metadata.DeepCopy(),
		Status:     slices.Clone(o.Status),
		desc:       o.desc,
		origin:     o.origin,
	}
	if d := o.Descriptor(); d != nil {
		c.Spec = d.spec.clone(o.Spec)
	}
	return c
}

// MarshalJSON renders the stored form: apiVersion, kind, metadata, then the
// body (spec and status; for a Secret type/data/immutable at the top level,
// as Kubernetes does). Output is compact and deterministic.
func (o *Object) MarshalJSON() ([]byte, error) {
	d := o.Descriptor()
	if d == nil {
		return nil, fmt.Errorf("cannot marshal %s %q: unsupported kind", o.APIVersion, o.Kind)
	}
	meta, err := marshalMetadata(&o.Metadata)
	if err != nil {
		return nil, err
	}
	body, err := d.spec.encode(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding spec of %s %s: %w", o.Kind, o.Metadata.Name, err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"apiVersion":`)
	writeJSONString(&buf, o.APIVersion)
	buf.WriteString(`,"kind":`)
	writeJSONString(&buf, o.Kind)
	buf.WriteString(`,"metadata":`)
	buf.Write(meta)
	switch d.layout {
	case bodyAtTopLevel:
		if inner := bytes.TrimSpace(body); len(inner) > 2 {
			buf.WriteByte(',')
			buf.Write(inner[1 : len(inner)-1])
		}
	default:
		buf.WriteString(`,"spec":`)
		buf.Write(body)
		if status := bytes.TrimSpace(o.Status); len(status) > 0 && !bytes.Equal(status, []byte("null")) {
			if !json.Valid(status) {
				return nil, errors.New("status is not valid JSON")
			}
			buf.WriteString(`,"status":`)
			if err := json.Compact(&buf, status); err != nil {
				return nil, err
			}
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON decodes one object in stored (or manifest) form, strictly.
func (o *Object) UnmarshalJSON(data []byte) error {
	decoded, err := Kinds().DecodeOne(data)
	if err != nil {
		return err
	}
	*o = *decoded
	return nil
}

// marshalMetadata encodes ObjectMeta without the null fields the Kubernetes
// types emit for zero timestamps, with keys in sorted order.
func marshalMetadata(m *metav1.ObjectMeta) ([]byte, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	for k, v := range fields {
		if bytes.Equal(v, []byte("null")) {
			delete(fields, k)
		}
	}
	return json.Marshal(fields)
}

func writeJSONString(buf *bytes.Buffer, s string) {
	raw, _ := json.Marshal(s) // a string always encodes
	buf.Write(raw)
}
