package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// One key is never worked on by two workers at once, a key re-added while
// running runs again, and a waiter hears the run that started after it.
func TestKeyQueueExclusiveAndRerun(t *testing.T) {
	q := newKeyQueue()
	var running, maxRunning, runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				key, ws, ok := q.get()
				if !ok {
					return
				}
				n := running.Add(1)
				for {
					m := maxRunning.Load()
					if n <= m || maxRunning.CompareAndSwap(m, n) {
						break
					}
				}
				started <- struct{}{}
				<-release
				running.Add(-1)
				r := runs.Add(1)
				var err error
				if r == 2 {
					err = errors.New("second run failed")
				}
				q.done(key, ws, err)
			}
		})
	}
	first := make(chan error, 1)
	q.add("ns/p", first)
	<-started
	second := make(chan error, 1)
	q.add("ns/p", second) // while running: must run again, after
	q.add("ns/p", nil)
	release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatalf("first run: %v", err)
	}
	<-started
	release <- struct{}{}
	if err := <-second; err == nil {
		t.Fatal("the waiter did not hear the run after it")
	}
	if maxRunning.Load() != 1 || runs.Load() != 2 {
		t.Fatalf("max concurrent %d, runs %d", maxRunning.Load(), runs.Load())
	}
	pending := make(chan error, 1)
	q.close()
	q.add("x", pending)
	if err := <-pending; !errors.Is(err, context.Canceled) {
		t.Fatalf("after close: %v", err)
	}
	wg.Wait()
}
