// Package backoff is the one retry delay every Ambit client uses: it
// doubles from Min to Max and every delay is jittered to a uniform value
// in [d/2, d], so replicas, nodes or identities that failed together
// (a control-plane restart) come back apart instead of in a herd.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a jittered exponential delay. The zero value of cur starts
// at Min; it is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the delay before the next attempt and doubles the next one.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.Max)
	return Jitter(d)
}

// Reset starts over at Min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Jitter returns a uniform duration in [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx ends, returning ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
