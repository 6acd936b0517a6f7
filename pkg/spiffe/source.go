package spiffe

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// X509Source is what the TLS configurations of this package read on every
// handshake: the local X.509-SVID and the trust bundles that verify peers.
// *Source implements it, and so does go-spiffe's workloadapi.X509Source.
type X509Source interface {
	x509svid.Source
	x509bundle.Source
}

// Source is an in-memory X509Source whose contents can be replaced at run
// time. TLS configurations built from it pick up a renewed certificate or a
// changed trust bundle on their next handshake, so neither certificate
// renewal nor root rotation needs a restart. Established connections keep
// the certificates they were made with.
//
// During root rotation the bundle holds the old and the new root at once
// (one x509bundle.Bundle with several authorities), so peers with
// certificates from either root verify.
//
// The SVID and the bundles are swapped together as one immutable snapshot;
// a handshake sees either the old or the new snapshot, never a mix. Safe for
// concurrent use. The zero Source holds nothing; use NewSource.
type Source struct {
	current atomic.Pointer[material]
}

// material is one immutable snapshot of a Source's contents.
type material struct {
	svid    *x509svid.SVID // nil until the first certificate arrives
	bundles *x509bundle.Set
}

// NewSource returns a Source holding svid and bundles. svid may be nil for a
// party that has no certificate yet, such as a node agent that must first
// exchange its join token at the CA: its client configuration then presents
// no certificate but still verifies the server.
func NewSource(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) (*Source, error) {
	m, err := newMaterial(svid, bundles)
	if err != nil {
		return nil, err
	}
	s := &Source{}
	s.current.Store(m)
	return s, nil
}

// Update replaces the SVID and all bundles in one step. Use it when the
// local certificate moves to a new root, so the new root and the certificate
// issued under it appear together.
func (s *Source) Update(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) error {
	m, err := newMaterial(svid, bundles)
	if err != nil {
		return err
	}
	s.current.Store(m)
	return nil
}

// SetSVID replaces the SVID and keeps the bundles (certificate renewal).
func (s *Source) SetSVID(svid *x509svid.SVID) error {
	if err := validateSVID(svid); err != nil {
		return err
	}
	for {
		old := s.load()
		next := &material{svid: svid, bundles: old.bundles}
		if s.current.CompareAndSwap(old, next) {
			return nil
		}
	}
}

// SetBundles replaces all trust bundles and keeps the SVID (a root added to
// or removed from the bundle, a federated trust domain added or removed).
func (s *Source) SetBundles(bundles ...*x509bundle.Bundle) error {
	set, err := newBundleSet(bundles)
	if err != nil {
		return err
	}
	for {
		old := s.load()
		next := &material{svid: old.svid, bundles: set}
		if s.current.CompareAndSwap(old, next) {
			return nil
		}
	}
}

// GetX509SVID returns the current SVID, or an error wrapping ErrNoSVID. It
// implements x509svid.Source. The SVID is shared: do not modify it.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	m := s.load()
	if m.svid == nil {
		return nil, ErrNoSVID
	}
	return m.svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle of td, or an error
// wrapping ErrNoBundle. It implements x509bundle.Source. The bundle is
// shared: do not modify it.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if b, ok := s.load().bundles.Get(td); ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w %q", ErrNoBundle, td.Name())
}

// Identity returns the identity of the current SVID, or an error wrapping
// ErrNoSVID or ErrInvalidIdentity.
func (s *Source) Identity() (Identity, error) {
	svid, err := s.GetX509SVID()
	if err != nil {
		return Identity{}, err
	}
	return FromID(svid.ID)
}

// load returns the current snapshot; an empty one for the zero Source.
func (s *Source) load() *material {
	if m := s.current.Load(); m != nil {
		return m
	}
	return &material{bundles: x509bundle.NewSet()}
}

func newMaterial(svid *x509svid.SVID, bundles []*x509bundle.Bundle) (*material, error) {
	if svid != nil {
		if err := validateSVID(svid); err != nil {
			return nil, err
		}
	}
	set, err := newBundleSet(bundles)
	if err != nil {
		return nil, err
	}
	return &material{svid: svid, bundles: set}, nil
}

// validateSVID catches SVIDs that would fail every handshake, at the moment
// they are installed rather than on the next connection.
func validateSVID(svid *x509svid.SVID) error {
	switch {
	case svid == nil:
		return errors.New("spiffe: SVID is nil")
	case len(svid.Certificates) == 0:
		return errors.New("spiffe: SVID has no certificates")
	case svid.PrivateKey == nil:
		return errors.New("spiffe: SVID has no private key")
	case svid.ID.IsZero():
		return errors.New("spiffe: SVID has no SPIFFE ID")
	}
	return nil
}

// newBundleSet copies bundles into a set, so the caller's later changes to a
// bundle cannot alter the snapshot behind its back.
func newBundleSet(bundles []*x509bundle.Bundle) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	for i, b := range bundles {
		if b == nil {
			return nil, fmt.Errorf("spiffe: bundle %d is nil", i)
		}
		if b.TrustDomain().IsZero() {
			return nil, fmt.Errorf("spiffe: bundle %d has no trust domain", i)
		}
		if b.Empty() {
			return nil, fmt.Errorf("spiffe: bundle for %q has no X.509 authorities", b.TrustDomain().Name())
		}
		if set.Has(b.TrustDomain()) {
			return nil, fmt.Errorf("spiffe: two bundles for trust domain %q", b.TrustDomain().Name())
		}
		set.Add(b.Clone())
	}
	return set, nil
}
