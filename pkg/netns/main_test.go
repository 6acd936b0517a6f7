package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requireRoot skips tests that create namespaces, links or mounts.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, links and mounts under /run/netns")
	}
}

// testContext is bounded so a stuck kernel wait fails the test instead of
// hanging the package.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName returns a netns name no other test run uses.
func uniqueName(t *testing.T, what string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "ambittest-" + hex.EncodeToString(b[:]) + "-" + what
}

// createNetns makes a named namespace removed at the end of the test.
func createNetns(t *testing.T, what string) *Handle {
	t.Helper()
	h, err := Create(uniqueName(t, what))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Delete(h.Name()) //nolint:errcheck // the test may have deleted it
		h.Close()
	})
	return h
}

// hostSnapshot captures the host namespace's links, addresses and routes.
func hostSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-o", "link", "show"},
		{"-o", "addr", "show"},
		{"route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
	} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		b.WriteString("$ ip " + strings.Join(args, " ") + "\n")
		b.Write(out)
	}
	return b.String()
}

// runNetns lists the names under RunDir that start with prefix.
func runNetns(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(RunDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// ipNetnsList returns `ip netns list` output.
func ipNetnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

// openNetnsFds counts this process's descriptors that refer to namespaces
// (nsfs files, however they were opened), to catch leaked handles.
func openNetnsFds(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		var fs unix.Statfs_t
		if unix.Statfs(filepath.Join("/proc/self/fd", fd.Name()), &fs) == nil && fs.Type == unix.NSFS_MAGIC {
			n++
		}
	}
	return n
}

// mountsUnder lists mount points below dir whose last element starts with prefix.
func mountsUnder(t *testing.T, dir, prefix string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) > 4 && filepath.Dir(fields[4]) == dir && strings.HasPrefix(filepath.Base(fields[4]), prefix) {
			found = append(found, fields[4])
		}
	}
	return found
}

// threadNetns returns the "net:[N]" link of the calling thread.
func threadNetns(t *testing.T) string {
	link, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Error(err)
	}
	return link
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
