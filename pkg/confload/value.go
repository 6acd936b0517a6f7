package confload

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// isText reports whether values of t parse themselves from text (e.g.
// slog.Level, netip.Prefix); such types are leaves even when structs.
func isText(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// isNested reports whether a flag-tagged field of type t groups more flags.
func isNested(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !isText(t)
}

// isStringList reports whether t is []string (or a named form of it).
func isStringList(t reflect.Type) bool {
	return t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String && !isText(t)
}

// checkSupported rejects field types that have no flag syntax.
func checkSupported(t reflect.Type) error {
	if t == durationType || isText(t) || isStringList(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil
	}
	return fmt.Errorf("type %s cannot be set from a flag", t)
}

// typeName is how usage text names the kind of value a flag takes.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case isText(t):
		return "value"
	case isStringList(t):
		return "list"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Float32, reflect.Float64:
		return "float"
	}
	return t.Kind().String()
}

// parseValue parses the flag or environment syntax of a value of type t.
// Lists are comma separated, with blanks around items ignored.
func parseValue(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	switch {
	case t == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return v, errors.New("not a duration (like 500ms, 10s, 1h30m)")
		}
		v.SetInt(int64(d))
		return v, nil
	case isText(t):
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return v, err
		}
		return v, nil
	case isStringList(t):
		items := splitList(s)
		list := reflect.MakeSlice(t, len(items), len(items))
		for i, item := range items {
			list.Index(i).SetString(item)
		}
		return list, nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return v, errors.New("not a bool (true or false)")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, t.Bits())
		if err != nil {
			return v, numError("an integer", t, err)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, t.Bits())
		if err != nil {
			return v, numError("a non-negative integer", t, err)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, t.Bits())
		if err != nil {
			return v, numError("a number", t, err)
		}
		v.SetFloat(f)
	default:
		return v, fmt.Errorf("type %s cannot be set from text", t)
	}
	return v, nil
}

// numError turns a strconv error into a message an operator can act on.
func numError(what string, t reflect.Type, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("out of range for %s", t)
	}
	return fmt.Errorf("not %s", what)
}

// splitList splits a comma-separated list, dropping blanks and empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// formatValue renders v in the syntax parseValue accepts, for usage text.
func formatValue(v reflect.Value) string {
	t := v.Type()
	switch {
	case t == durationType:
		return time.Duration(v.Int()).String()
	case isStringList(t):
		return strings.Join(v.Convert(reflect.TypeFor[[]string]()).Interface().([]string), ",")
	case reflect.PointerTo(t).Implements(textMarshalerType) && v.CanAddr():
		if b, err := v.Addr().Interface().(encoding.TextMarshaler).MarshalText(); err == nil {
			return string(b)
		}
	case t.Implements(textMarshalerType):
		if b, err := v.Interface().(encoding.TextMarshaler).MarshalText(); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v.Interface())
}
