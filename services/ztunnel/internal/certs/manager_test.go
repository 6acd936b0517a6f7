package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait for an event; tests never sleep to
// synchronize.
const waitTimeout = 15 * time.Second

func workload(t testing.TB, ns, sa string) spiffe.Identity {
	t.Helper()
	id, err := spiffe.NewWorkload(spiffe.DefaultTrustDomain(), ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newManager(t testing.TB, ca *fakeCA, trust Trust, edit func(*Options)) *Manager {
	t.Helper()
	o := Options{CA: ca.conn, Trust: trust, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	if edit != nil {
		edit(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// waitFor waits on m.Changed until cond holds.
func waitFor(t *testing.T, m *Manager, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		ch := m.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func get(t testing.TB, m *Manager, id spiffe.Identity) *spiffe.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	src, err := m.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return src
}

func serial(t *testing.T, src *spiffe.Source) *big.Int {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber
}

func TestGetIssuesImpersonatedCertificate(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	src := get(t, m, web)
	if got, err := src.Identity(); err != nil || got != web {
		t.Fatalf("source holds %v (%v), want %s", got, err, web)
	}
	svid, _ := src.GetX509SVID()
	if _, err := spiffe.VerifyPeer(svid.Certificates, src, spiffe.AuthorizeIdentity(web)); err != nil {
		t.Errorf("certificate does not verify against the source's own bundle: %v", err)
	}
	if r := ca.next(t); r.id != web || r.err != nil {
		t.Errorf("CA saw %+v, want one granted request impersonating %s", r, web)
	}
	if again := get(t, m, web); again != src {
		t.Error("a second Get returned another source")
	}
	if n := ca.count(web); n != 1 {
		t.Errorf("CA got %d requests, want 1 (cached)", n)
	}
	st := m.Status()
	if len(st) != 1 || st[0].Identity != web || st[0].State != "valid" || st[0].Workloads != 1 || st[0].SerialNumber != serial(t, src).Text(16) {
		t.Errorf("Status = %+v", st)
	}
}

func TestConcurrentFirstGetsShareOneCSR(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	release := ca.hold()
	defer release()

	const n = 32
	var wg sync.WaitGroup
	srcs := make([]*spiffe.Source, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			srcs[i], errs[i] = m.Get(ctx, web)
		})
	}
	// The first CSR is held at the CA until every Get waits for it.
	waitFor(t, m, "every Get waits", func() bool { st := m.Status(); return len(st) == 1 && st[0].Waiting == n })
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || srcs[i] != srcs[0] {
			t.Fatalf("Get %d: %v, %p (first %p)", i, errs[i], srcs[i], srcs[0])
		}
	}
	if got := ca.count(web); got != 1 {
		t.Errorf("%d concurrent Gets made %d CSRs, want 1", n, got)
	}
}

func TestConcurrentGetsShareAFailure(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), func(o *Options) { o.MinBackoff, o.MaxBackoff = time.Hour, time.Hour })
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	release := ca.hold()
	defer release()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, errs[i] = m.Get(ctx, web)
		})
	}
	waitFor(t, m, "every Get waits", func() bool { st := m.Status(); return len(st) == 1 && st[0].Waiting == n })
	release()
	wg.Wait()
	for i, err := range errs {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("Get %d: %v, want the CA's PermissionDenied", i, err)
		}
	}
	if got := ca.count(web); got != 1 {
		t.Errorf("%d concurrent Gets made %d CSRs, want 1", n, got)
	}
}

func TestRenewsAtHalfLife(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	const validity = 2 * time.Second
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), func(o *Options) { o.Validity = validity })
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	src := get(t, m, web)
	ca.next(t)
	firstSerial := serial(t, src)
	svid, _ := src.GetX509SVID()
	notAfter := svid.Certificates[0].NotAfter // whole seconds: 1s < lifetime <= 2s

	renewal := ca.next(t)
	if renewal.err != nil || renewal.id != web {
		t.Fatalf("renewal: %+v", renewal)
	}
	// Half-life, measured from the request (NotBefore is backdated).
	halfLife := start.Add(notAfter.Sub(start) / 2)
	if renewal.at.Before(halfLife) || !renewal.at.Before(notAfter) {
		t.Errorf("renewed %s after the request, want from half-life %s until expiry %s",
			renewal.at.Sub(start), halfLife.Sub(start), notAfter.Sub(start))
	}
	waitFor(t, m, "the renewed certificate is served", func() bool { return serial(t, src).Cmp(firstSerial) != 0 })
	if got := serial(t, src); got.Cmp(renewal.serial) != 0 {
		t.Errorf("source serves %x, want the renewed %x", got, renewal.serial)
	}
	if again := get(t, m, web); again != src {
		t.Error("renewal replaced the source; TLS configs built on it would go stale")
	}
}

