// Package server implements the CA's gRPC services over TLS:
//
//   - istio.v1.auth.IstioCertificateService/CreateCertificate (Istio's CSR
//     API, wire-compatible, types from istio.io/api);
//   - ambit.ca.v1.NodeBootstrapService (join tokens, node bearer tokens);
//   - ambit.ca.v1.TrustBundleService (streaming bundle with acks);
//   - ambit.ca.v1.RotationService (admin).
//
// # Authentication
//
// The listener uses spiffe.OptionalClientCertServerConfig: a client that
// presents a certificate is verified against the current bundle during
// the handshake and identified by it. A client without one is either
// redeeming a join token (ExchangeJoinToken, where the token is the
// credential) or must send "authorization: Bearer <node token>" (how
// Istio's ztunnel calls a CA, DESIGN §2); anything else is Unauthenticated.
// A bearer caller is treated exactly as the node named in the token.
//
// # Authorization and audit
//
// Every method authenticates, then checks its own rule (authz for
// certificates, admin-only for tokens and rotation). Every refusal goes
// through fail, the one place that maps a fault.Kind to a gRPC code,
// counts ambit_ca_requests_denied_total{reason} and writes an audit log
// line with the caller, how it authenticated, the requested identity and
// the reason.
//
// # The CA's own certificate
//
// Each replica serves with spiffe://<td>/ambit/ca, which it signs for
// itself from the active authority at start, whenever the active
// authority changes (rotation) and at half its lifetime; the bundle in the
// TLS configuration follows the state, so a root added or dropped applies
// to the next handshake without a restart.
package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/authz"
	"github.com/ambitmesh/ambit/services/ca/internal/bearer"
	"github.com/ambitmesh/ambit/services/ca/internal/bootstrap"
	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/ratelimit"
	"github.com/ambitmesh/ambit/services/ca/internal/rotation"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// Options wires a Server.
type Options struct {
	TrustDomain spiffeid.TrustDomain
	Store       *keystore.Store
	Rotation    *rotation.Manager
	Tokens      *bootstrap.Store
	Authz       *authz.Authorizer
	Broadcaster *bundle.Broadcaster
	// Publishers besides the Broadcaster.
	Publishers []bundle.Publisher
	TTL        signer.TTLPolicy
	Limiter    *ratelimit.Limiter
	Logger     *slog.Logger
	Tracer     trace.Tracer
	Meter      metric.MeterProvider
	Now        func() time.Time
}

// Server implements the CA's gRPC services.
type Server struct {
	istioca.UnimplementedIstioCertificateServiceServer
	cav1.UnimplementedNodeBootstrapServiceServer
	cav1.UnimplementedTrustBundleServiceServer
	cav1.UnimplementedRotationServiceServer

	o      Options
	log    *slog.Logger
	tracer trace.Tracer
	m      *metrics
	source *spiffe.Source
	self   spiffe.Identity

	draining chan struct{} // closed by Drain

	// What New served; Run takes over from there.
	startActive  string
	startVersion uint64
}

