package certs

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

// fakeCA is a small real CA over gRPC and mTLS on loopback: it serves
// Istio's CreateCertificate to node identities only, requires the
// ImpersonatedIdentity metadata to name the CSR's identity and that
// identity to be "assigned to the node", signs with a test root
// (backdating NotBefore a minute, as ambit-ca does) and records every
// request. It follows pkg/nodecred's fake, which tests cannot import.
type fakeCA struct {
	t    testing.TB
	td   spiffeid.TrustDomain
	root *spiffetest.CA
	srv  *grpc.Server
	done chan struct{}
	// conn is the node's connection, authenticated with a node certificate.
	conn *grpc.ClientConn

	istioca.UnimplementedIstioCertificateServiceServer

	requests chan request         // every CreateCertificate call, after it was answered
	arrivals chan spiffe.Identity // every valid CreateCertificate call, on arrival

	mu       sync.Mutex
	signer   *spiffetest.CA
	assigned map[spiffe.Identity]bool // identities the node may obtain
	failures []error                  // injected errors, used in order
	gate     chan struct{}            // when set, calls wait until it is closed
	counts   map[spiffe.Identity]int
}

type request struct {
	id     spiffe.Identity
	at     time.Time
	err    error
	serial *big.Int // of the issued certificate
}

func startFakeCA(t testing.TB) *fakeCA {
	t.Helper()
	td := spiffe.DefaultTrustDomain()
	root := spiffetest.NewCA(t, td)
	f := &fakeCA{
		t:        t,
		td:       td,
		root:     root,
		signer:   root,
		done:     make(chan struct{}),
		requests: make(chan request, 1000),
		arrivals: make(chan spiffe.Identity, 1000),
		assigned: map[spiffe.Identity]bool{},
		counts:   map[spiffe.Identity]int{},
	}
	caID, err := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerConfig(root.Source(t, caID), spiffe.AuthorizeNodes(td)))))
	istioca.RegisterIstioCertificateServiceServer(f.srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(lis)
	}()
	node, err := spiffe.NewNode(td, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(spiffe.ClientConfig(root.Source(t, node), spiffe.AuthorizeComponents(td, spiffe.ComponentCA)))
	f.conn, err = grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.conn.Close()
		f.srv.Stop()
		<-f.done
	})
	return f
}

func (f *fakeCA) assign(ids ...spiffe.Identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.assigned[id] = true
	}
}

func (f *fakeCA) failNext(errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, errs...)
}

// hold makes calls wait until the returned function is called.
func (f *fakeCA) hold() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	return sync.OnceFunc(func() {
		f.mu.Lock()
		f.gate = nil
		f.mu.Unlock()
		close(gate)
	})
}

func (f *fakeCA) setSigner(ca *spiffetest.CA) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signer = ca
}

func (f *fakeCA) count(id spiffe.Identity) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[id]
}

// arrived waits for a request for id to reach the CA.
func (f *fakeCA) arrived(t *testing.T, id spiffe.Identity) {
	t.Helper()
	for {
		select {
		case got := <-f.arrivals:
			if got == id {
				return
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no request for %s reached the CA", id)
		}
	}
}

// next returns the next recorded request, failing the test after a while.
func (f *fakeCA) next(t *testing.T) request {
	t.Helper()
	select {
	case r := <-f.requests:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no certificate request reached the CA")
		return request{}
	}
}

func (f *fakeCA) CreateCertificate(ctx context.Context, req *istioca.IstioCertificateRequest) (*istioca.IstioCertificateResponse, error) {
	r := request{at: time.Now()}
	resp, err := f.create(ctx, req, &r)
	r.err = err
	f.requests <- r
	return resp, err
}

func (f *fakeCA) create(ctx context.Context, req *istioca.IstioCertificateRequest, r *request) (*istioca.IstioCertificateResponse, error) {
	p, _ := peer.FromContext(ctx)
	info, _ := p.AuthInfo.(credentials.TLSInfo)
	caller, err := spiffe.PeerIdentity(info.State)
	if err != nil || caller.Kind() != spiffe.KindNode {
		return nil, status.Error(codes.Unauthenticated, "only nodes")
	}
	imp := req.GetMetadata().GetFields()[caclient.ImpersonatedIdentity].GetStringValue()
	id, err := spiffe.Parse(imp)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "ImpersonatedIdentity %q: %v", imp, err)
	}
	r.id = id
	csr, err := parseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR: %v", err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != imp {
		return nil, status.Error(codes.InvalidArgument, "CSR SAN is not the impersonated identity")
	}
	f.arrivals <- id
	f.mu.Lock()
	f.counts[id]++
	gate := f.gate
	var injected error
	if len(f.failures) > 0 {
		injected, f.failures = f.failures[0], f.failures[1:]
	}
	allowed, signer := f.assigned[id], f.signer
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if injected != nil {
		return nil, injected
	}
	if !allowed {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not an identity of a pod on node %s", id, caller.Node())
	}
	validity := time.Duration(req.GetValidityDuration()) * time.Second
	if validity == 0 {
		validity = time.Hour
	}
	chain, serial, err := sign(signer, csr, id, validity)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	r.serial = serial
	return &istioca.IstioCertificateResponse{CertChain: chain}, nil
}

func parseCSR(p string) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, err
	}
	return csr, csr.CheckSignature()
}

func sign(ca *spiffetest.CA, csr *x509.CertificateRequest, id spiffe.Identity, validity time.Duration) ([]string, *big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate(), csr.PublicKey, ca.Signer())
	if err != nil {
		return nil, nil, err
	}
	return []string{pemOf(der), pemOf(ca.Root().Raw)}, serial, nil
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// fakeTrust is a Trust whose bundles the test changes.
type fakeTrust struct {
	mu      sync.Mutex
	bundles []*x509bundle.Bundle
	err     error
	changed chan struct{}
}

func newFakeTrust(bundles ...*x509bundle.Bundle) *fakeTrust {
	return &fakeTrust{bundles: bundles, changed: make(chan struct{})}
}

func (f *fakeTrust) Bundles() ([]*x509bundle.Bundle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bundles, f.err
}

func (f *fakeTrust) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeTrust) set(err error, bundles ...*x509bundle.Bundle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bundles, f.err = bundles, err
	close(f.changed)
	f.changed = make(chan struct{})
}
