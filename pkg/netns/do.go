package netns

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Do runs fn on a fresh OS thread that has joined the namespace, and returns
// fn's error. Only fn's own goroutine is inside the namespace: goroutines fn
// starts run on other threads, in the process's namespace. Sockets fn creates
// stay in the namespace after Do returns. A panic in fn is re-raised in the
// caller's goroutine.
func (h *Handle) Do(fn func() error) error {
	type outcome struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan outcome, 1)
	goDisposable(func() {
		var out outcome
		defer func() { done <- out }()
		defer func() {
			if p := recover(); p != nil {
				out = outcome{panicked: true, panicVal: p}
			}
		}()
		if err := h.join(); err != nil {
			out.err = err
			return
		}
		out.err = fn()
	})
	out := <-done
	if out.panicked {
		panic(out.panicVal)
	}
	return out.err
}

// join moves the calling thread into the namespace. Call it only from
// goDisposable: the thread must never run anything else afterwards.
func (h *Handle) join() error {
	err := h.withFd(func(fd int) error { return unix.Setns(fd, unix.CLONE_NEWNET) })
	if err != nil {
		return fmt.Errorf("netns %q: setns: %w", h.label, err)
	}
	return nil
}
