package netns

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// goDisposable runs fn on a new goroutine locked to an OS thread that the
// runtime throws away when fn returns, so fn may change the thread's
// namespaces freely. Never the main thread: the runtime cannot end it and
// parks it forever instead, which would pin whatever namespace fn joined
// and change what /proc/self/ns/net reports. If the goroutine lands there,
// it holds the main thread (so the retry cannot land there too), runs fn
// on another thread, and then releases the main thread untouched.
func goDisposable(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			done := make(chan struct{})
			goDisposable(func() {
				defer close(done)
				fn()
			})
			<-done
			runtime.UnlockOSThread()
			return
		}
		fn() // returns with the thread still locked: it is discarded
	}()
}
