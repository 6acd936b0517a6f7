package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Start starts cmd inside the namespace: the process is forked from a
// thread that has joined it, so it inherits the namespace (see the package
// doc for why not "ip netns exec"). Wait on cmd as usual.
//
// Linux sends SysProcAttr.Pdeathsig when the *thread* that forked the child
// exits, not the process. If cmd sets Pdeathsig, Start keeps the forking
// thread alive until the child exits, so the signal still means "the parent
// process died".
func (h *Handle) Start(cmd *exec.Cmd) error {
	started := make(chan error, 1)
	goDisposable(func() {
		if err := h.join(); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("netns %q: start %s: %w", h.label, cmd.Path, err)
			return
		}
		started <- nil
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig != 0 {
			waitExited(cmd.Process.Pid)
		}
	})
	return <-started
}

// waitExited blocks until the process pid has exited, without reaping it.
func waitExited(pid int) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // already gone
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// Run starts cmd inside the namespace and waits for it.
func (h *Handle) Run(cmd *exec.Cmd) error {
	if err := h.Start(cmd); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("netns %q: %s: %w", h.label, cmd.Path, err)
	}
	return nil
}

// CombinedOutput runs name with args inside the namespace and returns its
// stdout and stderr together; ctx kills the process.
func (h *Handle) CombinedOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := h.Run(cmd)
	return out.Bytes(), err
}
