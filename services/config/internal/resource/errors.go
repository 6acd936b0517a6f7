package resource

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ErrorType classifies a FieldError so the API layer can map it to a
// structured detail (for gRPC, a BadRequest field violation) without parsing
// the message.
type ErrorType string

// The error types. They mirror the categories Kubernetes uses, so users see
// familiar distinctions (missing vs. malformed vs. not allowed).
const (
	ErrorTypeRequired     ErrorType = "Required"
	ErrorTypeInvalid      ErrorType = "Invalid"
	ErrorTypeNotSupported ErrorType = "NotSupported"
	ErrorTypeDuplicate    ErrorType = "Duplicate"
	ErrorTypeForbidden    ErrorType = "Forbidden"
	ErrorTypeTooMany      ErrorType = "TooMany"
	ErrorTypeTooLong      ErrorType = "TooLong"
	ErrorTypeUnknownField ErrorType = "UnknownField"
	ErrorTypeNotFound     ErrorType = "NotFound"
)

// rootPath is how an error about the whole object names its path.
const rootPath = "<root>"

// FieldError is one problem with one field of one object. Every error the
// package returns for bad input is a FieldError (or a list of them), so the
// message always starts with the field path and quotes the bad value.
type FieldError struct {
	Type ErrorType
	// Field is the path of the field, e.g. spec.rules[0].from[0].source.ipBlocks[1].
	Field string
	// Value is the offending value rendered as text (already quoted when it is a
	// string); empty when the error has no value (Required, Forbidden).
	Value string
	// Summary is the short statement of what is wrong, e.g. "invalid CIDR".
	Summary string
	// Detail optionally explains the rule that was broken.
	Detail string
}

// Error renders `path: summary value: detail`, e.g.
// `spec.rules[0].from[0].source.ipBlocks[1]: invalid CIDR "10.0.0.0/33": prefix length out of range`.
func (e *FieldError) Error() string {
	var b strings.Builder
	p := e.Field
	if p == "" {
		p = rootPath
	}
	b.WriteString(p)
	b.WriteString(": ")
	b.WriteString(e.Summary)
	if e.Value != "" {
		b.WriteByte(' ')
		b.WriteString(e.Value)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// ErrorList is the aggregate of field errors for one object. A nil or empty
// list is not an error; use Err to turn a list into an error value.
type ErrorList []*FieldError

// Error joins the messages with "; " so an aggregate stays on one line in
// logs and in a gRPC status message.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap exposes the individual field errors to errors.As and errors.Is.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Err returns nil for an empty list, so callers never get a non-nil error
// interface holding an empty list.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// DocumentError reports why one document of a multi-document input failed,
// naming its position and, when known, its kind and name.
type DocumentError struct {
	// Index is the zero-based position of the document in the input.
	Index int
	// Item is the zero-based position inside a `kind: List` document, or -1.
	Item       int
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Err        error
}

func (e *DocumentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "documents[%d]", e.Index)
	if e.Item >= 0 {
		fmt.Fprintf(&b, ".items[%d]", e.Item)
	}
	if e.Kind != "" {
		b.WriteString(" (")
		b.WriteString(e.Kind)
		if e.Name != "" {
			b.WriteByte(' ')
			if e.Namespace != "" {
				b.WriteString(e.Namespace)
				b.WriteByte('/')
			}
			b.WriteString(e.Name)
		}
		b.WriteByte(')')
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DocumentError) Unwrap() error { return e.Err }

// FieldErrors flattens any error returned by this package into its field
// errors (nil when err holds none), for callers that build structured
// responses.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case ErrorList:
			out = append(out, e...)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		default:
			walk(errors.Unwrap(err))
		}
	}
	walk(err)
	return out
}

// The constructors below are the only way validators build errors, which
// keeps every message in the same shape.

func pathString(p *field.Path) string {
	if p == nil {
		return ""
	}
	return p.String()
}

// rawText is a value already rendered for a message; quote leaves it as is.
type rawText string

// maxShownValue bounds how much of a long value a message repeats.
const maxShownValue = 128

func truncate(s string) string {
	if len(s) <= maxShownValue {
		return s
	}
	return s[:maxShownValue] + "..."
}

// quote renders a value for a message: strings are Go-quoted (and cut when
// long), other values printed plainly.
func quote(v any) string {
	switch x := v.(type) {
	case rawText:
		return string(x)
	case string:
		return strconv.Quote(truncate(x))
	case nil:
		return "null"
	default:
		return fmt.Sprint(x)
	}
}

func errRequired(p *field.Path, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeRequired, Field: pathString(p), Summary: "required", Detail: detail}
}

// errInvalid reports a malformed value: summary names what the value should
// have been (e.g. "invalid CIDR"), detail says why.
func errInvalid(p *field.Path, value any, summary, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeInvalid, Field: pathString(p), Value: quote(value), Summary: summary, Detail: detail}
}

func errNotSupported[T ~string](p *field.Path, value any, supported []T) *FieldError {
	quoted := make([]string, len(supported))
	for i, s := range supported {
		quoted[i] = strconv.Quote(string(s))
	}
	return &FieldError{
		Type: ErrorTypeNotSupported, Field: pathString(p), Value: quote(value),
		Summary: "unsupported value", Detail: "supported values: " + strings.Join(quoted, ", "),
	}
}

func errDuplicate(p *field.Path, value any, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeDuplicate, Field: pathString(p), Value: quote(value), Summary: "duplicate value", Detail: detail}
}

// errForbidden reports a field that must not be set in this context; value
// may be nil when showing it would not help.
func errForbidden(p *field.Path, value any, detail string) *FieldError {
	e := &FieldError{Type: ErrorTypeForbidden, Field: pathString(p), Summary: "forbidden", Detail: detail}
	if value != nil {
		e.Summary = "forbidden value"
		e.Value = quote(value)
	}
	return e
}

func errTooMany(p *field.Path, actual, limit int) *FieldError {
	return &FieldError{
		Type: ErrorTypeTooMany, Field: pathString(p), Value: strconv.Itoa(actual),
		Summary: "too many items", Detail: fmt.Sprintf("must have at most %d", limit),
	}
}

func errTooLong(p *field.Path, value string, limit int) *FieldError {
	return &FieldError{
		Type: ErrorTypeTooLong, Field: pathString(p), Value: strconv.Quote(truncate(value)),
		Summary: "value too long", Detail: fmt.Sprintf("%d characters, must be at most %d", len(value), limit),
	}
}

func errUnknownField(parent *field.Path, name string) *FieldError {
	return &FieldError{Type: ErrorTypeUnknownField, Field: pathString(parent), Value: strconv.Quote(name), Summary: "unknown field"}
}

func errNotFound(p *field.Path, value any, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeNotFound, Field: pathString(p), Value: quote(value), Summary: "not found", Detail: detail}
}
