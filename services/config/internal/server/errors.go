package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/services/config/internal/resource"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// errPermission marks a caller that is authenticated but not allowed.
var errPermission = errors.New("permission denied")

// toStatus is the one place where the config API turns an error into a gRPC
// status. Validation failures carry a BadRequest detail with one field
// violation per bad field, so clients can show each path and value.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if fes := resource.FieldErrors(err); len(fes) > 0 {
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, fe := range fes {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: fe.Field, Description: fe.Error(),
			})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	}
	code := codes.Internal
	switch {
	case errors.Is(err, errUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, errPermission):
		code = codes.PermissionDenied
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, store.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, store.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, store.ErrExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, store.ErrExpired):
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, watchhub.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, watchhub.ErrRelist):
		// Kubernetes answers 410 Gone ("too old resource version"); in gRPC
		// terms the revision is outside the range this server can serve.
		code = codes.OutOfRange
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}