func TestFailedRenewalKeepsServingTheCurrentCertificate(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), func(o *Options) { o.Validity = 2 * time.Second })
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	src := get(t, m, web)
	ca.next(t)
	old := serial(t, src)
	unavailable := status.Error(codes.Unavailable, "CA replica down")
	ca.failNext(unavailable, unavailable, unavailable)

	for range 3 {
		if r := ca.next(t); status.Code(r.err) != codes.Unavailable {
			t.Fatalf("renewal attempt: %+v, want the injected failure", r)
		}
		// Meanwhile connections get the current certificate at once.
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Get must not wait at all
		got, err := m.Get(ctx, web)
		if err != nil || serial(t, got).Cmp(old) != 0 {
			t.Fatalf("Get during failing renewal: %v, want the current certificate", err)
		}
	}
	r := ca.next(t)
	if r.err != nil {
		t.Fatalf("retry after the failures: %v", r.err)
	}
	waitFor(t, m, "the renewed certificate is served", func() bool { return serial(t, src).Cmp(r.serial) == 0 })
	if st := m.Status(); st[0].LastError != "" {
		t.Errorf("LastError %q after a successful renewal", st[0].LastError)
	}
}

func TestFirstCertificateRetriedUntilTheCAGrantsIt(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	ca.failNext(status.Error(codes.Unavailable, "down"), status.Error(codes.ResourceExhausted, "busy"))
	var codesSeen []codes.Code
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, err := m.Get(ctx, web)
		cancel()
		if err == nil {
			break
		}
		codesSeen = append(codesSeen, status.Code(err))
		if len(codesSeen) > 2 {
			t.Fatalf("still failing after the injected errors: %v", err)
		}
	}
	if len(codesSeen) == 0 || codesSeen[0] != codes.Unavailable {
		t.Errorf("Gets failed with %v, want the CA's errors starting with Unavailable", codesSeen)
	}
	if got := ca.count(web); got != 3 {
		t.Errorf("CA got %d requests, want 3 (two failures, one success)", got)
	}
}

// A pod the CA does not know yet (its feed lags) is refused at first and
// granted on a retry.
func TestPermissionDeniedIsRetried(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := m.Get(ctx, web); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Get of an unassigned identity: %v, want PermissionDenied", err)
	}
	waitFor(t, m, "the failure is in Status", func() bool {
		st := m.Status()
		return len(st) == 1 && st[0].State == "pending" && st[0].LastError != ""
	})
	ca.assign(web)
	get(t, m, web)
}

func TestPrefetchObtainsBeforeTheFirstConnection(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Prefetch(web); !errors.Is(err, ErrNotRetained) {
		t.Errorf("Prefetch before Retain: %v, want ErrNotRetained", err)
	}
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	if err := m.Prefetch(web); err != nil {
		t.Fatal(err)
	}
	waitFor(t, m, "the prefetched certificate is held", func() bool {
		st := m.Status()
		return len(st) == 1 && st[0].State == "valid"
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a held certificate needs no waiting
	if _, err := m.Get(ctx, web); err != nil {
		t.Errorf("Get after Prefetch: %v", err)
	}
	if n := ca.count(web); n != 1 {
		t.Errorf("CA got %d requests, want 1", n)
	}
}

func TestReleaseStopsRenewal(t *testing.T) {
	ca := startFakeCA(t)
	web, db := workload(t, "ns1", "web"), workload(t, "ns1", "db")
	ca.assign(web, db)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), func(o *Options) { o.Validity = 2 * time.Second })
	for _, id := range []spiffe.Identity{web, web, db} { // two pods of web
		if err := m.Retain(id); err != nil {
			t.Fatal(err)
		}
	}
	get(t, m, web)
	get(t, m, db)

	m.Release(web) // one web pod left
	get(t, m, web)
	m.Release(web) // none left
	if _, err := m.Get(context.Background(), web); !errors.Is(err, ErrNotRetained) {
		t.Errorf("Get after the last Release: %v, want ErrNotRetained", err)
	}
	if st := m.Status(); len(st) != 1 || st[0].Identity != db {
		t.Errorf("Status after release = %+v, want only %s", st, db)
	}
	// db, issued about when web was, renews twice (two half-lives); web
	// would have renewed in that time had it not been released.
	webCount := ca.count(web)
	for ca.count(db) < 3 {
		ca.next(t)
	}
	if got := ca.count(web); got != webCount {
		t.Errorf("released identity was renewed: %d requests, had %d", got, webCount)
	}
	m.Release(web) // unbalanced: logged, harmless
}

