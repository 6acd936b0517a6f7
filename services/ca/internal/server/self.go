package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// issueSelf signs this replica's serving certificate from snap's active
// authority, with a fresh key.
func (s *Server) issueSelf(ctx context.Context, snap *keystore.Snapshot) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	a := snap.Active
	now := s.o.Now()
	ttl, _ := s.o.TTL.Resolve(0)
	chain, err := signer.Issue(&a.Material, csr, s.self, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("server: issue own certificate: %w", err)
	}
	if err := s.o.Rotation.RecordIssuedTTL(ctx, a.Record.ID, chain[0].NotAfter.Sub(now)); err != nil {
		return nil, err
	}
	// The served chain stops before the root: peers hold the root.
	return &x509svid.SVID{ID: s.self.ID(), Certificates: chain[:len(chain)-1], PrivateKey: key}, nil
}

// Run follows the CA state until ctx ends: every new bundle goes to the
// publishers and into the TLS configuration; a new active authority, or
// half the serving certificate's lifetime, brings a new serving
// certificate.
func (s *Server) Run(ctx context.Context) error {
	active, version := s.startActive, s.startVersion
	for {
		changed := s.o.Store.Changed()
		snap := s.o.Store.Current()
		var err error
		if snap.State.BundleVersion != version {
			err = s.publish(ctx, snap)
			if err == nil {
				version = snap.State.BundleVersion
			}
		}
		svid, _ := s.source.GetX509SVID()
		renewAt := halfLife(svid.Certificates[0])
		if err == nil && (snap.State.Active != active || !s.o.Now().Before(renewAt)) {
			err = s.renewSelf(ctx, snap)
			if err == nil {
				active = snap.State.Active
				svid, _ = s.source.GetX509SVID()
				renewAt = halfLife(svid.Certificates[0])
			}
		}
		wait := renewAt.Sub(s.o.Now())
		if err != nil {
			s.log.WarnContext(ctx, "following the CA state failed; retrying", "error", err)
			wait = time.Second
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

func halfLife(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

func (s *Server) publish(ctx context.Context, snap *keystore.Snapshot) error {
	b := bundle.FromSnapshot(s.o.TrustDomain, snap)
	if err := s.source.SetBundles(b.X509Bundle()); err != nil {
		return err
	}
	for _, p := range s.publishers() {
		if err := p.Publish(ctx, b); err != nil {
			return fmt.Errorf("publish bundle %d: %w", b.Version, err)
		}
	}
	s.log.InfoContext(ctx, "trust bundle published", "version", b.Version, "roots", len(b.Roots))
	return nil
}

func (s *Server) renewSelf(ctx context.Context, snap *keystore.Snapshot) error {
	svid, err := s.issueSelf(ctx, snap)
	if err != nil {
		return err
	}
	if err := s.source.SetSVID(svid); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "serving certificate renewed", "authority", snap.State.Active, "not_after", svid.Certificates[0].NotAfter)
	return nil
}
