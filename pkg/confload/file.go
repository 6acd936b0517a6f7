package confload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// applyFile sets the fields named in a YAML document on the struct v.
// YAML keys are the json names of the fields, as with sigs.k8s.io/yaml,
// but durations are written as strings ("10s") and lists of strings may
// also be given as one comma-separated string, as on the command line.
func applyFile(data []byte, v reflect.Value) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	if isNull(js) {
		return nil // empty file
	}
	return decodeStruct(js, v, "")
}

func isNull(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// decodeStruct decodes a mapping into the struct v; path names v for errors.
func decodeStruct(raw []byte, v reflect.Value, path string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: must be a mapping", orRoot(path))
	}
	index := fileKeys(v.Type())
	for _, k := range slices.Sorted(maps.Keys(m)) {
		p := join(path, k)
		idx, ok := index[k]
		if !ok {
			return unknownKey(p, k, index)
		}
		if err := decodeValue(m[k], v.FieldByIndex(idx), p); err != nil {
			return err
		}
	}
	return nil
}

// decodeValue decodes one YAML value into the field v; null keeps the
// field as it is.
func decodeValue(raw json.RawMessage, v reflect.Value, path string) error {
	if isNull(raw) {
		return nil
	}
	t := v.Type()
	switch {
	case t == durationType:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: must be a duration string like 10s", path)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (like 500ms, 10s, 1h30m)", path, s)
		}
		v.SetInt(int64(d))
		return nil
	case isStringList(t):
		var s string
		if json.Unmarshal(raw, &s) == nil {
			pv, _ := parseValue(t, s)
			v.Set(pv)
			return nil
		}
	case isNested(t):
		return decodeStruct(raw, v, path)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("%s: %w", path, describeJSONError(err))
	}
	return nil
}

// fileKeys maps the YAML keys of struct type t to field indexes, flattening
// embedded structs without a json name as encoding/json does.
func fileKeys(t reflect.Type) map[string][]int {
	keys := map[string][]int{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := jsonName(sf)
		if !ok || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		if name == "" && sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			for k, idx := range fileKeys(sf.Type) {
				if _, shadowed := keys[k]; !shadowed {
					keys[k] = append([]int{i}, idx...)
				}
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		keys[name] = []int{i} // a direct field wins over a flattened one
	}
	return keys
}

// unknownKey reports a key the struct does not have, suggesting the right
// spelling when only the case differs.
func unknownKey(path, key string, index map[string][]int) error {
	for k := range index {
		if strings.EqualFold(k, key) {
			return fmt.Errorf("unknown field %q (did you mean %q?)", path, k)
		}
	}
	return fmt.Errorf("unknown field %q", path)
}

// describeJSONError drops encoding/json's Go-centric wording where it can.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("cannot use a %s as %s", te.Value, te.Type)
	}
	return err
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
