package run_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/run"
)

var errBoom = errors.New("boom")

// waitFor fails the test if Wait does not return within a generous bound;
// the bound only turns a hang into a failure, it orders nothing.
func waitFor(t *testing.T, g *run.Group) error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- g.Wait() }()
	select {
	case err := <-res:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Wait hung")
		return nil
	}
}

// blockUntilCancelled is a well-behaved server member.
func blockUntilCancelled(stopped chan<- string, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		stopped <- name
		return ctx.Err()
	}
}

func TestGroupFailureStopsAll(t *testing.T) {
	g := run.NewGroup(context.Background(), run.GroupOptions{})
	stopped := make(chan string, 2)
	g.Go("grpc", blockUntilCancelled(stopped, "grpc"))
	g.Go("admin", blockUntilCancelled(stopped, "admin"))
	g.Go("watch", func(context.Context) error { return errBoom })

	err := waitFor(t, g)
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "watch") {
		t.Fatalf("Wait = %v, want errBoom naming the member", err)
	}
	if len(stopped) != 2 {
		t.Fatalf("%d members saw cancellation, want 2", len(stopped))
	}
}

func TestGroupStopReasons(t *testing.T) {
	cases := []struct {
		name    string
		stop    func(cancel context.CancelFunc, g *run.Group)
		members map[string]func(context.Context) error
		wantErr error // nil: clean
	}{
		{
			name:    "parent cancelled",
			stop:    func(cancel context.CancelFunc, _ *run.Group) { cancel() },
			members: map[string]func(context.Context) error{"a": ctxErr},
		},
		{
			name:    "Stop",
			stop:    func(_ context.CancelFunc, g *run.Group) { g.Stop() },
			members: map[string]func(context.Context) error{"a": ctxErr, "b": ctxNil},
		},
		{
			name: "early nil exit",
			stop: func(context.CancelFunc, *run.Group) {},
			members: map[string]func(context.Context) error{
				"a": ctxErr,
				"b": func(context.Context) error { return nil },
			},
			wantErr: run.ErrMemberExited,
		},
		{
			name: "error during shutdown",
			stop: func(_ context.CancelFunc, g *run.Group) { g.Stop() },
			members: map[string]func(context.Context) error{
				"a": func(ctx context.Context) error { <-ctx.Done(); return errBoom },
			},
			wantErr: errBoom,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g := run.NewGroup(ctx, run.GroupOptions{})
			for name, fn := range tc.members {
				g.Go(name, fn)
			}
			tc.stop(cancel, g)
			err := waitFor(t, g)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Wait = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func ctxErr(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func ctxNil(ctx context.Context) error { <-ctx.Done(); return nil }

func TestEmptyGroup(t *testing.T) {
	g := run.NewGroup(context.Background(), run.GroupOptions{})
	if err := waitFor(t, g); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	g.Go("late", func(context.Context) error { panic("must not start") })
}

func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	exited := make(chan struct{})
	defer func() { close(release); <-exited }() // let goleak see it gone

	g := run.NewGroup(context.Background(), run.GroupOptions{ShutdownTimeout: 50 * time.Millisecond})
	g.Go("stubborn", func(context.Context) error {
		defer close(exited)
		<-release // ignores cancellation
		return nil
	})
	g.Go("ok", ctxErr)
	g.Go("failing", func(context.Context) error { return errBoom })

	err := waitFor(t, g)
	for _, target := range []error{run.ErrShutdownTimeout, context.DeadlineExceeded, errBoom} {
		if !errors.Is(err, target) {
			t.Errorf("Wait = %v, want it to match %v", err, target)
		}
	}
	if !strings.Contains(err.Error(), "stubborn") || strings.Contains(err.Error(), "[ok") {
		t.Errorf("Wait = %v, want only the stuck member named", err)
	}
}

func TestShutdownContext(t *testing.T) {
	g := run.NewGroup(context.Background(), run.GroupOptions{ShutdownTimeout: time.Hour})
	got := make(chan time.Time, 1)
	g.Go("m", func(ctx context.Context) error {
		<-ctx.Done()
		sctx, cancel := run.ShutdownContext(ctx)
		defer cancel()
		if sctx.Err() != nil {
			return errors.New("shutdown context already done")
		}
		d, _ := sctx.Deadline()
		got <- d
		return nil
	})
	start := time.Now()
	g.Stop()
	if err := waitFor(t, g); err != nil {
		t.Fatal(err)
	}
	d := <-got
	if d.Before(start.Add(59*time.Minute)) || d.After(start.Add(time.Hour)) {
		t.Errorf("deadline %v after stop, want just under 1h", d.Sub(start))
	}
}

func TestServeHTTPInGroup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := run.NewAdmin(run.AdminOptions{})
	g := run.NewGroup(context.Background(), run.GroupOptions{})
	g.Go("admin", func(ctx context.Context) error { return admin.Serve(ctx, ln) })

	url := "http://" + ln.Addr().String() + "/healthz"
	if code, _ := get(t, url); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	http.DefaultClient.CloseIdleConnections()
	g.Stop()
	if err := waitFor(t, g); err != nil {
		t.Fatalf("Wait = %v, want clean shutdown", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeHTTPListenerFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = run.ServeHTTP(context.Background(), &http.Server{}, ln)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("ServeHTTP = %v, want an error naming the address", err)
	}
}
