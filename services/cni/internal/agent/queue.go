package agent

import (
	"context"
	"sync"
)

// keyQueue hands pod keys to workers so that one key is never worked on
// by two workers at once (redirection and ZDS calls for one pod stay in
// order), while different pods proceed in parallel. A key added while it
// is being worked on is worked on again afterwards. Waiters registered
// with a key learn the outcome of the first run that starts after they
// registered, which is how an ADD waits for its pod's enrollment.
type keyQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	order   []string
	queued  map[string]bool
	running map[string]bool
	waiters map[string][]chan error // for the next run
	closed  bool
}

func newKeyQueue() *keyQueue {
	q := &keyQueue{queued: map[string]bool{}, running: map[string]bool{}, waiters: map[string][]chan error{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add schedules key; a non-nil done receives the result of its next run.
func (q *keyQueue) add(key string, done chan error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		if done != nil {
			done <- context.Canceled
		}
		return
	}
	if done != nil {
		q.waiters[key] = append(q.waiters[key], done)
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	if !q.running[key] {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// get blocks for the next key that is not running; ok=false after close.
func (q *keyQueue) get() (key string, waiters []chan error, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", nil, false
	}
	key, q.order = q.order[0], q.order[1:]
	delete(q.queued, key)
	q.running[key] = true
	waiters = q.waiters[key]
	delete(q.waiters, key)
	return key, waiters, true
}

// done finishes a run: waiters hear err, and a key re-added meanwhile is
// queued again.
func (q *keyQueue) done(key string, waiters []chan error, err error) {
	for _, w := range waiters {
		w <- err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, key)
	if q.queued[key] && !q.closed {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// close wakes the workers; pending waiters hear context.Canceled.
func (q *keyQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for k, ws := range q.waiters {
		for _, w := range ws {
			w <- context.Canceled
		}
		delete(q.waiters, k)
	}
	q.cond.Broadcast()
}
