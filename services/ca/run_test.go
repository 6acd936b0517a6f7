package ca_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"

	"github.com/ambitmesh/ambit/services/ca"
	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
)

// TestBinary drives the two entry points of cmd/ambit-ca as the binary
// does: flags and AMBIT_CA_* variables through run.Execute.
func TestBinary(t *testing.T) {
	h := newHarness(t)
	h.stopPublisher()
	env := map[string]string{"AMBIT_CA_KEK": h.kek, "AMBIT_CA_ETCD_ENDPOINTS": h.stack.EtcdEndpoints()[0]}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	var out, errOut bytes.Buffer
	dir := t.TempDir()
	code := ca.IssueAdminMain(context.Background(), run.Invocation{
		Args: []string{"--out", dir, "--name", "ops"}, LookupEnv: lookup, Stdout: &out, Stderr: &errOut,
	})
	if code != run.ExitOK {
		t.Fatalf("issue-admin exit %d: %s", code, errOut.String())
	}
	if !bytes.Contains(out.Bytes(), []byte(filepath.Join(dir, ca.AdminCertFile))) {
		t.Errorf("issue-admin output %q", out.String())
	}
	if code := ca.IssueAdminMain(context.Background(), run.Invocation{Args: []string{"--out", dir}, LookupEnv: func(string) (string, bool) { return "", false },
		Stdout: &out, Stderr: &errOut}); code != run.ExitConfig {
		t.Errorf("issue-admin without a KEK: exit %d, want %d", code, run.ExitConfig)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cfg := ca.DefaultConfig()
	done := make(chan int, 1)
	go func() {
		done <- run.Execute(ctx, run.Invocation{
			Args: []string{"--listen-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--nats-url", h.stack.NATSURL(),
				"--replica-id", "binary", "--log-level", "error"},
			LookupEnv: lookup, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{},
		}, ca.Component, cfg, func(ctx context.Context, info buildinfo.Info) error { return ca.Run(ctx, cfg, info) })
	}()
	eventually(t, "the replica to report itself", func() (bool, string) {
		resp, err := h.etcd.Get(context.Background(), bundle.ReplicaPrefix+"binary")
		return err == nil && len(resp.Kvs) == 1, "no report yet"
	})
	cancel()
	select {
	case code := <-done:
		if code != run.ExitOK {
			t.Fatalf("ambit-ca exit %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ambit-ca did not stop")
	}
}
