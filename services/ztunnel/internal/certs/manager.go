package certs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/pkg/backoff"
)

// Defaults of Options.
const (
	DefaultRenewFraction = 0.5
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
)

// attemptTimeout bounds one CSR, so a CA replica that accepted the call but
// hangs does not stall an identity; the retry may reach another replica.
const attemptTimeout = 10 * time.Second

var (
	// ErrNotRetained: no workload on this node holds the identity (never
	// retained, or its last pod left). The node may not obtain it.
	ErrNotRetained = errors.New("identity is not retained by a workload on this node")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("certificate manager closed")
)

// Options configure a Manager.
type Options struct {
	// CA is a connection to the CA replicas that authenticates with the
	// node certificate (mTLS), e.g. cpdial.Dial(addrs,
	// cpdial.MTLS(cred.Source(), ...)). The caller owns it.
	CA grpc.ClientConnInterface
	// Trust supplies the trust bundles put into every identity's source;
	// NodeTrust(cred) for the node credential.
	Trust Trust
	// Validity is the certificate lifetime asked of the CA; 0 takes the
	// CA's default (24h).
	Validity time.Duration
	// RenewFraction is the part of a certificate's lifetime after which it
	// is renewed; default 0.5 (half-life, as Istio).
	RenewFraction float64
	// MinBackoff and MaxBackoff bound the jittered delay between retries of
	// a failed CSR; defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
	// MeterProvider defaults to a no-op one.
	MeterProvider metric.MeterProvider
}

func (o *Options) normalize() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = noop.NewMeterProvider()
	}
	if o.RenewFraction == 0 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	var errs []error
	if o.CA == nil {
		errs = append(errs, errors.New("no CA connection"))
	}
	if o.Trust == nil {
		errs = append(errs, errors.New("no trust bundle source"))
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		errs = append(errs, fmt.Errorf("renew fraction %v is not between 0 and 1", o.RenewFraction))
	}
	if o.Validity < 0 || (o.Validity > 0 && o.Validity < time.Second) {
		errs = append(errs, fmt.Errorf("validity %s: want 0 (CA default) or at least 1s (the CA API counts seconds)", o.Validity))
	}
	if o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		errs = append(errs, fmt.Errorf("backoff bounds %s..%s", o.MinBackoff, o.MaxBackoff))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// Manager obtains, caches and renews the certificates of the workload
// identities on this node. Safe for concurrent use.
type Manager struct {
	o   Options
	log *slog.Logger
	met *metrics

	ctx  context.Context // ends at Close; parent of every identity's loop
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.RWMutex // guards the fields below and entry.refs/cancel/dropErr
	closed  bool
	bundles []*x509bundle.Bundle
	entries map[string]*entry // by SPIFFE ID: hashing one string is cheaper than an Identity
	changed chan struct{}     // closed and replaced on every change, see Changed
}

// entry is one identity's certificate and the loop that keeps it.
type entry struct {
	id  spiffe.Identity
	src *spiffe.Source

	// Guarded by Manager.mu.
	refs    int
	cancel  context.CancelFunc // nil until the loop is started
	dropErr error              // why done was closed

	done chan struct{} // closed when the entry is dropped
	// kick asks the loop to cut a retry backoff short because a
	// connection waits for this identity's first certificate.
	kick chan struct{}

	// notAfter is the held certificate's expiry in Unix nanoseconds, 0
	// before the first: Get's lock-free fast path.
	notAfter atomic.Int64

	mu      sync.Mutex // guards st, waiters and changed
	st      certState
	waiters int           // Gets waiting for the first certificate
	changed chan struct{} // closed and replaced at the end of every attempt
}

// certState is an identity's certificate at one moment.
type certState struct {
	svid     *x509svid.SVID
	issued   time.Time // start of the renewal clock, see renewAt
	attempts uint64    // CSRs completed, successful or not
	lastErr  error     // of the last attempt; nil after a success
}

func (s certState) usable(now time.Time) bool {
	return s.svid != nil && now.Before(s.svid.Certificates[0].NotAfter)
}

