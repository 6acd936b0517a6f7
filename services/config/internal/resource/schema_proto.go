package resource

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checkProtoMessage walks a JSON value against a proto message descriptor,
// the way protojson would read it, and records every problem with its path.
//
// It also rewrites google.protobuf.Duration values from Go duration syntax
// ("30ms", "5m") to protojson's seconds form: Istio decodes durations with
// the legacy jsonpb decoder, which accepts Go syntax, and Istio's documented
// examples use it, so protojson alone would reject existing user YAML.
func checkProtoMessage(md protoreflect.MessageDescriptor, v any, p *field.Path, errs *ErrorList) any {
	if v == nil {
		return nil
	}
	switch md.FullName() {
	case "google.protobuf.Duration":
		return checkDuration(v, p, errs)
	case "google.protobuf.Timestamp":
		s, ok := v.(string)
		if !ok {
			*errs = append(*errs, errWrongType(p, v, "a string (RFC 3339 timestamp)"))
			return v
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			*errs = append(*errs, errInvalid(p, s, "invalid timestamp", "must be RFC 3339"))
		}
		return v
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		checkProtoScalar(md.Fields().ByName("value"), v, p, errs)
		return v
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.Any", "google.protobuf.Empty", "google.protobuf.FieldMask":
		// Free-form by design; protojson checks their own syntax.
		return v
	}

	obj, ok := v.(map[string]any)
	if !ok {
		*errs = append(*errs, errWrongType(p, v, "an object"))
		return v
	}
	fields := md.Fields()
	seenField := map[protoreflect.FieldNumber]string{}
	seenOneof := map[protoreflect.FullName]string{}
	for _, key := range sortedKeys(obj) {
		fd := fields.ByJSONName(key)
		if fd == nil {
			// protojson also accepts the original proto field name.
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil {
			*errs = append(*errs, errUnknownField(p, key))
			continue
		}
		fp := p.Child(key)
		if prev, dup := seenField[fd.Number()]; dup {
			*errs = append(*errs, errDuplicate(fp, key, fmt.Sprintf("the same field as %q", prev)))
			continue
		}
		seenField[fd.Number()] = key
		val := obj[key]
		if val == nil {
			continue // null means unset
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, dup := seenOneof[od.FullName()]; dup {
				*errs = append(*errs, errForbidden(fp, nil, fmt.Sprintf("only one of %s may be set, and %q is already set", oneofMembers(od), prev)))
				continue
			}
			seenOneof[od.FullName()] = key
		}
		switch {
		case fd.IsList():
			list, ok := val.([]any)
			if !ok {
				*errs = append(*errs, errWrongType(fp, val, "an array"))
				continue
			}
			for i, e := range list {
				if e == nil {
					*errs = append(*errs, errInvalid(fp.Index(i), nil, "invalid value", "list items must not be null"))
					continue
				}
				list[i] = checkProtoSingular(fd, e, fp.Index(i), errs)
			}
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				*errs = append(*errs, errWrongType(fp, val, "an object"))
				continue
			}
			for _, mk := range sortedKeys(m) {
				checkProtoMapKey(fd.MapKey(), mk, fp, errs)
				if m[mk] == nil {
					*errs = append(*errs, errInvalid(fp.Key(mk), nil, "invalid value", "map values must not be null"))
					continue
				}
				m[mk] = checkProtoSingular(fd.MapValue(), m[mk], fp.Key(mk), errs)
			}
		default:
			obj[key] = checkProtoSingular(fd, val, fp, errs)
		}
	}
	return obj
}

func oneofMembers(od protoreflect.OneofDescriptor) string {
	names := make([]string, od.Fields().Len())
	for i := range names {
		names[i] = od.Fields().Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}

func checkProtoSingular(fd protoreflect.FieldDescriptor, v any, p *field.Path, errs *ErrorList) any {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return checkProtoMessage(fd.Message(), v, p, errs)
	}
	checkProtoScalar(fd, v, p, errs)
	return v
}

func checkProtoMapKey(fd protoreflect.FieldDescriptor, key string, p *field.Path, errs *ErrorList) {
	switch fd.Kind() {
	case protoreflect.StringKind:
	case protoreflect.BoolKind:
		if key != "true" && key != "false" {
			*errs = append(*errs, errInvalid(p.Key(key), key, "invalid map key", "must be true or false"))
		}
	default:
		if _, err := parseProtoInt(key, fd.Kind()); err != nil {
			*errs = append(*errs, errInvalid(p.Key(key), key, "invalid map key", err.Error()))
		}
	}
}

