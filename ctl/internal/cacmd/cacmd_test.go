package cacmd_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ambitmesh/ambit/ctl/internal/cacmd"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"))
}

// fakeCA plays the CA's bootstrap and rotation services over real TLS,
// checking that callers are admins.
type fakeCA struct {
	cav1.UnimplementedNodeBootstrapServiceServer
	cav1.UnimplementedRotationServiceServer

	mu       sync.Mutex
	phase    cav1.RotationPhase
	acked    uint32 // watchers that acknowledged so far; grows per status call
	advances []*cav1.AdvanceRotationRequest
	started  *cav1.StartRotationRequest
	polls    int
}

func admin(ctx context.Context) error {
	p, _ := peer.FromContext(ctx)
	id, err := spiffe.PeerIdentity(p.AuthInfo.(credentials.TLSInfo).State)
	if err != nil || id.Kind() != spiffe.KindAdmin {
		return status.Error(codes.PermissionDenied, "not an admin")
	}
	return nil
}

func (f *fakeCA) CreateJoinToken(ctx context.Context, req *cav1.CreateJoinTokenRequest) (*cav1.CreateJoinTokenResponse, error) {
	if err := admin(ctx); err != nil {
		return nil, err
	}
	if req.GetTtl().AsDuration() != 30*time.Minute {
		return nil, status.Errorf(codes.InvalidArgument, "ttl %s", req.GetTtl().AsDuration())
	}
	return &cav1.CreateJoinTokenResponse{Token: "ambit-join-TOKEN", Identity: "spiffe://cluster.local/ambit/node/" + req.GetNode(),
		ExpireTime: timestamppb.New(time.Now().Add(30 * time.Minute))}, nil
}

func (f *fakeCA) statusLocked() *cav1.RotationStatus {
	st := &cav1.RotationStatus{Phase: f.phase, TrustDomain: "cluster.local", BundleVersion: 2, RequiredVersion: 2,
		Distribution: &cav1.Distribution{Replicas: 2, ReplicasCurrent: 2, Watchers: 3, WatchersAcked: f.acked},
		Authorities: []*cav1.Authority{{Id: "aaaa", Active: f.phase != cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW, Origin: "generated",
			RootSha256: strings.Repeat("ab", 32), NotAfter: timestamppb.New(time.Now().Add(3650 * 24 * time.Hour)), RootSubject: "CN=old"}}}
	if f.phase != cav1.RotationPhase_ROTATION_PHASE_IDLE {
		st.Authorities = append(st.Authorities, &cav1.Authority{Id: "bbbb", Active: f.phase == cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW,
			Origin: "generated", NotAfter: timestamppb.New(time.Now().Add(3650 * 24 * time.Hour)), RootSubject: "CN=new"})
	}
	if f.phase == cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED {
		st.ReadyToAdvance = f.acked == 3
		if !st.ReadyToAdvance {
			st.WaitingFor = "watchers"
		}
	}
	if f.phase == cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW {
		st.DropTime = timestamppb.New(time.Now().Add(24 * time.Hour))
	}
	return st
}

