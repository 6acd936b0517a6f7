package nodecred_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

// fakeCA is a minimal real CA over gRPC and TLS: it redeems join tokens,
// signs CSRs with a test root (backdating NotBefore a minute, as ambit-ca
// does) and streams a trust bundle, recording what it was asked. pkg
// cannot start services/ca; the integration test against it lives there.
type fakeCA struct {
	t    *testing.T
	td   spiffeid.TrustDomain
	root *spiffetest.CA
	addr string
	srv  *grpc.Server
	done chan struct{}

	istioca.UnimplementedIstioCertificateServiceServer
	cav1.UnimplementedNodeBootstrapServiceServer
	cav1.UnimplementedTrustBundleServiceServer

	mu       sync.Mutex
	tokens   map[string]spiffe.Identity // unused tokens
	joins    int
	minted   int
	failures map[string][]error // injected errors per method, used in order
	bundle   *cav1.TrustBundle
	changed  chan struct{} // closed when bundle changes

	issued   chan issued   // every certificate signed
	renewals chan renewal  // every CreateCertificate call
	acks     chan uint64   // every acknowledged bundle version
	watchers chan *big.Int // serial of the client certificate of every Watch
}

type issued struct {
	serial   *big.Int
	at       time.Time
	notAfter time.Time
}

type renewal struct {
	caller       spiffe.Identity
	callerSerial *big.Int
	impersonated bool
	at           time.Time
}

func startFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	td := spiffe.DefaultTrustDomain()
	f := &fakeCA{
		t:        t,
		td:       td,
		root:     spiffetest.NewCA(t, td),
		tokens:   map[string]spiffe.Identity{},
		failures: map[string][]error{},
		changed:  make(chan struct{}),
		issued:   make(chan issued, 100),
		renewals: make(chan renewal, 100),
		acks:     make(chan uint64, 100),
		watchers: make(chan *big.Int, 100),
		done:     make(chan struct{}),
	}
	f.bundle = &cav1.TrustBundle{Version: 1, TrustDomain: td.Name(), X509Authorities: []string{pemOf(f.root.Root())}}
	caID, err := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	if err != nil {
		t.Fatal(err)
	}
	src := f.root.Source(t, caID)
	f.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.OptionalClientCertServerConfig(src, spiffe.AuthorizeMemberOf(td)))))
	istioca.RegisterIstioCertificateServiceServer(f.srv, f)
	cav1.RegisterNodeBootstrapServiceServer(f.srv, f)
	cav1.RegisterTrustBundleServiceServer(f.srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(lis)
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeCA) stop() {
	f.srv.Stop()
	<-f.done
}

// bootstrapFile writes the CA's root where a node's bootstrap bundle goes.
func (f *fakeCA) bootstrapFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "bootstrap.pem")
	if err := os.WriteFile(p, []byte(pemOf(f.root.Root())), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fakeCA) newToken(node string) string {
	id, err := spiffe.NewNode(spiffe.DefaultTrustDomain(), node)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.minted++
	tok := fmt.Sprintf("ambit-join-%s-%d", node, f.minted)
	f.tokens[tok] = id
	return tok
}

func (f *fakeCA) joinCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins
}

// failNext makes the next calls of method fail with errs, in order.
func (f *fakeCA) failNext(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = append(f.failures[method], errs...)
}

func (f *fakeCA) injected(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := f.failures[method]
	if len(errs) == 0 {
		return nil
	}
	f.failures[method] = errs[1:]
	return errs[0]
}

// setBundle publishes a new bundle version holding roots.
func (f *fakeCA) setBundle(roots ...*x509.Certificate) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var pems []string
	for _, r := range roots {
		pems = append(pems, pemOf(r))
	}
	f.bundle = &cav1.TrustBundle{Version: f.bundle.Version + 1, TrustDomain: f.td.Name(), X509Authorities: pems}
	close(f.changed)
	f.changed = make(chan struct{})
	return f.bundle.Version
}

func (f *fakeCA) ExchangeJoinToken(_ context.Context, req *cav1.ExchangeJoinTokenRequest) (*cav1.ExchangeJoinTokenResponse, error) {
	if err := f.injected("ExchangeJoinToken"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	id, ok := f.tokens[req.GetToken()]
	delete(f.tokens, req.GetToken())
	if ok {
		f.joins++
	}
	b := f.bundle
	f.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "join token is unknown or used")
	}
	chain, err := f.sign(req.GetCsr(), id, req.GetValidity().AsDuration())
	if err != nil {
		return nil, err
	}
	return &cav1.ExchangeJoinTokenResponse{CertChain: chain, Bundle: b}, nil
}

func (f *fakeCA) CreateCertificate(ctx context.Context, req *istioca.IstioCertificateRequest) (*istioca.IstioCertificateResponse, error) {
	now := time.Now()
	p, _ := peer.FromContext(ctx)
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	caller, err := spiffe.PeerIdentity(info.State)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "no client certificate")
	}
	r := renewal{caller: caller, callerSerial: info.State.PeerCertificates[0].SerialNumber, at: now,
		impersonated: req.GetMetadata().GetFields()["ImpersonatedIdentity"] != nil}
	f.renewals <- r
	if err := f.injected("CreateCertificate"); err != nil {
		return nil, err
	}
	if r.impersonated {
		return nil, status.Error(codes.PermissionDenied, "this fake signs only the caller's own identity")
	}
	chain, err := f.sign(req.GetCsr(), caller, time.Duration(req.GetValidityDuration())*time.Second)
	if err != nil {
		return nil, err
	}
	return &istioca.IstioCertificateResponse{CertChain: chain}, nil
}

func (f *fakeCA) Watch(stream cav1.TrustBundleService_WatchServer) error {
	ctx := stream.Context()
	p, _ := peer.FromContext(ctx)
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	if len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "no client certificate")
	}
	f.watchers <- info.State.PeerCertificates[0].SerialNumber
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			f.acks <- req.GetAckVersion()
		}
	}()
	var sent uint64
	for {
		f.mu.Lock()
		b, changed := f.bundle, f.changed
		f.mu.Unlock()
		if b.GetVersion() > sent {
			if err := stream.Send(&cav1.WatchResponse{Bundle: b}); err != nil {
				return err
			}
			sent = b.GetVersion()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (f *fakeCA) sign(csrPEM string, id spiffe.Identity, validity time.Duration) ([]string, error) {
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil {
		return nil, status.Error(codes.InvalidArgument, "CSR is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err == nil && (len(csr.URIs) != 1 || csr.URIs[0].String() != id.String()) {
		err = errors.New("CSR SAN is not the identity")
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR: %v", err)
	}
	if validity == 0 {
		validity = time.Hour
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(id.String())
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.root.Certificate(), csr.PublicKey, f.root.Signer())
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	f.issued <- issued{serial: serial, at: now, notAfter: cert.NotAfter}
	leaf := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return []string{leaf, pemOf(f.root.Root())}, nil
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
