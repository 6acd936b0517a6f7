package resource

import (
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// DefaultMaxObjectBytes caps the stored JSON of one object. It stays well
// below NATS' default max_payload (1 MiB) so every object fits in one
// change-feed message with its envelope.
const DefaultMaxObjectBytes = 512 << 10

// ValidateOptions tune Validate. The zero value is ready to use.
type ValidateOptions struct {
	// MaxObjectBytes caps the stored JSON size; 0 means DefaultMaxObjectBytes.
	MaxObjectBytes int
	// NamespaceExists, when set, reports whether a Namespace exists, and
	// objects in a missing namespace are rejected as Kubernetes does. Nil
	// skips the check: the store then enforces it inside its write
	// transaction (see Object.NamespaceKey), which also closes the race with
	// a concurrent namespace deletion.
	NamespaceExists func(namespace string) bool
}

// Validate checks an object with the default options; see
// ValidateOptions.Validate.
func Validate(obj *Object) error {
	return ValidateOptions{}.Validate(obj)
}

// Validate checks metadata, the kind's semantic rules (Istio's validation
// and the Gateway API CRD schema and CEL rules, re-expressed in Go) and the
// size cap. It returns nil or an ErrorList whose every entry names the field
// path and the bad value. It never panics, whatever the object holds.
func (o ValidateOptions) Validate(obj *Object) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// A validator bug must not take the API down; report it as an
			// error on the object instead.
			err = ErrorList{errInvalid(nil, rawText("object"), "validation failed", fmt.Sprint(r))}
		}
	}()
	return o.validate(obj).Err()
}

// validate is Validate without the panic guard, so tests and the fuzz
// target see validator bugs.
func (o ValidateOptions) validate(obj *Object) ErrorList {
	if obj == nil {
		return ErrorList{errRequired(nil, "no object")}
	}
	k := obj.Descriptor()
	if k == nil {
		_, lerr := Kinds().lookup(obj.APIVersion, obj.Kind)
		return ErrorList{lerr}
	}
	var errs ErrorList
	group, version := splitAPIVersion(obj.APIVersion)
	if group != k.group || !k.Accepts(version) {
		errs = append(errs, errInvalid(field.NewPath("apiVersion"), obj.APIVersion, "invalid apiVersion", "must be "+k.StorageAPIVersion()))
	}
	if obj.Kind != k.name {
		errs = append(errs, errInvalid(field.NewPath("kind"), obj.Kind, "invalid kind", "must be "+k.name))
	}
	errs = append(errs, validateObjectMeta(obj, k)...)
	if !k.spec.owns(obj.Spec) {
		return append(errs, errInvalid(specRoot(k), rawText(fmt.Sprintf("%T", obj.Spec)), "invalid spec type", fmt.Sprintf("must be %T", k.NewSpec())))
	}
	errs = append(errs, k.validateSpec(obj)...)

	if raw, merr := obj.MarshalJSON(); merr != nil {
		errs = append(errs, errInvalid(nil, rawText("object"), "cannot encode", merr.Error()))
	} else if limit := o.maxObjectBytes(); len(raw) > limit {
		errs = append(errs, &FieldError{
			Type: ErrorTypeTooLong, Value: strconv.Itoa(len(raw)) + " bytes",
			Summary: "object too large", Detail: fmt.Sprintf("must be at most %d bytes", limit),
		})
	}

	if o.NamespaceExists != nil && k.namespaced && obj.Metadata.Namespace != "" && !o.NamespaceExists(obj.Metadata.Namespace) {
		errs = append(errs, errNotFound(field.NewPath("metadata", "namespace"), obj.Metadata.Namespace, "create the Namespace first"))
	}
	return errs
}

func (o ValidateOptions) maxObjectBytes() int {
	if o.MaxObjectBytes > 0 {
		return o.MaxObjectBytes
	}
	return DefaultMaxObjectBytes
}

// specRoot is the path of a kind's body: "spec", or the root for a Secret.
func specRoot(k *Kind) *field.Path {
	if k.layout == bodyAtTopLevel {
		return nil
	}
	return field.NewPath("spec")
}
