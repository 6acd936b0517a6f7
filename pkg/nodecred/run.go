package nodecred

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/pkg/backoff"
)

// persistTimeout bounds waiting for another agent's lock on Dir when
// storing a change, even while shutting down.
const persistTimeout = 10 * time.Second

// Run keeps the credential current until ctx ends: it renews the
// certificate once RenewFraction of its lifetime has passed (through
// Istio's CreateCertificate, authenticated by the certificate itself) and
// installs every trust bundle the CA's TrustBundleService streams,
// acknowledging each, storing both in Dir. Failed calls are retried with
// jittered backoff. Run returns nil when ctx ends, and an error only when
// renewal can no longer succeed: the CA refuses it for good, or the
// certificate expired first (then the node needs a new join token).
func (c *Credential) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("nodecred: Run is already running")
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.watchBundles(ctx) })
	err := c.renewLoop(ctx)
	cancel()
	wg.Wait()
	return err
}

// renewAt is when a certificate obtained at issued is due for renewal. The
// clock starts at issue, not at NotBefore: CAs backdate NotBefore for clock
// skew (a minute, Ambit's), which would make short-lived certificates due
// at once.
func renewAt(issued, notAfter time.Time, fraction float64) time.Time {
	return issued.Add(time.Duration(fraction * float64(notAfter.Sub(issued))))
}

func (c *Credential) renewLoop(ctx context.Context) error {
	for {
		st := c.current()
		svid := st.svid
		at := renewAt(st.issued, svid.Certificates[0].NotAfter, c.o.RenewFraction)
		c.log.Debug("node certificate renewal scheduled", "at", at)
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := c.renew(ctx, svid); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// renew replaces svid. Each renewal dials anew, so the CA sees the
// certificate being renewed rather than one a long-lived connection was
// made with.
func (c *Credential) renew(ctx context.Context, old *x509svid.SVID) error {
	conn, err := c.dial(c.src)
	if err != nil {
		return err
	}
	defer conn.Close()
	notAfter := old.Certificates[0].NotAfter
	var svid *x509svid.SVID
	err = c.retry(ctx, "renew", notAfter, func(ctx context.Context) error {
		var err error
		svid, err = caclient.Certificate(ctx, conn, c.id, false, c.o.Validity)
		if err == nil && svid.ID != c.id.ID() {
			err = fmt.Errorf("the CA issued %s, not %s", svid.ID, c.id)
		}
		return err
	}, renewPermanent)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case !time.Now().Before(notAfter):
		return fmt.Errorf("nodecred: the certificate of %s expired at %s before it could be renewed (%w); the node needs a new join token",
			c.id, notAfter.UTC().Format(time.RFC3339), err)
	default:
		return fmt.Errorf("nodecred: renewing the certificate of %s: %w", c.id, err)
	}
	c.update(ctx, "certificate", func(st state) (state, bool) {
		st.svid, st.issued = svid, time.Now()
		return st, true
	})
	if _, err := spiffe.VerifyPeer(svid.Certificates, c.src, spiffe.AuthorizeIdentity(c.id)); err != nil {
		c.log.Warn("the renewed certificate does not verify against the installed trust bundle", "error", err)
	}
	c.log.Info("renewed node certificate", "not_after", svid.Certificates[0].NotAfter)
	return nil
}

// update applies one change: it stores the result in Dir, then installs
// it in the Source and wakes the waiters of Changed, so whoever sees the
// change also finds it stored. Changes are serialized, so the files never
// go back to an older state. change returns false when there is nothing to
// change.
func (c *Credential) update(ctx context.Context, what string, change func(state) (state, bool)) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	cur := c.current()
	next, ok := change(cur)
	if !ok {
		return
	}
	if next.svid != cur.svid || next.bundle != cur.bundle {
		if err := c.store(ctx, next.svid, next.bundle); err != nil {
			// In memory the change holds; a restart would find the
			// previous files, and the next change stores everything.
			c.log.Error("storing the node credential failed", "change", what, "dir", c.o.Dir, "error", err)
		}
	}
	// Both were validated: the SVID comes from caclient, complete, and
	// installBundle refuses empty bundles.
	if next.svid != cur.svid {
		if err := c.src.SetSVID(next.svid); err != nil {
			c.log.Error("installing the node certificate failed", "error", err)
		}
	}
	if next.bundle != cur.bundle {
		if err := c.src.SetBundles(next.bundle); err != nil {
			c.log.Error("installing the trust bundle failed", "error", err)
		}
	}
	c.mu.Lock()
	c.st = next
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Credential) store(ctx context.Context, svid *x509svid.SVID, b *x509bundle.Bundle) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistTimeout)
	defer cancel()
	unlock, err := lockDir(ctx, c.o.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	return persist(c.o.Dir, svid, b)
}

