package run_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/run"
)

// TestSignals sends real SIGTERMs to the test process. NotifyShutdown has
// them registered from start to stop, so they never reach the default
// action (termination); nothing here runs in parallel.
func TestSignals(t *testing.T) {
	forced := make(chan os.Signal, 1)
	ctx, stop := run.NotifyShutdown(context.Background(), func(s os.Signal) { forced <- s }, syscall.SIGTERM)
	defer stop()

	g := run.NewGroup(ctx, run.GroupOptions{})
	g.Go("server", ctxErr)

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("context not cancelled by SIGTERM")
	}
	var sigErr run.SignalError
	if !errors.As(context.Cause(ctx), &sigErr) || sigErr.Signal != syscall.SIGTERM {
		t.Errorf("cause = %v, want SignalError{SIGTERM}", context.Cause(ctx))
	}
	if err := waitFor(t, g); err != nil {
		t.Errorf("Wait after a signal = %v, want nil (a signal is a clean stop)", err)
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-forced:
		if s != syscall.SIGTERM {
			t.Errorf("forced by %v, want SIGTERM", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("second SIGTERM did not force")
	}
}

func TestNotifyShutdownStop(t *testing.T) {
	ctx, stop := run.NotifyShutdown(context.Background(), nil)
	stop()
	stop() // idempotent
	if ctx.Err() == nil {
		t.Error("stop did not cancel the context")
	}
	var sigErr run.SignalError
	if errors.As(context.Cause(ctx), &sigErr) {
		t.Error("cause is a signal though none was sent")
	}
}
