package store

import (
	"errors"
	"fmt"
)

// Sentinel errors of the store. The gRPC layer maps each to one status code
// in one place (internal/server/errors.go).
var (
	// ErrNotFound: the object (or the namespace it must live in) is absent.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a precondition on resourceVersion or uid failed; the
	// caller read a stale object.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is wrong (immutable field changed, IP
	// outside the pool, status that does not validate).
	ErrInvalid = errors.New("invalid")
	// ErrExhausted: an address pool has no free address.
	ErrExhausted = errors.New("address pool exhausted")
	// ErrUnavailable: etcd could not be reached or did not answer in time;
	// nothing was written.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrExpired: a list continue token refers to a compacted revision.
	ErrExpired = errors.New("continue token expired")
)

func notFound(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, a...)...)
}

func conflict(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConflict}, a...)...)
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
}
