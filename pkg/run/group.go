package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultShutdownTimeout bounds a shutdown when none is configured.
const DefaultShutdownTimeout = 15 * time.Second

// ErrShutdownTimeout is returned by Wait when members are still running
// at the shutdown deadline. It matches context.DeadlineExceeded too.
var ErrShutdownTimeout = fmt.Errorf("shutdown deadline exceeded: %w", context.DeadlineExceeded)

// ErrMemberExited reports a member that returned nil before the group was
// asked to stop: a server that quietly stops serving is a failure, and
// the process should exit (and be restarted) rather than run without it.
var ErrMemberExited = errors.New("exited before shutdown")

// GroupOptions configures a Group.
type GroupOptions struct {
	// ShutdownTimeout is how long members get, once the group stops, to
	// return. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives a line per member exit; nil discards them.
	Logger *slog.Logger
}

// Group runs long-lived members together. The first member to return, or
// the cancellation of the parent context (a signal), stops the group:
// every member's context is cancelled and Wait waits for them, for at
// most the shutdown timeout.
type Group struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	log     *slog.Logger
	unwatch func() bool // stops watching the parent context

	mu       sync.Mutex
	running  []string      // names of members still running
	stopping chan struct{} // closed when the group begins to stop
	deadline time.Time     // set when stopping is closed
	allDone  chan struct{} // closed when stopping and no member runs
	finished bool          // allDone is closed
	err      error         // first real error
}

// NewGroup returns a Group whose members run under a child of ctx.
func NewGroup(ctx context.Context, o GroupOptions) *Group {
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Group{
		timeout:  o.ShutdownTimeout,
		log:      o.Logger,
		stopping: make(chan struct{}),
		allDone:  make(chan struct{}),
	}
	g.ctx, g.cancel = context.WithCancelCause(context.WithValue(ctx, groupKey{}, g))
	g.unwatch = context.AfterFunc(ctx, func() { g.stop(context.Cause(ctx)) })
	return g
}

// Go starts a member. fn must return soon after its context is cancelled;
// returning nil or the context's error then counts as a clean stop. A
// member added after the group began to stop is not started.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isStopping() {
		g.log.Warn("group stopping, member not started", "member", name)
		return
	}
	g.running = append(g.running, name)
	go func() {
		g.exited(name, fn(g.ctx))
	}()
}

// exited records a member's return.
func (g *Group) exited(name string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.running, name); i >= 0 {
		g.running = slices.Delete(g.running, i, i+1)
	}
	if !g.isStopping() && g.ctx.Err() != nil {
		// The parent was cancelled and this member noticed before the
		// AfterFunc watching the parent ran: that is a stop, not a failure.
		g.stopLocked(context.Cause(g.ctx))
	}
	switch {
	case !g.isStopping():
		if err == nil {
			err = ErrMemberExited
		}
		g.log.Error("member failed, stopping", "member", name, "error", err)
		err = fmt.Errorf("%s: %w", name, err)
		g.recordLocked(err)
		g.stopLocked(err) // the other members see it as context.Cause
	case err != nil && !errors.Is(err, context.Canceled):
		g.log.Error("member failed during shutdown", "member", name, "error", err)
		g.recordLocked(fmt.Errorf("%s: %w", name, err))
	default:
		g.log.Info("member stopped", "member", name)
	}
	g.finishLocked()
}

// stop begins the shutdown because of cause (nil for a plain stop).
func (g *Group) stop(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked(cause)
}

func (g *Group) stopLocked(cause error) {
	if g.isStopping() {
		return
	}
	g.deadline = time.Now().Add(g.timeout)
	close(g.stopping)
	if cause == nil {
		cause = context.Canceled
	}
	g.cancel(cause)
	g.finishLocked()
}

// finishLocked closes allDone once the group is stopping and empty.
func (g *Group) finishLocked() {
	if g.isStopping() && len(g.running) == 0 && !g.finished {
		g.finished = true
		close(g.allDone)
	}
}

func (g *Group) isStopping() bool {
	select {
	case <-g.stopping:
		return true
	default:
		return false
	}
}

func (g *Group) recordLocked(err error) {
	if g.err == nil {
		g.err = err
	}
}

// Stop asks every member to return, as a signal would.
func (g *Group) Stop() { g.stop(nil) }

// Wait blocks until the group stops and all members have returned, or
// the shutdown deadline passes. It returns the first real error (members
// stopped by a signal or Stop are no error), joined with an error
// matching ErrShutdownTimeout that names the members still running if the
// deadline passed. A group without members returns nil at once.
func (g *Group) Wait() error {
	defer g.unwatch()
	g.mu.Lock()
	if len(g.running) == 0 {
		g.stopLocked(nil)
	}
	g.mu.Unlock()

	<-g.stopping
	g.mu.Lock()
	deadline := g.deadline
	g.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-g.allDone:
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.err
	case <-timer.C:
		g.mu.Lock()
		defer g.mu.Unlock()
		stuck := fmt.Errorf("%w: still running after %v: %v", ErrShutdownTimeout, g.timeout, g.running)
		g.log.Error("shutdown deadline exceeded", "members", g.running)
		return errors.Join(g.err, stuck)
	}
}

// groupKey marks a member context with its Group.
type groupKey struct{}

// ShutdownContext returns a context for a member's cleanup after its
// context was cancelled (draining connections, flushing): it is not
// cancelled with ctx but ends slightly before the group's shutdown
// deadline, so the member returns in time. Outside a Group it allows
// DefaultShutdownTimeout.
func ShutdownContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(DefaultShutdownTimeout)
	if g, ok := ctx.Value(groupKey{}).(*Group); ok {
		g.mu.Lock()
		if g.isStopping() {
			deadline = g.deadline
		} else {
			deadline = time.Now().Add(g.timeout)
		}
		g.mu.Unlock()
		deadline = deadline.Add(-min(g.timeout/10, time.Second))
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}
