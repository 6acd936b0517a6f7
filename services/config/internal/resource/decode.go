package resource

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// DecodeOptions tune Decode.
type DecodeOptions struct {
	// DefaultNamespace is given to namespaced objects that name none, as
	// `kubectl apply -n` does. Empty leaves them without one (and Validate
	// then rejects them).
	DefaultNamespace string
}

// Decode parses a manifest with the full kind table; see KindTable.Decode.
func Decode(data []byte) ([]*Object, error) {
	return Kinds().Decode(data)
}

// Decode parses a manifest into objects: multi-document YAML, a JSON
// document (or a stream of them), and `kind: List` documents whose items are
// decoded in order. Empty documents are skipped.
//
// Decoding is strict: unknown or duplicate fields and wrongly typed values
// are errors naming their path. Decoded objects are canonicalized: the
// apiVersion becomes the kind's storage version and the defaults the
// Kubernetes API server would apply are filled in (see the package docs).
// Decode does not run the semantic rules; call Validate for that.
//
// Decode is all-or-nothing: on any error it returns no objects and an error
// holding one *DocumentError per failed document.
func (t *KindTable) Decode(data []byte) ([]*Object, error) {
	return t.DecodeWith(data, DecodeOptions{})
}

// DecodeWith is Decode with options.
func (t *KindTable) DecodeWith(data []byte, opts DecodeOptions) ([]*Object, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var objs []*Object
	var errs []error
	for i, doc := range docs {
		decoded, docErrs := t.decodeDocument(i, doc, opts)
		objs = append(objs, decoded...)
		errs = append(errs, docErrs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

// DecodeOne decodes data that must hold exactly one object (for example an
// object read back from storage).
func (t *KindTable) DecodeOne(data []byte) (*Object, error) {
	objs, err := t.Decode(data)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("expected exactly one object, found %d", len(objs))
	}
	return objs[0], nil
}

// DecodeAndValidate decodes data and validates every object with opts,
// returning the objects only if all of them are valid.
func (t *KindTable) DecodeAndValidate(data []byte, decodeOpts DecodeOptions, validateOpts ValidateOptions) ([]*Object, error) {
	objs, err := t.DecodeWith(data, decodeOpts)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, o := range objs {
		if verr := validateOpts.Validate(o); verr != nil {
			errs = append(errs, &DocumentError{
				Index: o.origin.document, Item: o.origin.item, APIVersion: o.APIVersion, Kind: o.Kind,
				Namespace: o.Metadata.Namespace, Name: o.Metadata.Name, Err: verr,
			})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

// rawDocument is one document of the input, converted to JSON.
type rawDocument struct {
	json []byte
	err  error // a syntax error confined to this document
}

// splitDocuments cuts the input into JSON documents. Input whose first
// non-space byte is '{' is read as a stream of JSON values; anything else as
// YAML documents separated by "---" lines.
func splitDocuments(data []byte) ([]rawDocument, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return splitJSONStream(trimmed)
	}
	var docs []rawDocument
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, &DocumentError{Index: len(docs), Item: -1, Err: ErrorList{errInvalid(nil, rawText("document"), "invalid YAML", err.Error())}}
		}
		converted, cerr := yamlToJSON(doc)
		if cerr != nil {
			docs = append(docs, rawDocument{err: cerr})
			continue
		}
		if isEmptyDocument(converted) {
			continue
		}
		docs = append(docs, rawDocument{json: converted})
	}
}

// yamlToJSON converts one YAML document, rejecting duplicate keys. It
// recovers from a panic in the YAML library so bad input can never crash
// the caller.
func yamlToJSON(doc []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("YAML parser failed: %v", r)
		}
	}()
	out, err = yaml.YAMLToJSONStrict(doc)
	if err != nil {
		// The YAML library's messages span lines; keep ours on one.
		return nil, errors.New(strings.Join(strings.Fields(err.Error()), " "))
	}
	return out, nil
}

