package run

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalError is the cancellation cause of a context cancelled by a
// shutdown signal; context.Cause returns it.
type SignalError struct {
	Signal os.Signal
}

func (e SignalError) Error() string { return fmt.Sprintf("received %v", e.Signal) }

// NotifyShutdown returns a context cancelled (with a SignalError cause)
// on the first of sigs, SIGINT and SIGTERM when none are given. Every
// further signal calls force, which in a binary exits at once so an
// operator can cut a slow shutdown short.
//
// While the returned stop function has not been called, the signals do
// not terminate the process. stop unregisters them, cancels the context
// and waits for the watcher goroutine to finish.
func NotifyShutdown(parent context.Context, force func(os.Signal), sigs ...os.Signal) (ctx context.Context, stop func()) {
	if len(sigs) == 0 {
		sigs = []os.Signal{os.Interrupt, syscall.SIGTERM}
	}
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		received := 0
		for {
			select {
			case sig := <-ch:
				received++
				if received == 1 {
					cancel(SignalError{Signal: sig})
				} else if force != nil {
					force(sig)
				}
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(quit)
			<-done
			cancel(context.Canceled)
		})
	}
}

// exitCode is the conventional status of a process ended by sig.
func exitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
