package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// specCodec converts between a kind's Go spec type and its JSON form.
//
// Decoding is two-step: check walks the generic JSON tree against the Go or
// proto schema (rejecting unknown fields and wrong types with their full
// path, and normalizing spellings the ecosystem accepts but the Go decoder
// does not), then decode runs the real decoder on the checked JSON. The
// stock decoders report errors without a field path, so they only act as a
// backstop.
type specCodec interface {
	newSpec() any
	// owns reports whether spec is of this codec's Go type.
	owns(spec any) bool
	// check validates tree in place (it may rewrite values into the decoder's
	// canonical spelling) and returns the errors found, each with its path.
	check(tree any, p *field.Path) ErrorList
	decode(data []byte) (any, error)
	// encode returns compact, deterministic JSON.
	encode(spec any) ([]byte, error)
	equal(a, b any) bool
	clone(spec any) any
}

// protoSpec is the codec of an Istio kind: a proto message decoded with
// protojson, unknown fields rejected.
func protoSpec[T any, PT interface {
	*T
	proto.Message
}]() specCodec {
	return protoCodec{newMessage: func() proto.Message { return PT(new(T)) }}
}

type protoCodec struct {
	newMessage func() proto.Message
}

func (c protoCodec) newSpec() any { return c.newMessage() }

func (c protoCodec) owns(spec any) bool {
	m, ok := spec.(proto.Message)
	if !ok || m == nil || reflect.ValueOf(m).IsNil() {
		return false
	}
	return m.ProtoReflect().Descriptor() == c.newMessage().ProtoReflect().Descriptor()
}

func (c protoCodec) check(tree any, p *field.Path) ErrorList {
	var errs ErrorList
	checkProtoMessage(c.newMessage().ProtoReflect().Descriptor(), tree, p, &errs)
	return errs
}

func (c protoCodec) decode(data []byte) (any, error) {
	m := c.newMessage()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (c protoCodec) encode(spec any) ([]byte, error) {
	if !c.owns(spec) {
		return nil, fmt.Errorf("spec has type %T, want %T", spec, c.newMessage())
	}
	raw, err := protojson.MarshalOptions{}.Marshal(spec.(proto.Message))
	if err != nil {
		return nil, err
	}
	// protojson deliberately varies its whitespace; compact it so the stored
	// bytes are stable.
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c protoCodec) equal(a, b any) bool {
	ma, okA := a.(proto.Message)
	mb, okB := b.(proto.Message)
	return okA && okB && proto.Equal(ma, mb)
}

func (c protoCodec) clone(spec any) any {
	if !c.owns(spec) {
		return c.newSpec()
	}
	return proto.Clone(spec.(proto.Message))
}

// structSpec is the codec of a core or Gateway API kind: a Go struct with
// JSON tags, decoded with encoding/json after the strict schema check.
func structSpec[T any, PT interface {
	*T
	DeepCopy() *T
}]() specCodec {
	return structCodec[T, PT]{}
}

type structCodec[T any, PT interface {
	*T
	DeepCopy() *T
}] struct{}

func (structCodec[T, PT]) newSpec() any { return PT(new(T)) }

func (structCodec[T, PT]) owns(spec any) bool {
	p, ok := spec.(PT)
	return ok && p != nil
}

func (structCodec[T, PT]) check(tree any, p *field.Path) ErrorList {
	var errs ErrorList
	checkGoValue(reflect.TypeFor[T](), tree, p, &errs)
	return errs
}

func (structCodec[T, PT]) decode(data []byte) (any, error) {
	v := PT(new(T))
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	return v, nil
}

func (c structCodec[T, PT]) encode(spec any) ([]byte, error) {
	if !c.owns(spec) {
		return nil, fmt.Errorf("spec has type %T, want %T", spec, PT(nil))
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return dropNulls(raw)
}

// dropNulls removes object members whose value is null. The Kubernetes types
// emit null for some empty fields (a PodSpec without containers); for a Go
// struct null and absent decode the same, so the stored form omits them.
func dropNulls(raw []byte) ([]byte, error) {
	if !bytes.Contains(raw, []byte("null")) {
		return raw, nil
	}
	tree, err := parseJSONTree(raw)
	if err != nil {
		return nil, err
	}
	return json.Marshal(pruneNulls(tree))
}

func pruneNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = pruneNulls(e)
		}
	case []any:
		for i, e := range x {
			x[i] = pruneNulls(e)
		}
	}
	return v
}

func (c structCodec[T, PT]) equal(a, b any) bool {
	ea, errA := c.encode(a)
	eb, errB := c.encode(b)
	return errA == nil && errB == nil && bytes.Equal(ea, eb)
}

func (c structCodec[T, PT]) clone(spec any) any {
	if !c.owns(spec) {
		return c.newSpec()
	}
	return spec.(PT).DeepCopy()
}