func isEmptyDocument(j []byte) bool {
	j = bytes.TrimSpace(j)
	return len(j) == 0 || bytes.Equal(j, []byte("null"))
}

func splitJSONStream(data []byte) ([]rawDocument, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []rawDocument
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, &DocumentError{Index: len(docs), Item: -1, Err: ErrorList{errInvalid(nil, rawText("document"), "invalid JSON", err.Error())}}
		}
		if !isEmptyDocument(raw) {
			docs = append(docs, rawDocument{json: raw})
		}
	}
}

// decodeDocument decodes one document, which may be a List.
func (t *KindTable) decodeDocument(index int, doc rawDocument, opts DecodeOptions) ([]*Object, []error) {
	if doc.err != nil {
		return nil, []error{&DocumentError{Index: index, Item: -1, Err: ErrorList{errInvalid(nil, rawText("document"), "invalid YAML", doc.err.Error())}}}
	}
	tree, err := parseJSONTree(doc.json)
	if err != nil {
		return nil, []error{&DocumentError{Index: index, Item: -1, Err: err}}
	}
	if isList(tree) {
		items, ok := tree.(map[string]any)["items"].([]any)
		if !ok {
			return nil, []error{&DocumentError{Index: index, Item: -1, Kind: "List", Err: ErrorList{errWrongType(field.NewPath("items"), tree.(map[string]any)["items"], "an array")}}}
		}
		var objs []*Object
		var errs []error
		for i, item := range items {
			if isList(item) {
				errs = append(errs, &DocumentError{Index: index, Item: i, Kind: "List", Err: ErrorList{errForbidden(nil, nil, "a List may not contain another List")}})
				continue
			}
			obj, err := t.decodeTree(item, opts)
			if err != nil {
				errs = append(errs, documentError(index, i, item, err))
				continue
			}
			obj.origin = origin{document: index, item: i}
			objs = append(objs, obj)
		}
		return objs, errs
	}
	obj, err := t.decodeTree(tree, opts)
	if err != nil {
		return nil, []error{documentError(index, -1, tree, err)}
	}
	obj.origin = origin{document: index, item: -1}
	return []*Object{obj}, nil
}

// isList reports whether a document is a Kubernetes List (kind "List", or a
// typed list such as "ServiceList" as `kubectl get -o yaml` prints).
func isList(tree any) bool {
	obj, ok := tree.(map[string]any)
	if !ok {
		return false
	}
	kind, _ := obj["kind"].(string)
	if kind == "List" {
		return true
	}
	_, hasItems := obj["items"]
	return strings.HasSuffix(kind, "List") && hasItems
}

// documentError wraps err with what is known about the document.
func documentError(index, item int, tree any, err error) *DocumentError {
	de := &DocumentError{Index: index, Item: item, Err: err}
	if obj, ok := tree.(map[string]any); ok {
		de.APIVersion, _ = obj["apiVersion"].(string)
		de.Kind, _ = obj["kind"].(string)
		if meta, ok := obj["metadata"].(map[string]any); ok {
			de.Name, _ = meta["name"].(string)
			de.Namespace, _ = meta["namespace"].(string)
		}
	}
	return de
}

// Top-level fields of each body layout.
var (
	specLayoutFields   = []string{"apiVersion", "kind", "metadata", "spec", "status"}
	secretLayoutFields = []string{"apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"}
)

