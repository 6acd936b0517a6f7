package netns

import (
	"errors"
	"fmt"
	"sync"
)

// maxParallelUndo bounds concurrent link deletions. Each deletion waits for
// an RCU grace period in the kernel (tens of ms); concurrent ones share it.
const maxParallelUndo = 16

// undoStack records how to remove what a constructor made, so a failure
// half-way and Close both remove exactly that.
type undoStack struct {
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func() error
	// independent steps (deleting links and routes) may run concurrently
	// with each other; they all run before any ordered step.
	independent bool
}

// push records an ordered step; ordered steps run newest first.
func (u *undoStack) push(what string, fn func() error) {
	u.steps = append(u.steps, undoStep{what: what, fn: fn})
}

// pushIndependent records a step that may run concurrently with other
// independent steps, before all ordered ones: removing a link or route,
// which must happen while its namespace is still open.
func (u *undoStack) pushIndependent(what string, fn func() error) {
	u.steps = append(u.steps, undoStep{what: what, fn: fn, independent: true})
}

// run undoes every step of the stack; see runUndo.
func (u *undoStack) run() error { return runUndo(u) }

// runUndo undoes every step of the stacks, even when some fail: first all
// independent steps concurrently, then the ordered steps of each stack in
// the order given, newest first. It empties the stacks, so running them
// again does nothing.
func runUndo(stacks ...*undoStack) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, maxParallelUndo)
	)
	fail := func(s undoStep, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Errorf("undo %s: %w", s.what, err))
	}
	for _, u := range stacks {
		for _, s := range u.steps {
			if !s.independent {
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := s.fn(); err != nil {
					fail(s, err)
				}
			})
		}
	}
	wg.Wait()
	for _, u := range stacks {
		for i := len(u.steps) - 1; i >= 0; i-- {
			if s := u.steps[i]; !s.independent {
				if err := s.fn(); err != nil {
					fail(s, err)
				}
			}
		}
		u.steps = nil
	}
	return errors.Join(errs...)
}
