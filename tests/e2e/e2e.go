// Package e2e is Ambit's end-to-end suite: it runs the built binaries
// (from $AMBIT_BIN, which `make test-e2e` sets to bin/) against real
// embedded etcd and NATS, and drives them the way an operator does, through
// ambitctl. The tests carry the build tag "e2e" so that a plain `go test
// ./...` of this module does not need the binaries.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/localproc"
)

// BinDir is where the binaries under test are; tests skip when it is unset.
func BinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("AMBIT_BIN")
	if dir == "" {
		t.Skip("AMBIT_BIN is not set: run through `make test-e2e`, which builds the binaries")
	}
	return dir
}

// RepoRoot finds the repository root (for deploy/local manifests).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Stack starts embedded etcd and NATS for one test.
func Stack(t testing.TB) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(context.Background(), devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// ConfigReplicas starts n ambit-config processes in insecure-loopback mode.
func ConfigReplicas(t testing.TB, bin string, s *devstack.Stack, n int) []*localproc.Process {
	t.Helper()
	var out []*localproc.Process
	for i := range n {
		id := "config-" + string(rune('a'+i))
		p, err := localproc.Start(context.Background(), id, filepath.Join(bin, "ambit-config"), []string{
			"--insecure-loopback", "--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--replica-id=" + id, "--election-ttl=2s",
			"--etcd-endpoints=" + strings.Join(s.EtcdEndpoints(), ","), "--nats-url=" + s.NATSURL(),
		}, t.TempDir(), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Errorf("stop %s: %v", id, err)
			}
		})
		out = append(out, p)
	}
	return out
}

// Result is one ambitctl run.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Ambitctl runs ambitctl against the given config replicas.
func Ambitctl(t testing.TB, bin string, replicas []*localproc.Process, args ...string) Result {
	t.Helper()
	var servers []string
	for _, p := range replicas {
		if !p.Exited() {
			servers = append(servers, p.Addr("grpc"))
		}
	}
	return RunAmbitctl(t, bin, append([]string{"--insecure-loopback", "--server=" + strings.Join(servers, ",")}, args...)...)
}

// RunAmbitctl runs ambitctl with exactly these arguments.
func RunAmbitctl(t testing.TB, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "ambitctl"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("ambitctl %v: %v", args, err)
	}
	return r
}