// New returns a Manager and starts following opts.Trust. Close stops it.
func New(opts Options) (*Manager, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	trustChanged := opts.Trust.Changed()
	bundles, err := opts.Trust.Bundles()
	if err == nil {
		err = checkBundles(bundles)
	}
	if err != nil {
		return nil, fmt.Errorf("certs: trust bundles: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{
		o:       opts,
		log:     opts.Logger,
		ctx:     ctx,
		stop:    stop,
		bundles: bundles,
		entries: map[string]*entry{},
		changed: make(chan struct{}),
	}
	if m.met, err = newMetrics(opts.MeterProvider, m); err != nil {
		stop()
		return nil, fmt.Errorf("certs: metrics: %w", err)
	}
	m.wg.Go(func() { m.watchTrust(ctx, trustChanged) })
	return m, nil
}

// Close stops every renewal and the trust watch, and waits for them. The
// sources handed out keep their last certificate. Later calls fail with
// ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for id, e := range m.entries {
		delete(m.entries, id)
		m.dropLocked(e, ErrClosed)
	}
	m.mu.Unlock()
	m.stop()
	m.wg.Wait()
	return m.met.close()
}

// Retain records one more workload on this node with identity id (a ZDS
// add). It fetches nothing; see Prefetch and Get.
func (m *Manager) Retain(id spiffe.Identity) error {
	if id.Kind() != spiffe.KindWorkload {
		return fmt.Errorf("certs: %q is not a workload identity", id.String())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	e := m.entries[id.String()]
	if e == nil {
		src, err := spiffe.NewSource(nil, m.bundles...)
		if err != nil {
			return fmt.Errorf("certs: %w", err) // the bundles were validated when set
		}
		e = &entry{id: id, src: src, done: make(chan struct{}), kick: make(chan struct{}, 1), changed: make(chan struct{})}
		m.entries[id.String()] = e
		m.met.identities.Add(context.Background(), 1)
		m.notifyLocked()
	}
	e.refs++
	return nil
}

// Release undoes one Retain (a ZDS del). When the last workload of the
// identity is gone, its certificate is dropped and no longer renewed;
// pending Gets fail with ErrNotRetained.
func (m *Manager) Release(id spiffe.Identity) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[id.String()]
	if e == nil {
		m.log.Warn("release of a workload identity that is not retained", "identity", id.String())
		return
	}
	e.refs--
	if e.refs > 0 {
		return
	}
	delete(m.entries, id.String())
	m.dropLocked(e, ErrNotRetained)
	m.log.Info("dropped workload certificate: no workload of the identity left on the node", "identity", id.String())
}

func (m *Manager) dropLocked(e *entry, why error) {
	if e.cancel != nil {
		e.cancel()
	}
	e.dropErr = why
	close(e.done)
	m.met.identities.Add(context.Background(), -1)
	m.notifyLocked()
}

// Prefetch starts obtaining id's certificate in the background, so the
// first connection of a workload that just landed does not wait for it.
func (m *Manager) Prefetch(id spiffe.Identity) error {
	_, err := m.start(id)
	return err
}

// Get returns the source of id's certificate, for spiffe.ServerConfig and
// spiffe.ClientConfig. On first use it waits for the certificate: all
// concurrent callers share one CSR, and they fail together, with the CA's
// error, if that CSR fails (later calls wait for the retry). Once a
// certificate is held it returns at once, also while a renewal is pending
// or failing. The source stays current with renewals and trust bundle
// changes for as long as the identity is retained.
func (m *Manager) Get(ctx context.Context, id spiffe.Identity) (*spiffe.Source, error) {
	e, err := m.start(id)
	if err != nil {
		return nil, err
	}
	if na := e.notAfter.Load(); na != 0 && time.Now().UnixNano() < na {
		return e.src, nil
	}
	var baseline uint64
	for first := true; ; first = false {
		st, changed := e.state()
		if st.usable(time.Now()) {
			return e.src, nil
		}
		if first {
			baseline = st.attempts
			m.waiting(e, 1)
			defer m.waiting(e, -1)
		} else if st.attempts > baseline && st.lastErr != nil {
			return nil, fmt.Errorf("certs: certificate of %s: %w", id, st.lastErr)
		}
		select {
		case e.kick <- struct{}{}:
		default:
		}
		select {
		case <-changed:
		case <-e.done:
			return nil, fmt.Errorf("certs: certificate of %s: %w", id, e.dropErr)
		case <-ctx.Done():
			if st.lastErr != nil {
				return nil, fmt.Errorf("certs: waiting for the certificate of %s: %w (last CA error: %w)", id, ctx.Err(), st.lastErr)
			}
			return nil, fmt.Errorf("certs: waiting for the certificate of %s: %w", id, ctx.Err())
		}
	}
}