func TestReleaseFailsPendingGets(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	release := ca.hold()
	defer release()
	errc := make(chan error, 1)
	go func() {
		_, err := m.Get(context.Background(), web)
		errc <- err
	}()
	ca.arrived(t, web)
	m.Release(web)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNotRetained) {
			t.Errorf("pending Get: %v, want ErrNotRetained", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("pending Get did not return on Release")
	}
}

func TestGetHonoursContext(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), nil)
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	release := ca.hold()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := m.Get(ctx, web)
		errc <- err
	}()
	ca.arrived(t, web)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v", err)
	}
}

func TestTrustBundleChangesReachEverySource(t *testing.T) {
	ca := startFakeCA(t)
	web, db, late := workload(t, "ns1", "web"), workload(t, "ns1", "db"), workload(t, "ns2", "late")
	ca.assign(web, db, late)
	trust := newFakeTrust(ca.root.Bundle())
	m := newManager(t, ca, trust, nil)
	for _, id := range []spiffe.Identity{web, db} {
		if err := m.Retain(id); err != nil {
			t.Fatal(err)
		}
	}
	srcs := []*spiffe.Source{get(t, m, web), get(t, m, db)}
	if err := handshake(srcs[0], web, srcs[1], db); err != nil {
		t.Fatalf("mTLS between two workload identities: %v", err)
	}

	// Root rotation, step 1: the new root joins the bundle.
	next := spiffetest.NewCA(t, ca.td)
	both := ca.root.Bundle()
	both.AddX509Authority(next.Root())
	trust.set(nil, both)
	roots := func(src *spiffe.Source) int {
		b, err := src.GetX509BundleForTrustDomain(ca.td)
		if err != nil {
			return 0
		}
		return len(b.X509Authorities())
	}
	waitFor(t, m, "both sources trust both roots", func() bool { return roots(srcs[0]) == 2 && roots(srcs[1]) == 2 })
	if err := m.Retain(late); err != nil {
		t.Fatal(err)
	}
	if got := roots(get(t, m, late)); got != 2 {
		t.Errorf("an identity retained after the change trusts %d roots, want 2", got)
	}

	// An unusable update and an unchanged one are ignored.
	trust.set(errors.New("node credential unreadable"))
	trust.set(nil, both)
	// Only a root that signed neither certificate: both sources must now
	// refuse each other, which proves verification reads the new bundle.
	trust.set(nil, next.Bundle())
	waitFor(t, m, "the old root is gone from every source", func() bool { return roots(srcs[0]) == 1 && roots(srcs[1]) == 1 })
	if err := handshake(srcs[0], web, srcs[1], db); err == nil {
		t.Error("handshake succeeded with certificates of a root no longer trusted")
	}
}

// TestRootRotation walks DESIGN §4's rotation with live sources: the new
// root joins the bundle, the CA signs with it, renewals move every identity
// over, the old root leaves; mTLS between the identities works at every
// step, without a restart.
func TestRootRotation(t *testing.T) {
	ca := startFakeCA(t)
	web, db := workload(t, "ns1", "web"), workload(t, "ns1", "db")
	ca.assign(web, db)
	trust := newFakeTrust(ca.root.Bundle())
	m := newManager(t, ca, trust, func(o *Options) { o.Validity = 2 * time.Second })
	for _, id := range []spiffe.Identity{web, db} {
		if err := m.Retain(id); err != nil {
			t.Fatal(err)
		}
	}
	webSrc, dbSrc := get(t, m, web), get(t, m, db)
	check := func(step string) {
		t.Helper()
		if err := handshake(webSrc, web, dbSrc, db); err != nil {
			t.Fatalf("%s: web serving db: %v", step, err)
		}
		if err := handshake(dbSrc, db, webSrc, web); err != nil {
			t.Fatalf("%s: db serving web: %v", step, err)
		}
	}
	check("before")

	next := spiffetest.NewCA(t, ca.td)
	both := ca.root.Bundle()
	both.AddX509Authority(next.Root())
	trust.set(nil, both)
	roots := func(src *spiffe.Source) int {
		b, err := src.GetX509BundleForTrustDomain(ca.td)
		if err != nil {
			return 0
		}
		return len(b.X509Authorities())
	}
	waitFor(t, m, "both roots are trusted", func() bool { return roots(webSrc) == 2 && roots(dbSrc) == 2 })
	check("both roots trusted")

	ca.setSigner(next)
	signedByNext := func(src *spiffe.Source) bool {
		svid, err := src.GetX509SVID()
		if err != nil {
			return false
		}
		_, err = spiffe.VerifyPeer(svid.Certificates, next.Bundle(), spiffe.AuthorizeMemberOf(ca.td))
		return err == nil
	}
	waitFor(t, m, "renewals moved both identities to the new root", func() bool { return signedByNext(webSrc) && signedByNext(dbSrc) })
	check("certificates from the new root")

	trust.set(nil, next.Bundle())
	waitFor(t, m, "the old root is gone", func() bool { return roots(webSrc) == 1 && roots(dbSrc) == 1 })
	check("old root removed")
}

