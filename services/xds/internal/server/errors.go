package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codedError carries the gRPC code an error maps to; toStatus is the one
// place where errors become gRPC statuses.
type codedError struct {
	code codes.Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func coded(code codes.Code, format string, args ...any) error {
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

// ErrNoCredentials is returned by an Authenticator when the caller
// presented nothing it understands, so the next one may try.
var ErrNoCredentials = errors.New("no credentials")

// toStatus maps what a stream handler returns to the status the client
// sees. A clean end of the client's side is not an error.
func toStatus(err error) error {
	var ce *codedError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &ce):
		return status.Error(ce.code, ce.err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, ErrNoCredentials):
		return status.Error(codes.Unauthenticated, err.Error())
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Error(codes.Internal, err.Error())
}