// waiting counts the Gets blocked on e's first certificate, for Status.
func (m *Manager) waiting(e *entry, delta int) {
	e.mu.Lock()
	e.waiters += delta
	e.mu.Unlock()
	m.notify()
}

// start returns id's entry with its loop running.
func (m *Manager) start(id spiffe.Identity) (*entry, error) {
	m.mu.RLock()
	e := m.entries[id.String()]
	running := e != nil && e.cancel != nil
	m.mu.RUnlock()
	if running {
		return e, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	e = m.entries[id.String()]
	if e == nil {
		return nil, fmt.Errorf("certs: %s: %w", id, ErrNotRetained)
	}
	if e.cancel == nil {
		ctx, cancel := context.WithCancel(m.ctx)
		e.cancel = cancel
		m.wg.Go(func() { m.maintain(ctx, e) })
	}
	return e, nil
}

// Changed returns a channel closed at the next change of any identity's
// certificate, of the set of identities or of the trust bundles, for
// parties that follow them (the admin config dump, tests). Take it before
// reading Status, so no change falls in between.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

func (m *Manager) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notifyLocked()
}

func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Status is one identity's certificate, for the admin config dump.
type Status struct {
	Identity spiffe.Identity `json:"identity"`
	// Workloads is how many workloads on the node hold the identity.
	Workloads int `json:"workloads"`
	// State is "pending" (no certificate yet), "valid" or "expired".
	State        string    `json:"state"`
	SerialNumber string    `json:"serialNumber,omitempty"`
	NotBefore    time.Time `json:"notBefore,omitzero"`
	NotAfter     time.Time `json:"notAfter,omitzero"`
	RenewAt      time.Time `json:"renewAt,omitzero"`
	// LastError is the last CSR's error; empty after a success.
	LastError string `json:"lastError,omitempty"`
	// Waiting counts connections waiting for the first certificate.
	Waiting int `json:"waiting,omitempty"`
}

// Status lists the retained identities and their certificates, sorted by
// identity.
func (m *Manager) Status() []Status {
	m.mu.RLock()
	entries := make([]*entry, 0, len(m.entries))
	refs := make(map[*entry]int, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
		refs[e] = e.refs
	}
	m.mu.RUnlock()
	now := time.Now()
	out := make([]Status, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		st, waiting := e.st, e.waiters
		e.mu.Unlock()
		s := Status{Identity: e.id, Workloads: refs[e], State: "pending", Waiting: waiting}
		if st.lastErr != nil {
			s.LastError = st.lastErr.Error()
		}
		if st.svid != nil {
			leaf := st.svid.Certificates[0]
			s.State = "valid"
			if !st.usable(now) {
				s.State = "expired"
			}
			s.SerialNumber = leaf.SerialNumber.Text(16)
			s.NotBefore, s.NotAfter = leaf.NotBefore, leaf.NotAfter
			s.RenewAt = renewAt(st.issued, leaf.NotAfter, m.o.RenewFraction)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Identity.String(), b.Identity.String()) })
	return out
}

func (e *entry) state() (certState, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st, e.changed
}

// finish records the end of an attempt and wakes the waiters.
func (e *entry) finish(update func(*certState)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.st.attempts++
	update(&e.st)
	close(e.changed)
	e.changed = make(chan struct{})
}

// renewAt is when a certificate obtained at issued is due for renewal. The
// clock starts when it was requested, not at NotBefore: the CA backdates
// NotBefore for clock skew (a minute), which would make short-lived
// certificates due at once.
func renewAt(issued, notAfter time.Time, fraction float64) time.Time {
	return issued.Add(time.Duration(fraction * float64(notAfter.Sub(issued))))
}

