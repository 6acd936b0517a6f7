package ca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// follower keeps a Source's bundle in step with TrustBundle.Watch and
// acknowledges every bundle once installed, as a proxy would.
type follower struct {
	version atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
}

func follow(t *testing.T, conn *grpc.ClientConn, src *spiffe.Source) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan struct{})}
	stream, err := cav1.NewTrustBundleServiceClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			var roots []*x509.Certificate
			for _, p := range resp.GetBundle().GetX509Authorities() {
				cs, err := keystore.ParseCertificates([]byte(p))
				if err != nil {
					return
				}
				roots = append(roots, cs...)
			}
			if err := src.SetBundles(x509bundle.FromX509Authorities(td, roots)); err != nil {
				return
			}
			v := resp.GetBundle().GetVersion()
			f.version.Store(v)
			if err := stream.Send(&cav1.WatchRequest{AckVersion: v}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { f.cancel(); <-f.done })
	return f
}

func roots(t *testing.T, src *spiffe.Source) []*x509.Certificate {
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	return b.X509Authorities()
}

// longConn is an mTLS connection kept open across all steps.
type longConn struct {
	conn *tls.Conn
	lis  net.Listener
	done chan struct{}
}

func newLongConn(t *testing.T, srv, cli *spiffe.Source, want spiffe.Identity) *longConn {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", spiffe.ServerConfig(srv, spiffe.AuthorizeWorkloads(td)))
	if err != nil {
		t.Fatal(err)
	}
	lc := &longConn{lis: lis, done: make(chan struct{})}
	go func() {
		defer close(lc.done)
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	lc.conn, err = tls.Dial("tcp", lis.Addr().String(), spiffe.ClientConfig(cli, spiffe.AuthorizeIdentity(want)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.conn.Close(); lis.Close(); <-lc.done })
	return lc
}

func (lc *longConn) ping() error {
	if _, err := lc.conn.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	_, err := io.ReadFull(lc.conn, b)
	return err
}

// TestRotation drives a root rotation through every step with two CA
// replicas, three bundle watchers and two workloads — one that moves to
// the new root early, one late — and checks mTLS between them (new
// handshakes both ways, a long-lived connection, a handshake loop running
// throughout) and the TLS connections to the CA at every step.
func TestRotation(t *testing.T) {
	h := newHarness(t)
	r1 := h.startCA("r1", nil)
	r2 := h.startCA("r2", nil)
	admin := h.admin(r1)
	rot := cav1.NewRotationServiceClient(admin)
	ctx := context.Background()

	nodeSVID := h.joinNode(admin, r1, "node-a")
	h.putPod("app", "old-1", "node-a", "old")
	h.putPod("app", "new-1", "node-a", "new")
	nodeSrc, _ := spiffe.NewSource(nodeSVID, r1.bundle(t))
	nodeConn := dialSource(t, r1.Addr().String(), nodeSrc, "")
	follow(t, nodeConn, nodeSrc)

	oldID := spiffe.MustParse("spiffe://cluster.local/ns/app/sa/old")
	newID := spiffe.MustParse("spiffe://cluster.local/ns/app/sa/new")
	issue := func(id spiffe.Identity) *x509svid.SVID {
		t.Helper()
		svid, _, err := certFor(ctx, t, nodeConn, id.String())
		if err != nil {
			t.Fatalf("issue %s: %v", id, err)
		}
		return svid
	}
	oldSrc, _ := spiffe.NewSource(issue(oldID), r1.bundle(t))
	newSrc, _ := spiffe.NewSource(issue(newID), r2.bundle(t))
	follow(t, dialSource(t, r1.Addr().String(), oldSrc, ""), oldSrc)
	follow(t, dialSource(t, r2.Addr().String(), newSrc, ""), newSrc)
	oldRootSVID, _ := oldSrc.GetX509SVID()

	long := newLongConn(t, oldSrc, newSrc, oldID)

	// Handshakes in a loop for the whole rotation: none may fail.
	var loopFailures, loopRuns atomic.Int64
	var firstFailure atomic.Value
	stopLoop := make(chan struct{})
	var loopWG sync.WaitGroup
	loopWG.Go(func() {
		for {
			select {
			case <-stopLoop:
				return
			default:
			}
			for _, pair := range [][2]*spiffe.Source{{oldSrc, newSrc}, {newSrc, oldSrc}} {
				want := oldID
				if pair[0] == newSrc {
					want = newID
				}
				if _, _, err := handshakeSources(t, pair[0], pair[1], want); err != nil {
					loopFailures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
				loopRuns.Add(1)
			}
		}
	})

	caID, _ := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	check := func(step string) {
		t.Helper()
		if _, _, err := handshakeSources(t, oldSrc, newSrc, oldID); err != nil {
			t.Fatalf("%s: new -> old handshake: %v", step, err)
		}
		if _, _, err := handshakeSources(t, newSrc, oldSrc, newID); err != nil {
			t.Fatalf("%s: old -> new handshake: %v", step, err)
		}
		if err := long.ping(); err != nil {
			t.Fatalf("%s: long-lived connection: %v", step, err)
		}
		for _, r := range []*replica{r1, r2} {
			for name, src := range map[string]*spiffe.Source{"node": nodeSrc, "old": oldSrc, "new": newSrc} {
				c, err := tls.Dial("tcp", r.Addr().String(), spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(caID)))
				if err != nil {
					t.Fatalf("%s: %s client to the CA: %v", step, name, err)
				}
				c.Close()
			}
		}
	}
	status := func() *cav1.RotationStatus {
		t.Helper()
		resp, err := rot.GetRotationStatus(ctx, &cav1.GetRotationStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	check("idle")

	// 1. Add the new root.
	start, err := rot.StartRotation(ctx, &cav1.StartRotationRequest{})
	if err != nil {
		t.Fatalf("StartRotation: %v", err)
	}
	if st := start.GetStatus(); st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED || len(st.GetAuthorities()) != 2 {
		t.Fatalf("after start: phase %s, %d authorities", st.GetPhase(), len(st.GetAuthorities()))
	}
	if _, err := rot.StartRotation(ctx, &cav1.StartRotationRequest{}); statusCode(err) != codes.FailedPrecondition {
		t.Errorf("second StartRotation: %v, want FailedPrecondition", err)
	}
	eventually(t, "every watcher to acknowledge the new root", func() (bool, string) {
		st := status()
		return st.GetReadyToAdvance(), st.GetWaitingFor()
	})
	if d := status().GetDistribution(); d.GetReplicas() != 2 || d.GetWatchers() != 3 || d.GetWatchersAcked() != 3 {
		t.Errorf("distribution %v, want 2 replicas, 3 of 3 watchers", d)
	}
	for name, src := range map[string]*spiffe.Source{"node": nodeSrc, "old": oldSrc, "new": newSrc} {
		if n := len(roots(t, src)); n != 2 {
			t.Fatalf("%s holds %d roots, want 2", name, n)
		}
	}
	check("root added")
	if _, err := rot.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW}); statusCode(err) != codes.Aborted {
		t.Errorf("advance with the wrong expected phase: %v, want Aborted", err)
	}

	// 2. Sign with the new root.
	adv, err := rot.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED})
	if err != nil {
		t.Fatalf("advance to signing: %v", err)
	}
	var newRoot *x509.Certificate
	for _, a := range adv.GetStatus().GetAuthorities() {
		if a.GetActive() {
			for _, r := range roots(t, newSrc) {
				if sha(r) == a.GetRootSha256() {
					newRoot = r
				}
			}
		}
	}
	if newRoot == nil {
		t.Fatal("the active authority's root is not in the bundle")
	}
	newOnly := x509bundle.FromX509Authorities(td, []*x509.Certificate{newRoot})
	eventually(t, "both replicas to serve from the new root", func() (bool, string) {
		for _, r := range []*replica{r1, r2} {
			svid, _ := r.Source().GetX509SVID()
			if _, _, err := x509svid.Verify(svid.Certificates, newOnly); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
	renewed := issue(newID)
	if _, _, err := x509svid.Verify(renewed.Certificates, newOnly); err != nil {
		t.Fatalf("certificate issued after the switch does not chain to the new root: %v", err)
	}
	if err := newSrc.SetSVID(renewed); err != nil {
		t.Fatal(err)
	}
	check("signing with new root (old client on old root, new client on new root)")
	_, err = rot.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "dropped at") {
		t.Fatalf("dropping the old root early: %v, want FailedPrecondition naming the drop time", err)
	}
	if st := status(); st.GetDropTime().AsTime().Before(adv.GetStatus().GetDropTime().AsTime()) || st.GetDropTime() == nil {
		t.Errorf("drop time %v", st.GetDropTime())
	}

	// 3. The late client renews at its half-life, as clients do.
	if err := oldSrc.SetSVID(issue(oldID)); err != nil {
		t.Fatal(err)
	}
	if err := nodeSrc.SetSVID(mustRenewNode(ctx, t, nodeConn, nodeSVID)); err != nil {
		t.Fatal(err)
	}
	check("both on the new root")

	// 4. Drop the old root (forced: its certificates' lifetime has not run
	// out in test time; TestAutoDrop covers the timed path).
	fin, err := rot.AdvanceRotation(ctx, &cav1.AdvanceRotationRequest{ExpectedPhase: cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW, Force: true})
	if err != nil {
		t.Fatalf("drop old root: %v", err)
	}
	if st := fin.GetStatus(); st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_IDLE || len(st.GetAuthorities()) != 1 {
		t.Fatalf("after drop: %s with %d authorities", st.GetPhase(), len(st.GetAuthorities()))
	}
	eventually(t, "every watcher to acknowledge the bundle without the old root", func() (bool, string) {
		d := status().GetDistribution()
		return d.GetWatchersAcked() == 3 && d.GetReplicasCurrent() == 2, d.String()
	})
	for name, src := range map[string]*spiffe.Source{"node": nodeSrc, "old": oldSrc, "new": newSrc} {
		if rs := roots(t, src); len(rs) != 1 || !rs[0].Equal(newRoot) {
			t.Fatalf("%s holds %d roots, want only the new one", name, len(rs))
		}
	}
	check("idle on the new root")

	close(stopLoop)
	loopWG.Wait()
	if n := loopFailures.Load(); n != 0 {
		t.Fatalf("%d of %d handshakes failed during rotation; first: %v", n, loopRuns.Load(), firstFailure.Load())
	}
	t.Logf("%d handshakes during rotation, none failed", loopRuns.Load())

	// The old root is really gone: its certificates no longer verify.
	stale, _ := spiffe.NewSource(oldRootSVID, r1.bundle(t))
	if _, _, err := handshakeSources(t, newSrc, stale, newID); err == nil {
		t.Fatal("a certificate of the dropped root was still accepted")
	}
}

func mustRenewNode(ctx context.Context, t *testing.T, conn *grpc.ClientConn, node *x509svid.SVID) *x509svid.SVID {
	t.Helper()
	svid, _, err := renew(ctx, t, conn, node.ID.String())
	if err != nil {
		t.Fatalf("node renewal: %v", err)
	}
	return svid
}

func statusCode(err error) codes.Code {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	return status.Code(err)
}