// handshake runs an HBONE-style mTLS handshake with spiffe's configs: the
// server presents srvID's certificate, the client cliID's.
func handshake(srv *spiffe.Source, srvID spiffe.Identity, cli *spiffe.Source, cliID spiffe.Identity) error {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := tls.Server(a, spiffe.ServerConfig(srv, spiffe.AuthorizeIdentity(cliID)))
	c := tls.Client(b, spiffe.ClientConfig(cli, spiffe.AuthorizeIdentity(srvID)))
	errc := make(chan error, 1)
	go func() {
		err := s.Handshake()
		if err != nil {
			a.Close() // unblock the client
		}
		errc <- err
	}()
	cerr := c.Handshake()
	if cerr != nil {
		b.Close()
	}
	return errors.Join(cerr, <-errc)
}

func TestCloseStopsEverything(t *testing.T) {
	ca := startFakeCA(t)
	web, db := workload(t, "ns1", "web"), workload(t, "ns1", "db")
	ca.assign(web)
	m, err := New(Options{CA: ca.conn, Trust: newFakeTrust(ca.root.Bundle()), Validity: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	if err := m.Retain(db); err != nil {
		t.Fatal(err)
	}
	get(t, m, web)
	release := ca.hold()
	defer release()
	errc := make(chan error, 1)
	go func() {
		_, err := m.Get(context.Background(), db)
		errc <- err
	}()
	ca.arrived(t, db)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("pending Get on Close: %v, want ErrClosed", err)
	}
	if _, err := m.Get(context.Background(), web); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := m.Retain(web); !errors.Is(err, ErrClosed) {
		t.Errorf("Retain after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// goleak (TestMain) checks that no renewal loop survived.
}

func TestOptionsAndIdentitiesValidated(t *testing.T) {
	ca := startFakeCA(t)
	trust := newFakeTrust(ca.root.Bundle())
	bad := []Options{
		{Trust: trust},
		{CA: ca.conn},
		{CA: ca.conn, Trust: trust, RenewFraction: 1},
		{CA: ca.conn, Trust: trust, Validity: time.Millisecond},
		{CA: ca.conn, Trust: trust, MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{CA: ca.conn, Trust: newFakeTrust()}, // no bundle
	}
	for i, o := range bad {
		if m, err := New(o); err == nil {
			m.Close()
			t.Errorf("options %d accepted: %+v", i, o)
		}
	}
	m := newManager(t, ca, trust, nil)
	node, _ := spiffe.NewNode(ca.td, "node-a")
	for _, id := range []spiffe.Identity{{}, node} {
		if err := m.Retain(id); err == nil {
			t.Errorf("Retain(%q) accepted a non-workload identity", id.String())
		}
	}
}

func TestMetrics(t *testing.T) {
	ca := startFakeCA(t)
	web := workload(t, "ns1", "web")
	ca.assign(web)
	reader := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m := newManager(t, ca, newFakeTrust(ca.root.Bundle()), func(o *Options) { o.MeterProvider = mp })
	if err := m.Retain(web); err != nil {
		t.Fatal(err)
	}
	get(t, m, web)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			found[mt.Name] = true
			if mt.Name == MetricRequests {
				sum := mt.Data.(metricdata.Sum[int64])
				if len(sum.DataPoints) != 1 || sum.DataPoints[0].Value != 1 {
					t.Errorf("%s = %+v, want one initial ok request", MetricRequests, sum.DataPoints)
				}
			}
			if mt.Name == MetricEarliestExpiry {
				g := mt.Data.(metricdata.Gauge[float64])
				if len(g.DataPoints) != 1 || g.DataPoints[0].Value <= 0 {
					t.Errorf("%s = %+v, want the time left", MetricEarliestExpiry, g.DataPoints)
				}
			}
		}
	}
	for _, name := range []string{MetricIdentities, MetricRequests, MetricRequestDuration, MetricEarliestExpiry} {
		if !found[name] {
			t.Errorf("metric %s not exported", name)
		}
	}
}

// BenchmarkGet is the per-connection cost once the certificate is held.
func BenchmarkGet(b *testing.B) {
	ca := startFakeCA(b)
	ids := make([]spiffe.Identity, 16)
	m := newManager(b, ca, newFakeTrust(ca.root.Bundle()), nil)
	for i := range ids {
		ids[i] = workload(b, "ns1", fmt.Sprintf("sa-%d", i))
		ca.assign(ids[i])
		if err := m.Retain(ids[i]); err != nil {
			b.Fatal(err)
		}
		get(b, m, ids[i])
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Get(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
