package run

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// ServeHTTP serves srv on ln until ctx is cancelled, then shuts it down
// gracefully within ShutdownContext(ctx), closing remaining connections
// if that runs out. It fits Group.Go and returns nil after a clean stop.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener) error {
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("http server on %s: %w", addr, err)
	case <-ctx.Done():
	}

	sctx, cancel := ShutdownContext(ctx)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("http server on %s: shutdown: %w", addr, err), srv.Close())
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("http server on %s: %w", addr, serr))
	}
	return err
}