// New builds a server and its first serving certificate.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	self, err := spiffe.NewControlPlane(o.TrustDomain, spiffe.ComponentCA)
	if err != nil {
		return nil, err
	}
	if o.Meter == nil {
		o.Meter = metricnoop.NewMeterProvider()
	}
	m, err := newMetrics(o.Meter, o.Store, o.Now)
	if err != nil {
		return nil, err
	}
	if o.Tracer == nil {
		o.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	s := &Server{o: o, log: o.Logger, tracer: o.Tracer, m: m, self: self, draining: make(chan struct{})}
	snap := o.Store.Current()
	s.startActive, s.startVersion = snap.State.Active, snap.State.BundleVersion
	svid, err := s.issueSelf(ctx, snap)
	if err != nil {
		return nil, err
	}
	b := bundle.FromSnapshot(o.TrustDomain, snap)
	if s.source, err = spiffe.NewSource(svid, b.X509Bundle()); err != nil {
		return nil, err
	}
	for _, p := range s.publishers() {
		if err := p.Publish(ctx, b); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Drain ends the Watch streams, so a graceful stop need not wait for
// them; clients reconnect to another replica.
func (s *Server) Drain() {
	select {
	case <-s.draining:
	default:
		close(s.draining)
	}
}

// Close releases the metric callback.
func (s *Server) Close() error { return s.m.reg.Unregister() }

// Source is the replica's serving material (its SVID and the bundle).
func (s *Server) Source() *spiffe.Source { return s.source }

// TLSConfig is the listener's configuration: client certificates optional
// (bearer and join-token callers have none), verified when present.
func (s *Server) TLSConfig() *tls.Config {
	cfg := spiffe.OptionalClientCertServerConfig(s.source, spiffe.AuthorizeMemberOf(s.o.TrustDomain))
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// Register adds the services to g.
func (s *Server) Register(g *grpc.Server) {
	istioca.RegisterIstioCertificateServiceServer(g, s)
	cav1.RegisterNodeBootstrapServiceServer(g, s)
	cav1.RegisterTrustBundleServiceServer(g, s)
	cav1.RegisterRotationServiceServer(g, s)
}

// Credentials returns the gRPC transport credentials of the listener.
func (s *Server) Credentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.TLSConfig())
}

func (s *Server) publishers() []bundle.Publisher {
	return append([]bundle.Publisher{s.o.Broadcaster}, s.o.Publishers...)
}

// Authentication methods, for audit logs.
const (
	authCertificate = "certificate"
	authBearer      = "bearer"
	authJoinToken   = "join-token"
	authNone        = "none"
)

// caller is an authenticated client.
type caller struct {
	id       spiffe.Identity
	auth     string
	notAfter time.Time // of its certificate or token
	addr     string
}

func (c caller) String() string {
	if c.id.IsZero() {
		return "anonymous@" + c.addr
	}
	return c.id.String()
}

// authenticate identifies the caller by its verified client certificate or,
// without one, by a node bearer token.
func (s *Server) authenticate(ctx context.Context) (caller, error) {
	c := caller{auth: authNone}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return c, fault.New(fault.Unauthenticated, "no_peer", "no peer information")
	}
	c.addr = p.Addr.String()
	if host, _, err := net.SplitHostPort(c.addr); err == nil {
		c.addr = host
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return c, fault.New(fault.Unauthenticated, "no_tls", "the CA accepts TLS connections only")
	}
	id, err := spiffe.PeerIdentity(info.State)
	switch {
	case err == nil:
		c.id, c.auth, c.notAfter = id, authCertificate, info.State.PeerCertificates[0].NotAfter
		return c, nil
	case !errors.Is(err, spiffe.ErrNoPeerCertificate):
		return c, fault.Wrap(fault.Unauthenticated, "bad_certificate", err, "client certificate not usable")
	}
	token := bearerToken(ctx)
	if token == "" {
		return c, fault.New(fault.Unauthenticated, "no_credentials",
			"no client certificate and no \"authorization: Bearer\" node token")
	}
	snap := s.o.Store.Current()
	keys := func(kid string) *ecdsa.PublicKey {
		if kid == snap.TokenKeyID {
			return &snap.TokenKey.PublicKey
		}
		return nil
	}
	id, exp, err := bearer.Verify(token, keys, s.o.TrustDomain, s.o.Now())
	if err != nil {
		return c, fault.New(fault.Unauthenticated, "bad_token", "bearer token rejected: %v", err)
	}
	c.id, c.auth, c.notAfter = id, authBearer, exp
	return c, nil
}

func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}

// requireAdmin allows admin identities with a client certificate.
func requireAdmin(c caller) error {
	if c.id.Kind() != spiffe.KindAdmin || c.auth != authCertificate {
		return fault.New(fault.PermissionDenied, "not_admin", "%s is not an admin identity", c)
	}
	return nil
}

// fail maps err to a gRPC status — the only place that does — and counts
// and audits refusals. requested may be "".
func (s *Server) fail(ctx context.Context, method string, c caller, requested string, err error) error {
	fe, classified := fault.As(err)
	span := trace.SpanFromContext(ctx)
	span.RecordError(err)
	span.SetStatus(codes.Error, fe.Reason)
	attrs := []any{"method", method, "caller", c.String(), "auth", c.auth, "requested", requested,
		"reason", fe.Reason, "code", fe.Kind.String(), "error", err.Error()}
	switch fe.Kind {
	case fault.Internal, fault.Unavailable:
		s.log.ErrorContext(ctx, "request failed", attrs...)
	case fault.Aborted, fault.FailedPrecondition, fault.NotFound:
		s.log.InfoContext(ctx, "request refused", attrs...)
	default:
		s.m.denied.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", fe.Reason)))
		s.log.WarnContext(ctx, "request denied", append([]any{"audit", true}, attrs...)...)
	}
	msg := fe.Msg
	if !classified {
		msg = "internal error"
	}
	return status.Error(grpcCode(fe.Kind), msg)
}

func grpcCode(k fault.Kind) grpccodes.Code {
	switch k {
	case fault.InvalidArgument:
		return grpccodes.InvalidArgument
	case fault.PermissionDenied:
		return grpccodes.PermissionDenied
	case fault.Unauthenticated:
		return grpccodes.Unauthenticated
	case fault.NotFound:
		return grpccodes.NotFound
	case fault.FailedPrecondition:
		return grpccodes.FailedPrecondition
	case fault.Aborted:
		return grpccodes.Aborted
	case fault.ResourceExhausted:
		return grpccodes.ResourceExhausted
	case fault.Unavailable:
		return grpccodes.Unavailable
	}
	return grpccodes.Internal
}

// rateLimit takes a token for key.
func (s *Server) rateLimit(key string) error {
	if !s.o.Limiter.Allow(key) {
		return fault.New(fault.ResourceExhausted, "rate_limited", "too many requests from %s; retry later", key)
	}
	return nil
}
