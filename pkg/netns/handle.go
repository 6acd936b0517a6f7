package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by operations on a Handle after Close.
var ErrClosed = errors.New("netns handle closed")

// Handle is an open file descriptor of a network namespace. Holding it keeps
// the namespace alive even if its name is deleted, and it always refers to
// the same namespace, unlike a path. A Handle is safe for concurrent use.
type Handle struct {
	name  string // set for namespaces under RunDir
	path  string // what was opened; /proc/<pid>/fd/<n> for adopted fds
	label string // how errors name the namespace

	mu     sync.Mutex
	file   *os.File
	closed bool
}

// Create makes a new network namespace bind-mounted at RunDir/name and
// returns a handle to it. It fails if the name already exists, so it never
// adopts someone else's namespace.
func Create(name string) (*Handle, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	if err := prepareRunDir(); err != nil {
		return nil, fmt.Errorf("netns %q: create: %w", name, err)
	}
	path := filepath.Join(RunDir, name)
	mountPoint, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("netns %q: create mount point: %w", name, err)
	}
	mountPoint.Close()
	if err := mountNewNetns(path); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("netns %q: create: %w", name, err)
	}
	h, err := Open(name)
	if err != nil {
		return nil, errors.Join(err, Delete(name))
	}
	return h, nil
}

// mountNewNetns unshares a new network namespace on a dedicated thread and
// bind-mounts it at path, on a thread that is discarded afterwards.
func mountNewNetns(path string) error {
	errc := make(chan error, 1)
	goDisposable(func() {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount: %w", err)
			return
		}
		errc <- nil
	})
	return <-errc
}

// Open opens a network namespace by name (under RunDir) or by path (anything
// containing a slash, e.g. /proc/<pid>/ns/net).
func Open(nameOrPath string) (*Handle, error) {
	h := &Handle{path: nameOrPath, label: nameOrPath}
	if !strings.Contains(nameOrPath, "/") {
		if err := validateName(nameOrPath); err != nil {
			return nil, err
		}
		h.name = nameOrPath
		h.path = filepath.Join(RunDir, nameOrPath)
	} else if dir, base := filepath.Split(filepath.Clean(nameOrPath)); filepath.Clean(dir) == RunDir {
		h.name = base
		h.label = base
	}
	f, err := os.Open(h.path)
	if err != nil {
		return nil, fmt.Errorf("netns %q: open: %w", h.label, err)
	}
	if err := checkNetns(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns %q: open: %w", h.label, err)
	}
	h.file = f
	return h, nil
}

// FromFd returns a handle on a duplicate of fd, for namespaces known only by
// a descriptor (one received over ZDS). The caller keeps ownership of fd.
// Path returns /proc/<pid>/fd/<dup>, usable by child processes (CNI_NETNS)
// while the handle is open.
func FromFd(fd int) (*Handle, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns fd %d: dup: %w", fd, err)
	}
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), dup)
	f := os.NewFile(uintptr(dup), path)
	if err := checkNetns(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns fd %d: %w", fd, err)
	}
	return &Handle{path: path, label: fmt.Sprintf("fd %d", fd), file: f}, nil
}

// checkNetns rejects files that are not network namespaces.
func checkNetns(f *os.File) error {
	var typ int
	err := withFd(f, func(fd int) error {
		var err error
		typ, err = unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
		return err
	})
	if err != nil {
		return fmt.Errorf("not a namespace: %w", err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("namespace type %#x is not a network namespace", typ)
	}
	return nil
}

// Delete removes the name of a namespace created by Create (or "ip netns
// add"). The namespace itself disappears once no handle, socket or process
// holds it. It returns an error wrapping fs.ErrNotExist if there is no such name.
func Delete(name string) error {
	if err := validateName(name); err != nil {
		return err
	}
	path := filepath.Join(RunDir, name)
	// MNT_DETACH as iproute2 does: a mount still in use by a process that
	// entered it by path must not make deletion fail.
	unmountErr := unix.Unmount(path, unix.MNT_DETACH)
	if unmountErr != nil && !errors.Is(unmountErr, unix.EINVAL) && !errors.Is(unmountErr, unix.ENOENT) {
		return fmt.Errorf("netns %q: delete: unmount: %w", name, unmountErr)
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("netns %q: delete: %w", name, fs.ErrNotExist)
		}
		return fmt.Errorf("netns %q: delete: %w", name, err)
	}
	return nil
}

// Name is the namespace's name under RunDir, or "" if it has none.
func (h *Handle) Name() string { return h.name }

// Path is a path naming the namespace: RunDir/<name>, the path it was opened
// from, or /proc/<pid>/fd/<n> for handles made by FromFd.
func (h *Handle) Path() string { return h.path }

// String names the namespace for logs.
func (h *Handle) String() string { return h.label }

// Fd returns the namespace descriptor, valid until Close; for sending it
// (SCM_RIGHTS) or passing it to netlink. Returns -1 after Close.
func (h *Handle) Fd() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return -1
	}
	return int(h.file.Fd())
}

// Inode returns the namespace's inode number, the "net:[N]" id shown by
// /proc/<pid>/ns/net and lsns.
func (h *Handle) Inode() (uint64, error) {
	st, err := h.stat()
	if err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Same reports whether both handles refer to the same namespace.
func (h *Handle) Same(other *Handle) (bool, error) {
	a, err := h.stat()
	if err != nil {
		return false, err
	}
	b, err := other.stat()
	if err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

func (h *Handle) stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := h.withFd(func(fd int) error { return unix.Fstat(fd, &st) })
	if err != nil {
		return st, fmt.Errorf("netns %q: stat: %w", h.label, err)
	}
	return st, nil
}

// Close releases the descriptor. It does not delete the namespace's name.
// Closing twice is not an error.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if err := h.file.Close(); err != nil {
		return fmt.Errorf("netns %q: close: %w", h.label, err)
	}
	return nil
}

// withFd runs fn with the raw descriptor, which stays open until fn returns
// even if Close races with it.
func (h *Handle) withFd(fn func(fd int) error) error {
	h.mu.Lock()
	f, closed := h.file, h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := withFd(f, fn)
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return err
}

func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return err
	}
	return fnErr
}