// errRenewed ends a bundle watch when the certificate was renewed, so the
// watch reconnects with the new certificate at once.
var errRenewed = errors.New("node certificate renewed")

// watchBundles follows the CA's trust bundle until ctx ends.
func (c *Credential) watchBundles(ctx context.Context) {
	bo := backoff.Backoff{Min: c.o.MinBackoff, Max: c.o.MaxBackoff}
	for {
		received, err := c.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if received || errors.Is(err, errRenewed) {
			bo.Reset()
		}
		if errors.Is(err, errRenewed) {
			c.log.Debug("reconnecting the trust bundle watch with the renewed certificate")
			continue
		}
		wait := bo.Next()
		c.log.Warn("trust bundle watch ended; reconnecting", "retry_in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// watchOnce runs one Watch stream; received reports whether it delivered
// anything.
func (c *Credential) watchOnce(ctx context.Context) (received bool, err error) {
	conn, err := c.dial(c.src)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	start := c.current().svid
	wg.Go(func() { c.cancelOnRenewal(sctx, cancel, start) })

	cause := func(err error) error {
		if errors.Is(context.Cause(sctx), errRenewed) {
			return errRenewed
		}
		return err
	}
	stream, err := cav1.NewTrustBundleServiceClient(conn).Watch(sctx)
	if err != nil {
		return false, cause(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, cause(err)
		}
		received = true
		c.installBundle(ctx, resp.GetBundle())
		if v := c.BundleVersion(); v > 0 {
			if err := stream.Send(&cav1.WatchRequest{AckVersion: v}); err != nil {
				return received, cause(err)
			}
		}
	}
}

// cancelOnRenewal cancels ctx once the certificate is no longer start.
func (c *Credential) cancelOnRenewal(ctx context.Context, cancel context.CancelCauseFunc, start *x509svid.SVID) {
	for {
		c.mu.Lock()
		ch, cur := c.changed, c.st.svid
		c.mu.Unlock()
		if cur != start {
			cancel(errRenewed)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// installBundle installs a bundle from the CA if it is newer than the
// installed one. A bundle that cannot be used is logged and skipped (and
// not acknowledged).
func (c *Credential) installBundle(ctx context.Context, pb *cav1.TrustBundle) {
	b, err := caclient.BundleFromProto(pb)
	switch {
	case err != nil:
	case b.TrustDomain() != c.o.TrustDomain:
		err = fmt.Errorf("bundle of trust domain %q, want %q", b.TrustDomain().Name(), c.o.TrustDomain.Name())
	case b.Empty():
		err = errors.New("bundle without roots")
	}
	if err != nil {
		c.log.Warn("ignoring a trust bundle from the CA", "version", pb.GetVersion(), "error", err)
		return
	}
	v := pb.GetVersion()
	installed := false
	c.update(ctx, "bundle", func(st state) (state, bool) {
		if v <= st.version {
			return st, false // a replica that lags, or the same bundle again after a reconnect
		}
		st.version = v
		if !b.Equal(st.bundle) {
			st.bundle, installed = b, true
		} // else the version is news, the roots are not
		return st, true
	})
	if !installed {
		return
	}
	c.log.Info("installed trust bundle", "version", v, "roots", len(b.X509Authorities()))
	if _, err := spiffe.VerifyPeer(c.SVID().Certificates, b, spiffe.AuthorizeIdentity(c.id)); err != nil {
		c.log.Warn("the node certificate does not verify against the new trust bundle; peers will refuse it", "version", v, "error", err)
	}
}

// retry calls f until it succeeds, permanent says its error is final,
// deadline (if set) passes or ctx ends, waiting a jittered, growing delay
// between attempts. It returns the last error.
func (c *Credential) retry(ctx context.Context, what string, deadline time.Time, f func(context.Context) error, permanent func(error) bool) error {
	bo := backoff.Backoff{Min: c.o.MinBackoff, Max: c.o.MaxBackoff}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || permanent(err) {
			return err
		}
		wait := bo.Next()
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return err
			}
			wait = min(wait, left)
		}
		c.log.Warn("call to the CA failed; retrying", "call", what, "attempt", attempt, "retry_in", wait, "error", err)
		if backoff.Sleep(ctx, wait) != nil {
			return err
		}
	}
}

// joinPermanent: a token refused (PermissionDenied), a malformed request,
// or a response that is not a usable credential will not get better.
func joinPermanent(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return true
	}
	return !transient(st.Code())
}

// renewPermanent is joinPermanent, except that Unauthenticated is retried
// while the certificate is valid: during a root rotation a CA replica may
// briefly lack the root of a freshly issued certificate.
func renewPermanent(err error) bool {
	if status.Code(err) == codes.Unauthenticated {
		return false
	}
	return joinPermanent(err)
}

func transient(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}
