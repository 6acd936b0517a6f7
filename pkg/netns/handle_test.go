package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateOpenDelete(t *testing.T) {
	requireRoot(t)
	fdsBefore := openNetnsFds(t)
	name := uniqueName(t, "life")

	h, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if h.Name() != name || h.Path() != filepath.Join(RunDir, name) {
		t.Errorf("Name, Path = %q, %q", h.Name(), h.Path())
	}
	if !strings.Contains(ipNetnsList(t), name) {
		t.Errorf("ip netns list does not show %s", name)
	}
	if _, err := Create(name); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create of an existing name: got %v, want fs.ErrExist", err)
	}

	byName, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	byPath, err := Open(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	if byPath.Name() != name {
		t.Errorf("Open(path).Name() = %q, want %q", byPath.Name(), name)
	}
	for _, other := range []*Handle{byName, byPath} {
		if same, err := h.Same(other); err != nil || !same {
			t.Errorf("Same(%s) = %v, %v; want true", other.Path(), same, err)
		}
	}
	host, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if same, err := h.Same(host); err != nil || same {
		t.Errorf("new namespace Same as host = %v, %v", same, err)
	}

	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mount point still there after Delete: %v", err)
	}
	if m := mountsUnder(t, RunDir, name); len(m) != 0 {
		t.Errorf("mounts left after Delete: %v", m)
	}
	if err := Delete(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Delete: got %v, want fs.ErrNotExist", err)
	}
	// The handle outlives the name.
	if _, err := h.Inode(); err != nil {
		t.Errorf("Inode after Delete: %v", err)
	}

	for _, c := range []*Handle{h, byName, byPath, host} {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	if _, err := h.Inode(); !errors.Is(err, ErrClosed) {
		t.Errorf("Inode after Close: got %v, want ErrClosed", err)
	}
	if err := h.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: got %v, want ErrClosed", err)
	}
	if got := openNetnsFds(t); got != fdsBefore {
		t.Errorf("netns descriptors open: %d, before: %d", got, fdsBefore)
	}
}

func TestOpenRejectsOtherFiles(t *testing.T) {
	requireRoot(t)
	for _, path := range []string{"/proc/self/ns/uts", "/etc/hostname", "/nonexistent/x"} {
		if h, err := Open(path); err == nil {
			h.Close()
			t.Errorf("Open(%s) succeeded", path)
		}
	}
	if _, err := Open("bad/../name"); err == nil {
		t.Error("Open of a traversing path succeeded")
	}
	if _, err := Create("../escape"); err == nil {
		t.Error("Create with a slash succeeded")
	}
}

func TestFromFd(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "fd")
	f, err := os.Open(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	byFd, err := FromFd(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer byFd.Close()
	if same, err := h.Same(byFd); err != nil || !same {
		t.Errorf("Same = %v, %v", same, err)
	}
	// Path must name the namespace for another process, as CNI_NETNS.
	ino, _ := h.Inode()
	out, err := exec.Command("stat", "-L", "-c", "%i", byFd.Path()).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(ino) {
		t.Errorf("stat -L %s = %q, %v; want inode %d", byFd.Path(), out, err, ino)
	}
	if _, err := FromFd(int(os.Stdin.Fd())); err == nil {
		t.Error("FromFd(stdin) succeeded")
	}
}

func TestIPNetnsExecSeesCreatedNamespace(t *testing.T) {
	requireRoot(t)
	h := createNetns(t, "ipexec")
	ino, err := h.Inode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(testContext(t), "ip", "netns", "exec", h.Name(), "readlink", "/proc/self/ns/net").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("net:[%d]", ino); got != want {
		t.Errorf("ip netns exec sees %s, want %s", got, want)
	}
}

func TestRunDirIsSharedMount(t *testing.T) {
	requireRoot(t)
	createNetns(t, "shared")
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == RunDir && strings.Contains(line, "shared:") {
			return
		}
	}
	t.Errorf("%s is not a shared mount point, as iproute2 expects", RunDir)
}
