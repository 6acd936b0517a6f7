// Package fault classifies the CA's errors. Every package reports a failure
// a caller should see as a *Error with a Kind (what the caller did wrong, in
// gRPC terms) and a Reason (a short, stable label for metrics and audit
// logs); the server turns Kinds into status codes in exactly one place.
// Errors without a Kind are internal.
package fault

import (
	"errors"
	"fmt"
)

// Kind is the class of a failure, as the caller should see it.
type Kind int

// Kinds, each mapped to the gRPC code of the same name.
const (
	Internal Kind = iota
	InvalidArgument
	PermissionDenied
	Unauthenticated
	NotFound
	FailedPrecondition
	Aborted
	ResourceExhausted
	Unavailable
)

func (k Kind) String() string {
	switch k {
	case InvalidArgument:
		return "invalid_argument"
	case PermissionDenied:
		return "permission_denied"
	case Unauthenticated:
		return "unauthenticated"
	case NotFound:
		return "not_found"
	case FailedPrecondition:
		return "failed_precondition"
	case Aborted:
		return "aborted"
	case ResourceExhausted:
		return "resource_exhausted"
	case Unavailable:
		return "unavailable"
	}
	return "internal"
}

// Error is a classified failure. Msg is safe to return to the caller; Err,
// if any, is the underlying cause (logged, and part of Error()).
type Error struct {
	Kind   Kind
	Reason string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error with a formatted message.
func New(kind Kind, reason, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err, keeping it as the cause.
func Wrap(kind Kind, reason string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Msg: fmt.Sprintf(format, args...), Err: err}
}

// As returns the classification of err; an unclassified error is Internal
// with reason "internal".
func As(err error) (*Error, bool) {
	var fe *Error
	if errors.As(err, &fe) {
		return fe, true
	}
	return &Error{Kind: Internal, Reason: "internal", Msg: "internal error", Err: err}, false
}

// KindOf is As(err).Kind.
func KindOf(err error) Kind {
	fe, _ := As(err)
	return fe.Kind
}

// ReasonOf is As(err).Reason.
func ReasonOf(err error) string {
	fe, _ := As(err)
	return fe.Reason
}
