package inpod

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketControl sets SO_MARK (and SO_REUSEPORT for listeners) before bind,
// the only moment SO_REUSEPORT can join a port group.
func socketControl(mark uint32, reusePort bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if reusePort {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
					serr = fmt.Errorf("set SO_REUSEPORT: %w", err)
					return
				}
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
				serr = fmt.Errorf("set SO_MARK %#x: %w", mark, err)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
