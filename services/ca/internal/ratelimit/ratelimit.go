// Package ratelimit holds one token bucket per caller identity, so one
// misbehaving node or workload cannot starve the CA for everyone else. A
// node's bucket must cover a burst of pods starting at once, hence the
// separate burst size. Buckets of callers idle for a while are dropped,
// which keeps memory bounded by the callers active recently.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// idleAfter is how long a full bucket is kept after its last use.
const idleAfter = 10 * time.Minute

// Limiter is a set of per-key token buckets. The zero rate disables it.
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	sweepAt time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// New returns a limiter allowing perSecond requests per key on average
// and burst at once. perSecond <= 0 allows everything.
func New(perSecond float64, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), now: now, buckets: map[string]*bucket{}}
}

// Allow takes a token from key's bucket and reports whether there was one.
func (l *Limiter) Allow(key string) bool {
	if l == nil || l.limit <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.sweepAt) {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweep drops buckets idle long enough to have refilled completely.
func (l *Limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) > idleAfter {
			delete(l.buckets, k)
		}
	}
	l.sweepAt = now.Add(time.Minute)
}

// Len is the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
