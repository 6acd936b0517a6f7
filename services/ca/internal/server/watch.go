package server

import (
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

// Watch streams the bundle and records the caller's acknowledgements.
func (s *Server) Watch(stream cav1.TrustBundleService_WatchServer) error {
	const method = "TrustBundle.Watch"
	ctx := stream.Context()
	c, err := s.authenticate(ctx)
	if err != nil {
		return s.fail(ctx, method, c, "", err)
	}
	w := s.o.Broadcaster.Register(c.String())
	defer w.Close()

	// Acknowledgements arrive on their own goroutine; it ends when the
	// client half-closes or the stream ends (Recv fails then).
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			w.Ack(req.GetAckVersion())
		}
	}()

	var sent uint64
	for {
		b, changed := s.o.Broadcaster.Current()
		if b != nil && b.Version > sent {
			if err := stream.Send(&cav1.WatchResponse{Bundle: b.Proto()}); err != nil {
				return err
			}
			sent = b.Version
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.draining:
			return status.Error(codes.Unavailable, "CA replica shutting down; reconnect")
		case <-changed:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				// The client stops acknowledging but may keep receiving.
				recvErr = nil
				continue
			}
			return nil
		}
	}
}