// decodeTree turns one object's JSON tree into an Object.
func (t *KindTable) decodeTree(tree any, opts DecodeOptions) (*Object, error) {
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, ErrorList{errWrongType(nil, tree, "an object")}
	}
	var errs ErrorList
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if apiVersion == "" {
		errs = append(errs, errRequired(field.NewPath("apiVersion"), ""))
	}
	if kind == "" {
		errs = append(errs, errRequired(field.NewPath("kind"), ""))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	k, lerr := t.lookup(apiVersion, kind)
	if lerr != nil {
		return nil, ErrorList{lerr}
	}

	allowed := specLayoutFields
	if k.layout == bodyAtTopLevel {
		allowed = secretLayoutFields
	}
	for _, key := range sortedKeys(obj) {
		if !slices.Contains(allowed, key) {
			errs = append(errs, errUnknownField(nil, key))
		}
	}

	// metadata
	var meta metav1.ObjectMeta
	metaPath := field.NewPath("metadata")
	if m, present := obj["metadata"]; present && m != nil {
		var metaErrs ErrorList
		checkGoValue(reflect.TypeFor[metav1.ObjectMeta](), m, metaPath, &metaErrs)
		if len(metaErrs) == 0 {
			metaErrs = decodeInto(m, &meta, metaPath)
		}
		errs = append(errs, metaErrs...)
	}

	// body
	var specTree any
	specPath := field.NewPath("spec")
	if k.layout == bodyAtTopLevel {
		body := map[string]any{}
		for _, key := range allowed[3:] {
			if v, present := obj[key]; present {
				body[key] = v
			}
		}
		specTree, specPath = body, nil
	} else {
		specTree = obj["spec"]
	}
	spec := k.spec.newSpec()
	if specTree != nil {
		specErrs := k.spec.check(specTree, specPath)
		if len(specErrs) == 0 {
			raw, err := json.Marshal(specTree)
			if err == nil {
				spec, err = k.spec.decode(raw)
			}
			if err != nil {
				specErrs = ErrorList{errInvalid(specPath, rawText("value"), "cannot decode", err.Error())}
			}
		}
		errs = append(errs, specErrs...)
	}

	// status
	var status json.RawMessage
	if k.layout == bodyInSpec {
		if s, present := obj["status"]; present && s != nil {
			var statusErrs ErrorList
			status, statusErrs = decodeStatus(k, s)
			errs = append(errs, statusErrs...)
		}
	}

	if len(errs) > 0 {
		return nil, errs
	}
	o := &Object{
		APIVersion: k.StorageAPIVersion(),
		Kind:       k.name,
		Metadata:   meta,
		Spec:       spec,
		Status:     status,
		desc:       k,
	}
	if k.namespaced && o.Metadata.Namespace == "" {
		o.Metadata.Namespace = opts.DefaultNamespace
	}
	if k.applyDefaults != nil {
		k.applyDefaults(o)
	}
	return o, nil
}

// decodeStatus checks a status value and returns it as compact JSON; a kind
// with a typed status is checked strictly and re-encoded canonically.
func decodeStatus(k *Kind, s any) (json.RawMessage, ErrorList) {
	p := field.NewPath("status")
	if _, ok := s.(map[string]any); !ok {
		return nil, ErrorList{errWrongType(p, s, "an object")}
	}
	if k.status != nil {
		if errs := k.status.check(s, p); len(errs) > 0 {
			return nil, errs
		}
		raw, err := json.Marshal(s)
		if err != nil {
			return nil, ErrorList{errInvalid(p, rawText("value"), "cannot decode", err.Error())}
		}
		typed, err := k.status.decode(raw)
		if err == nil {
			raw, err = k.status.encode(typed)
		}
		if err != nil {
			return nil, ErrorList{errInvalid(p, rawText("value"), "cannot decode", err.Error())}
		}
		return raw, nil
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, ErrorList{errInvalid(p, rawText("value"), "cannot encode", err.Error())}
	}
	return raw, nil
}

// decodeInto decodes an already checked JSON tree into target.
func decodeInto(tree any, target any, p *field.Path) ErrorList {
	raw, err := json.Marshal(tree)
	if err == nil {
		err = json.Unmarshal(raw, target)
	}
	if err != nil {
		return ErrorList{errInvalid(p, rawText("value"), "cannot decode", err.Error())}
	}
	return nil
}
