package run

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
)

// ServeGRPC serves srv on ln until ctx is cancelled, then stops it
// gracefully (in-flight calls finish, streams are told to end) within
// ShutdownContext(ctx), and hard-stops whatever remains. It fits Group.Go.
func ServeGRPC(ctx context.Context, srv *grpc.Server, ln net.Listener) error {
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("grpc server on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := ShutdownContext(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-sctx.Done():
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil && err != grpc.ErrServerStopped {
		return fmt.Errorf("grpc server on %s: %w", addr, err)
	}
	return nil
}
