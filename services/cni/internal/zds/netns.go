package zds

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// FD is an open network namespace descriptor the caller owns, such as a
// *netns.Handle from github.com/ambitmesh/ambit/pkg/netns.
type FD interface {
	Fd() int
}

// nsRef is the server's own duplicate of a netns descriptor, shared by the
// set entry and the queued requests that will send it, and closed when the
// last of them lets go.
type nsRef struct {
	fd   int
	refs atomic.Int32
}

// dupNetns duplicates src's descriptor after checking it is a network
// namespace, so a wrong handle fails in Add instead of in ztunnel.
func dupNetns(src FD) (*nsRef, error) {
	fd := src.Fd()
	if fd < 0 {
		return nil, fmt.Errorf("netns descriptor is closed")
	}
	if err := checkNetns(fd); err != nil {
		return nil, err
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup netns fd %d: %w", fd, err)
	}
	r := &nsRef{fd: dup}
	r.refs.Store(1)
	return r, nil
}

// checkNetns reports whether fd is a network namespace. It asks nsfs
// (NS_GET_NSTYPE) rather than looking at /proc/self/fd names: an fd opened
// through a bind mount (/run/netns/<name>) is named by that path.
func checkNetns(fd int) error {
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("fd %d is not a network namespace (NS_GET_NSTYPE: %w)", fd, err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("fd %d is a namespace of type %#x, not a network namespace", fd, typ)
	}
	return nil
}

func (r *nsRef) acquire() { r.refs.Add(1) }

func (r *nsRef) release() {
	if r.refs.Add(-1) == 0 {
		unix.Close(r.fd)
	}
}