func checkProtoScalar(fd protoreflect.FieldDescriptor, v any, p *field.Path, errs *ErrorList) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			*errs = append(*errs, errWrongType(p, v, "a boolean"))
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			*errs = append(*errs, errWrongType(p, v, "a string"))
		}
	case protoreflect.EnumKind:
		ed := fd.Enum()
		switch x := v.(type) {
		case string:
			if ed.Values().ByName(protoreflect.Name(x)) == nil {
				names := make([]string, 0, ed.Values().Len())
				for i := 0; i < ed.Values().Len(); i++ {
					names = append(names, string(ed.Values().Get(i).Name()))
				}
				*errs = append(*errs, errNotSupported(p, x, names))
			}
		case json.Number:
			// Istio's decoder accepts the number of a defined value.
			n, err := parseProtoInt(string(x), protoreflect.Int32Kind)
			if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
				*errs = append(*errs, errInvalid(p, rawText(x), "invalid enum number", "must be the number of one of the enum's values"))
			}
		default:
			*errs = append(*errs, errWrongType(p, v, "a string"))
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch x := v.(type) {
		case json.Number:
		case string:
			if x != "NaN" && x != "Infinity" && x != "-Infinity" {
				if _, err := strconv.ParseFloat(x, 64); err != nil {
					*errs = append(*errs, errInvalid(p, x, "invalid number", ""))
				}
			}
		default:
			*errs = append(*errs, errWrongType(p, v, "a number"))
		}
	default: // the integer kinds
		var text string
		switch x := v.(type) {
		case json.Number:
			text = string(x)
		case string:
			text = x // protojson accepts quoted integers
		default:
			*errs = append(*errs, errWrongType(p, v, "an integer"))
			return
		}
		if _, err := parseProtoInt(text, fd.Kind()); err != nil {
			*errs = append(*errs, errInvalid(p, v, "invalid integer", err.Error()))
		}
	}
}

// parseProtoInt parses text as an integer of the given proto kind, accepting
// the integral float spellings protojson accepts ("1e3", "10.0").
func parseProtoInt(text string, kind protoreflect.Kind) (int64, error) {
	lo, hi, unsigned := intRange(kind)
	if unsigned {
		u, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(text, 64)
			if ferr != nil || f != math.Trunc(f) || f < 0 || f > float64(hi) {
				return 0, fmt.Errorf("must be an integer between 0 and %d", uint64(hi))
			}
			u = uint64(f)
		}
		if u > uint64(hi) {
			return 0, fmt.Errorf("must be an integer between 0 and %d", uint64(hi))
		}
		return int64(u), nil
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
			return 0, fmt.Errorf("must be an integer between %d and %d", lo, hi)
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("must be an integer between %d and %d", lo, hi)
	}
	return n, nil
}

func intRange(kind protoreflect.Kind) (lo, hi int64, unsigned bool) {
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return math.MinInt32, math.MaxInt32, false
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return 0, math.MaxUint32, true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		// uint64 above MaxInt64 does not occur in the Istio APIs we accept;
		// capping keeps the arithmetic in int64.
		return 0, math.MaxInt64, true
	default:
		return math.MinInt64, math.MaxInt64, false
	}
}

// checkDuration accepts Go duration syntax and protojson's "<seconds>s" and
// returns protojson's spelling.
func checkDuration(v any, p *field.Path, errs *ErrorList) any {
	s, ok := v.(string)
	if !ok {
		*errs = append(*errs, errWrongType(p, v, `a duration string such as "5s" or "100ms"`))
		return v
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		*errs = append(*errs, errInvalid(p, s, "invalid duration", `use a form such as "5s", "1.5s" or "100ms"`))
		return v
	}
	return formatProtoDuration(d)
}

// formatProtoDuration renders d as protojson expects: seconds with up to nine
// fractional digits and an "s" suffix.
func formatProtoDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign = "-"
		d = -d
	}
	secs := int64(d / time.Second)
	nanos := int64(d % time.Second)
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", nanos), "0")
	return fmt.Sprintf("%s%d.%ss", sign, secs, frac)
}

// errWrongType reports a JSON value of the wrong type.
func errWrongType(p *field.Path, v any, want string) *FieldError {
	return errInvalid(p, jsonTypeOf(v), "invalid value of type", "must be "+want)
}

// jsonTypeOf names a JSON value's type for messages.
func jsonTypeOf(v any) rawText {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return rawText("boolean " + strconv.FormatBool(x))
	case json.Number:
		return rawText("number " + string(x))
	case string:
		return rawText("string " + strconv.Quote(truncate(x)))
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return rawText(fmt.Sprintf("%T", v))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