// maintain keeps e's certificate until ctx ends: the first CSR at once,
// then a renewal at RenewFraction of each certificate's lifetime, every
// failed CSR retried after a jittered backoff.
func (m *Manager) maintain(ctx context.Context, e *entry) {
	log := m.log.With("identity", e.id.String())
	bo := backoff.Backoff{Min: m.o.MinBackoff, Max: m.o.MaxBackoff}
	for {
		st, _ := e.state()
		renewal := st.svid != nil
		if renewal {
			at := renewAt(st.issued, st.svid.Certificates[0].NotAfter, m.o.RenewFraction)
			if !sleepUntil(ctx, at) {
				return
			}
		}
		start := time.Now()
		svid, err := m.request(ctx, e.id)
		if ctx.Err() != nil {
			return
		}
		m.met.request(renewal, err, time.Since(start))
		if err != nil {
			e.finish(func(s *certState) { s.lastErr = err })
			m.notify()
			wait := bo.Next()
			if renewal && st.usable(time.Now()) {
				log.Warn("renewing the workload certificate failed; serving the current one meanwhile",
					"retry_in", wait, "not_after", st.svid.Certificates[0].NotAfter, "error", err)
			} else {
				log.Warn("obtaining the workload certificate failed", "retry_in", wait, "error", err)
			}
			if !e.backoff(ctx, wait, start.Add(m.o.MinBackoff)) {
				return
			}
			continue
		}
		bo.Reset()
		issued := start
		if nb := svid.Certificates[0].NotBefore; nb.After(issued) {
			issued = nb
		}
		if err := e.src.SetSVID(svid); err != nil {
			// caclient returns complete SVIDs; this cannot happen.
			log.Error("installing the workload certificate failed", "error", err)
		}
		e.finish(func(s *certState) { s.svid, s.issued, s.lastErr = svid, issued, nil })
		e.notAfter.Store(svid.Certificates[0].NotAfter.UnixNano())
		m.notify()
		if _, err := spiffe.VerifyPeer(svid.Certificates, e.src, spiffe.AuthorizeIdentity(e.id)); err != nil {
			log.Warn("the workload certificate does not verify against the trust bundle; peers will refuse it", "error", err)
		}
		what := "obtained workload certificate"
		if renewal {
			what = "renewed workload certificate"
		}
		log.Info(what, "not_after", svid.Certificates[0].NotAfter,
			"renew_at", renewAt(issued, svid.Certificates[0].NotAfter, m.o.RenewFraction))
	}
}

// request makes one CSR for id, impersonating it with the node credential.
func (m *Manager) request(ctx context.Context, id spiffe.Identity) (*x509svid.SVID, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	svid, err := caclient.Certificate(ctx, m.o.CA, id, true, m.o.Validity)
	if err != nil {
		return nil, err
	}
	if svid.ID != id.ID() {
		return nil, fmt.Errorf("the CA issued %s, not %s", svid.ID, id)
	}
	if notAfter := svid.Certificates[0].NotAfter; !time.Now().Before(notAfter) {
		return nil, fmt.Errorf("the CA issued a certificate that expired at %s", notAfter.UTC().Format(time.RFC3339))
	}
	return svid, nil
}

// backoff waits d, or less once a connection waits for the certificate
// (kick), but never past earliest; it reports false when ctx ended.
func (e *entry) backoff(ctx context.Context, d time.Duration, earliest time.Time) bool {
	// Waiters that kicked before this attempt ended got its error.
	select {
	case <-e.kick:
	default:
	}
	deadline := time.Now().Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-e.kick:
			if earliest.Before(deadline) {
				t.Reset(time.Until(earliest))
			}
		}
	}
}

// watchTrust installs every trust bundle change into every source.
func (m *Manager) watchTrust(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		changed = m.o.Trust.Changed()
		bundles, err := m.o.Trust.Bundles()
		if err != nil {
			m.log.Warn("reading the trust bundles failed; keeping the current ones", "error", err)
			continue
		}
		m.setBundles(bundles)
	}
}

func (m *Manager) setBundles(bundles []*x509bundle.Bundle) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || sameBundles(m.bundles, bundles) {
		return // e.g. the node certificate was renewed
	}
	if err := checkBundles(bundles); err != nil {
		m.log.Warn("ignoring unusable trust bundles; keeping the current ones", "error", err)
		return
	}
	m.bundles = bundles
	for _, e := range m.entries {
		if err := e.src.SetBundles(bundles...); err != nil {
			m.log.Error("installing the trust bundles failed", "identity", e.id.String(), "error", err)
		}
	}
	m.notifyLocked()
	roots := 0
	for _, b := range bundles {
		roots += len(b.X509Authorities())
	}
	m.log.Info("trust bundles applied to the workload certificates", "identities", len(m.entries), "trust_domains", len(bundles), "roots", roots)
}

// checkBundles refuses what spiffe.Source would, and no bundle at all,
// with which no peer could ever be verified.
func checkBundles(bundles []*x509bundle.Bundle) error {
	if len(bundles) == 0 {
		return errors.New("no trust bundle")
	}
	_, err := spiffe.NewSource(nil, bundles...)
	return err
}

// sleepUntil waits until t or ctx ends; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
