package resource

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checkGoValue walks a JSON value against a Go type the way encoding/json
// would decode it, and records unknown fields and type mismatches with their
// full path. Unlike encoding/json it matches field names case-sensitively,
// as the Kubernetes API server does.
func checkGoValue(t reflect.Type, v any, p *field.Path, errs *ErrorList) {
	if v == nil {
		return // null leaves the zero value, as encoding/json does
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		// Types with their own JSON form (metav1.Time, intstr.IntOrString,
		// resource.Quantity, ...): let the type judge the value.
		raw, err := json.Marshal(v)
		if err == nil {
			err = reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw)
		}
		if err != nil {
			*errs = append(*errs, errInvalid(p, shownJSON(v), "invalid value", err.Error()))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "an object"))
			return
		}
		fields := jsonFieldsOf(t)
		for _, key := range sortedKeys(obj) {
			ft, ok := fields[key]
			if !ok {
				*errs = append(*errs, errUnknownField(p, key))
				continue
			}
			checkGoValue(ft, obj[key], p.Child(key), errs)
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s, ok := v.(string)
			if !ok {
				*errs = append(*errs, errWrongType(p, v, "a base64 string"))
				return
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				*errs = append(*errs, errInvalid(p, s, "invalid base64", err.Error()))
			}
			return
		}
		list, ok := v.([]any)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "an array"))
			return
		}
		for i, e := range list {
			checkGoValue(t.Elem(), e, p.Index(i), errs)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "an object"))
			return
		}
		for _, key := range sortedKeys(obj) {
			if k := t.Key().Kind(); k != reflect.String {
				if _, err := strconv.ParseInt(key, 10, 64); err != nil {
					*errs = append(*errs, errInvalid(p.Key(key), key, "invalid map key", "must be an integer"))
					continue
				}
			}
			checkGoValue(t.Elem(), obj[key], p.Key(key), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			*errs = append(*errs, errWrongType(p, v, "a string"))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			*errs = append(*errs, errWrongType(p, v, "a boolean"))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "an integer"))
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			*errs = append(*errs, errInvalid(p, rawText(n), "invalid integer", "must be a whole number that fits in "+strconv.Itoa(t.Bits())+" bits"))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "a non-negative integer"))
			return
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			*errs = append(*errs, errInvalid(p, rawText(n), "invalid integer", "must be a non-negative whole number that fits in "+strconv.Itoa(t.Bits())+" bits"))
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			*errs = append(*errs, errWrongType(p, v, "a number"))
		}
	case reflect.Interface:
		// Free-form (e.g. runtime.RawExtension payloads): nothing to check.
	}
}

// jsonFieldsOf maps the JSON names of t's fields to their types, following
// encoding/json's rules for tags and embedded structs.
func jsonFieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFieldsOf(ft) {
					if _, taken := out[k]; !taken {
						out[k] = v
					}
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = sf.Type
	}
	return out
}

// shownJSON renders a JSON value compactly for an error message.
func shownJSON(v any) rawText {
	if s, ok := v.(string); ok {
		return rawText(strconv.Quote(truncate(s)))
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return jsonTypeOf(v)
	}
	return rawText(truncate(string(raw)))
}
