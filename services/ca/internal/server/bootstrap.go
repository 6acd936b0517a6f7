package server

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/bearer"
	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// CreateJoinToken makes a join token (admins only).
func (s *Server) CreateJoinToken(ctx context.Context, req *cav1.CreateJoinTokenRequest) (*cav1.CreateJoinTokenResponse, error) {
	const method = "CreateJoinToken"
	ctx, span := s.tracer.Start(ctx, "ca.CreateJoinToken")
	defer span.End()
	c, err := s.authenticate(ctx)
	if err == nil {
		err = requireAdmin(c)
	}
	if err != nil {
		return nil, s.fail(ctx, method, c, req.GetNode()+req.GetIdentity(), err)
	}
	id, err := s.joinIdentity(req)
	if err != nil {
		return nil, s.fail(ctx, method, c, req.GetNode()+req.GetIdentity(), err)
	}
	token, exp, err := s.o.Tokens.Create(ctx, id, req.GetTtl().AsDuration(), c.id.String())
	if err != nil {
		return nil, s.fail(ctx, method, c, id.String(), err)
	}
	s.log.InfoContext(ctx, "join token created", "audit", true, "caller", c.String(), "identity", id.String(), "expires", exp)
	return &cav1.CreateJoinTokenResponse{Token: token, Identity: id.String(), ExpireTime: timestamppb.New(exp)}, nil
}

// joinIdentity is the identity a join token may yield: a node, a
// control-plane service or an admin of the trust domain — never a workload
// (workloads get certificates through their node).
func (s *Server) joinIdentity(req *cav1.CreateJoinTokenRequest) (spiffe.Identity, error) {
	switch {
	case (req.GetNode() == "") == (req.GetIdentity() == ""):
		return spiffe.Identity{}, fault.New(fault.InvalidArgument, "bad_identity", "set exactly one of node and identity")
	case req.GetNode() != "":
		id, err := spiffe.NewNode(s.o.TrustDomain, req.GetNode())
		if err != nil {
			return spiffe.Identity{}, fault.Wrap(fault.InvalidArgument, "bad_identity", err, "node name %q", req.GetNode())
		}
		return id, nil
	}
	id, err := spiffe.Parse(req.GetIdentity())
	if err != nil {
		return spiffe.Identity{}, fault.Wrap(fault.InvalidArgument, "bad_identity", err, "identity %q", req.GetIdentity())
	}
	if id.TrustDomain() != s.o.TrustDomain {
		return spiffe.Identity{}, fault.New(fault.InvalidArgument, "foreign_trust_domain", "%s is not in trust domain %q", id, s.o.TrustDomain.Name())
	}
	if id.Kind() == spiffe.KindWorkload {
		return spiffe.Identity{}, fault.New(fault.InvalidArgument, "not_joinable", "workload identities cannot join; their node obtains their certificates")
	}
	return id, nil
}

// ExchangeJoinToken trades a join token for a certificate, once.
func (s *Server) ExchangeJoinToken(ctx context.Context, req *cav1.ExchangeJoinTokenRequest) (*cav1.ExchangeJoinTokenResponse, error) {
	const method = "ExchangeJoinToken"
	ctx, span := s.tracer.Start(ctx, "ca.ExchangeJoinToken")
	defer span.End()
	c, _ := s.authenticate(ctx) // the token is the credential; a certificate changes nothing
	c.auth = authJoinToken
	c.id = spiffe.Identity{}
	if err := s.rateLimit("join@" + c.addr); err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	p, err := s.o.Tokens.Lookup(ctx, req.GetToken())
	if err != nil {
		return nil, s.fail(ctx, method, c, "", err)
	}
	id := p.Identity
	span.SetAttributes(attribute.String("ambit.requested", id.String()))
	csr, err := signer.CheckCSR([]byte(req.GetCsr()), id)
	if err != nil {
		return nil, s.fail(ctx, method, c, id.String(), err)
	}
	ttl, err := s.o.TTL.Resolve(req.GetValidity().AsDuration())
	if err != nil {
		return nil, s.fail(ctx, method, c, id.String(), err)
	}
	if err := s.o.Tokens.Consume(ctx, p); err != nil {
		return nil, s.fail(ctx, method, c, id.String(), err)
	}
	chain, err := s.issue(ctx, csr, id, ttl, apiJoin)
	if err != nil {
		return nil, s.fail(ctx, method, c, id.String(), err)
	}
	s.log.InfoContext(ctx, "join token exchanged", "audit", true, "from", c.addr, "identity", id.String(),
		"token_created_by", p.Record.CreatedBy, "not_after", chain[0].NotAfter)
	b, _ := s.o.Broadcaster.Current()
	return &cav1.ExchangeJoinTokenResponse{CertChain: signer.ChainPEM(chain), Bundle: bundleProto(b)}, nil
}

func bundleProto(b *bundle.Bundle) *cav1.TrustBundle {
	if b == nil {
		return nil
	}
	return b.Proto()
}

// IssueNodeToken mints a bearer token for a node holding its certificate.
func (s *Server) IssueNodeToken(ctx context.Context, req *cav1.IssueNodeTokenRequest) (*cav1.IssueNodeTokenResponse, error) {
	const method = "IssueNodeToken"
	ctx, span := s.tracer.Start(ctx, "ca.IssueNodeToken")
	defer span.End()
	c, err := s.authenticate(ctx)
	if err == nil && (c.id.Kind() != spiffe.KindNode || c.auth != authCertificate) {
		err = fault.New(fault.PermissionDenied, "not_node_certificate",
			"node tokens are issued only to callers presenting a node certificate, not to %s (%s)", c, c.auth)
	}
	if err != nil {
		return nil, s.fail(ctx, method, c, c.id.String(), err)
	}
	if err := s.rateLimit(c.id.String()); err != nil {
		return nil, s.fail(ctx, method, c, c.id.String(), err)
	}
	ttl := req.GetTtl().AsDuration()
	switch {
	case ttl == 0:
		ttl = bearer.DefaultTTL
	case ttl < 0:
		return nil, s.fail(ctx, method, c, c.id.String(), fault.New(fault.InvalidArgument, "ttl", "negative ttl"))
	case ttl > bearer.MaxTTL:
		ttl = bearer.MaxTTL
	}
	now := s.o.Now()
	exp := now.Add(ttl)
	if c.notAfter.Before(exp) {
		exp = c.notAfter
	}
	snap := s.o.Store.Current()
	tok, err := bearer.Mint(snap.TokenKey, snap.TokenKeyID, c.id, now, exp)
	if err != nil {
		return nil, s.fail(ctx, method, c, c.id.String(), err)
	}
	s.log.InfoContext(ctx, "node token issued", "audit", true, "node", c.id.String(), "expires", exp)
	return &cav1.IssueNodeTokenResponse{Token: tok, ExpireTime: timestamppb.New(exp)}, nil
}
