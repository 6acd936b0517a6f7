package server

import (
	"context"
	"crypto/x509"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// ImpersonatedIdentityKey is the metadata field in which a node (Istio's
// ztunnel) names the workload identity it requests a certificate for.
const ImpersonatedIdentityKey = "ImpersonatedIdentity"

// API labels of the issued metric.
const (
	apiCSR  = "csr"
	apiJoin = "join"
)

// CreateCertificate is Istio's CSR API. The identity requested is the
// ImpersonatedIdentity metadata when set, else the caller's own.
func (s *Server) CreateCertificate(ctx context.Context, req *istioca.IstioCertificateRequest) (*istioca.IstioCertificateResponse, error) {
	const method = "CreateCertificate"
	start := time.Now()
	ctx, span := s.tracer.Start(ctx, "ca.CreateCertificate", trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()

	impersonated := req.GetMetadata().GetFields()[ImpersonatedIdentityKey].GetStringValue()
	c, err := s.authenticate(ctx)
	if err != nil {
		return nil, s.fail(ctx, method, c, impersonated, err)
	}
	requested, requestedText := c.id, c.id.String()
	if impersonated != "" {
		requestedText = impersonated
		if requested, err = spiffe.Parse(impersonated); err != nil {
			return nil, s.fail(ctx, method, c, impersonated, fault.Wrap(fault.InvalidArgument, "bad_identity", err,
				"%s is not a valid Ambit identity", impersonated))
		}
	}
	if err := s.rateLimit(c.id.String()); err != nil {
		return nil, s.fail(ctx, method, c, requestedText, err)
	}
	span.SetAttributes(attribute.String("ambit.caller", c.String()), attribute.String("ambit.auth", c.auth),
		attribute.String("ambit.requested", requestedText))

	via, err := s.o.Authz.Authorize(ctx, c.id, requested)
	if err != nil {
		return nil, s.fail(ctx, method, c, requestedText, err)
	}
	span.SetAttributes(attribute.String("ambit.authz", via))
	csr, err := signer.CheckCSR([]byte(req.GetCsr()), requested)
	if err != nil {
		return nil, s.fail(ctx, method, c, requestedText, err)
	}
	ttl, err := s.o.TTL.Resolve(secondsToDuration(req.GetValidityDuration()))
	if err != nil {
		return nil, s.fail(ctx, method, c, requestedText, err)
	}
	chain, err := s.issue(ctx, csr, requested, ttl, apiCSR)
	if err != nil {
		return nil, s.fail(ctx, method, c, requestedText, err)
	}
	s.m.duration.Record(ctx, time.Since(start).Seconds())
	s.log.DebugContext(ctx, "certificate issued", "caller", c.String(), "auth", c.auth, "identity", requestedText,
		"authz", via, "serial", chain[0].SerialNumber.Text(16), "not_after", chain[0].NotAfter)
	return &istioca.IstioCertificateResponse{CertChain: signer.ChainPEM(chain)}, nil
}

// secondsToDuration converts without overflow (huge values saturate and
// are then capped by the TTL policy).
func secondsToDuration(secs int64) time.Duration {
	const maxSecs = math.MaxInt64 / int64(time.Second)
	switch {
	case secs > maxSecs:
		return time.Duration(math.MaxInt64)
	case secs < -maxSecs:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(secs) * time.Second
}

// issue signs with the active authority after recording the lifetime, so a
// rotation keeps the old root at least as long as this certificate lives.
func (s *Server) issue(ctx context.Context, csr *x509.CertificateRequest, id spiffe.Identity, ttl time.Duration, api string) ([]*x509.Certificate, error) {
	_, span := s.tracer.Start(ctx, "ca.sign")
	defer span.End()
	a := s.o.Store.Current().Active
	now := s.o.Now()
	chain, err := signer.Issue(&a.Material, csr, id, ttl, now)
	if err != nil {
		return nil, err
	}
	if err := s.o.Rotation.RecordIssuedTTL(ctx, a.Record.ID, chain[0].NotAfter.Sub(now)); err != nil {
		return nil, err
	}
	s.m.issued.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", id.Kind().String()), attribute.String("api", api)))
	span.SetAttributes(attribute.String("ambit.authority", a.Record.ID), attribute.String("ambit.identity", id.String()))
	return chain, nil
}