func (f *fakeCA) GetRotationStatus(ctx context.Context, _ *cav1.GetRotationStatusRequest) (*cav1.GetRotationStatusResponse, error) {
	if err := admin(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if f.phase == cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED && f.acked < 3 {
		f.acked++
	}
	return &cav1.GetRotationStatusResponse{Status: f.statusLocked()}, nil
}

func (f *fakeCA) StartRotation(ctx context.Context, req *cav1.StartRotationRequest) (*cav1.StartRotationResponse, error) {
	if err := admin(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = req
	f.phase = cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED
	return &cav1.StartRotationResponse{Status: f.statusLocked()}, nil
}

func (f *fakeCA) AdvanceRotation(ctx context.Context, req *cav1.AdvanceRotationRequest) (*cav1.AdvanceRotationResponse, error) {
	if err := admin(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advances = append(f.advances, req)
	if req.GetExpectedPhase() != f.phase {
		return nil, status.Error(codes.Aborted, "phase mismatch")
	}
	switch f.phase {
	case cav1.RotationPhase_ROTATION_PHASE_ROOT_ADDED:
		if f.acked < 3 && !req.GetForce() {
			return nil, status.Error(codes.FailedPrecondition, "not ready")
		}
		f.phase = cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW
	case cav1.RotationPhase_ROTATION_PHASE_SIGNING_NEW:
		if !req.GetForce() {
			return nil, status.Error(codes.FailedPrecondition, "not yet")
		}
		f.phase = cav1.RotationPhase_ROTATION_PHASE_IDLE
	}
	return &cav1.AdvanceRotationResponse{Status: f.statusLocked()}, nil
}

// start serves a fakeCA with a CA certificate from a test root and writes
// admin credentials of the same root into a directory.
func start(t *testing.T, adminID string) (*fakeCA, string, string) {
	t.Helper()
	td := spiffe.DefaultTrustDomain()
	root := spiffetest.NewCA(t, td)
	srvSrc := root.Source(t, spiffe.MustParse("spiffe://cluster.local/ambit/ca"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := spiffe.ServerConfig(srvSrc, spiffe.AuthorizeMemberOf(td))
	cfg.MinVersion = tls.VersionTLS12
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	f := &fakeCA{phase: cav1.RotationPhase_ROTATION_PHASE_IDLE}
	cav1.RegisterNodeBootstrapServiceServer(g, f)
	cav1.RegisterRotationServiceServer(g, f)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	dir := t.TempDir()
	svid := root.MintSVID(t, spiffe.MustParse(adminID))
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{cacmd.CertFile: certPEM, cacmd.KeyFile: keyPEM, cacmd.BundleFile: root.CertificatePEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f, lis.Addr().String(), dir
}

func execute(t *testing.T, root func(...cacmd.Option) *cobraCommand, args ...string) (string, string, error) {
	t.Helper()
	cmd := root(cacmd.WithPollInterval(time.Millisecond))
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestNodeTokenCreate(t *testing.T) {
	_, addr, dir := start(t, "spiffe://cluster.local/ambit/admin/ops")
	out, errOut, err := execute(t, cacmd.NewNodeCmd, "token", "create", "node-1", "--ttl", "30m", "--ca-addr", addr, "--credentials-dir", dir)
	if err != nil {
		t.Fatalf("%v (%s)", err, errOut)
	}
	if out != "ambit-join-TOKEN\n" {
		t.Errorf("stdout %q, want the token alone", out)
	}
	if !strings.Contains(errOut, "spiffe://cluster.local/ambit/node/node-1") {
		t.Errorf("stderr %q", errOut)
	}
	// Missing credentials: a clear error naming issue-admin.
	_, _, err = execute(t, cacmd.NewNodeCmd, "token", "create", "n", "--ca-addr", addr, "--credentials-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "issue-admin") {
		t.Errorf("missing credentials: %v", err)
	}
}

func TestNotAdmin(t *testing.T) {
	_, addr, dir := start(t, "spiffe://cluster.local/ambit/node/n1")
	_, _, err := execute(t, cacmd.NewCACmd, "status", "--ca-addr", addr, "--credentials-dir", dir)
	if status.Code(errorsCause(err)) != codes.PermissionDenied && !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("non-admin: %v", err)
	}
}

func TestRotateShowsProgress(t *testing.T) {
	f, addr, dir := start(t, "spiffe://cluster.local/ambit/admin")
	out, errOut, err := execute(t, cacmd.NewCACmd, "rotate", "--ca-addr", addr, "--credentials-dir", dir)
	if err != nil {
		t.Fatalf("%v (%s)", err, errOut)
	}
	for _, want := range []string{
		"[1/4] new root added to the trust bundle (bundle v2); still signing with aaaa",
		"[2/4] distributing bundle v2: 1/3 watchers acknowledged, 2/2 CA replicas serve it",
		"[2/4] distributing bundle v2: 3/3 watchers acknowledged",
		"[3/4] signing with the new root bbbb",
		"[4/4] the CA drops the old root at",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	f.mu.Lock()
	if len(f.advances) != 1 || f.advances[0].GetForce() {
		t.Errorf("advances %v: want one unforced switch, after full distribution", f.advances)
	}
	f.mu.Unlock()

	// Resuming with --drop-now finishes it.
	out, _, err = execute(t, cacmd.NewCACmd, "rotate", "--drop-now", "--ca-addr", addr, "--credentials-dir", dir)
	if err != nil || !strings.Contains(out, "resuming") || !strings.Contains(out, "old root dropped (forced)") {
		t.Fatalf("drop-now: %v\n%s", err, out)
	}

	out, _, err = execute(t, cacmd.NewCACmd, "status", "--ca-addr", addr, "--credentials-dir", dir)
	if err != nil || !strings.Contains(out, "Rotation phase:  idle") || !strings.Contains(out, "aaaa") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, _, err = execute(t, cacmd.NewCACmd, "status", "-o", "json", "--ca-addr", addr, "--credentials-dir", dir)
	var st cav1.RotationStatus
	if err != nil || protojson.Unmarshal([]byte(out), &st) != nil || st.GetPhase() != cav1.RotationPhase_ROTATION_PHASE_IDLE {
		t.Fatalf("status json: %v\n%s", err, out)
	}
}

type cobraCommand = cobra.Command

func errorsCause(err error) error {
	for err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		err = errors.Unwrap(err)
	}
	return nil
}
