// Package bundle distributes the trust bundle and measures how far it got.
//
// The CA's state (keystore) defines the bundle: the trusted roots and the
// public keys of node bearer tokens, with a version that increases on every
// change. A replica hands each new bundle to its Publishers. The one
// implemented here is the Broadcaster behind TrustBundleService.Watch: every
// connected watcher gets the current bundle at once and every later one,
// and acknowledges each bundle it installed by sending its version back.
// The Broadcaster counts, per version, the connected watchers that
// acknowledged it; a Reporter writes those counts for its replica to etcd
// (/ambit/v1/_ca/replicas/<replica>, under a lease, so a dead replica's
// watchers stop counting when its lease ends), and Distribution sums the
// reports of all live replicas. Root rotation advances only when every
// connected watcher, on every replica, acknowledged the bundle holding the
// new root — a watcher that received a bundle but never acknowledged it
// does not count, since receipt is not installation.
//
// Publisher is the seam for other channels: package clustertrustbundle
// writes the bundle as a resource through the config service (so proxies
// that follow the change feed pick it up) beside the Broadcaster.
package bundle

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// Bundle is one version of the trust bundle. Immutable once built.
type Bundle struct {
	Version     uint64
	TrustDomain spiffeid.TrustDomain
	Roots       []*x509.Certificate
	// TokenKeys by key id.
	TokenKeys map[string]crypto.PublicKey

	proto *cav1.TrustBundle
}

// FromSnapshot builds the bundle a CA state defines.
func FromSnapshot(td spiffeid.TrustDomain, s *keystore.Snapshot) *Bundle {
	b := &Bundle{
		Version:     s.State.BundleVersion,
		TrustDomain: td,
		Roots:       s.Roots(),
		TokenKeys:   map[string]crypto.PublicKey{s.TokenKeyID: s.TokenKey.Public()},
	}
	p := &cav1.TrustBundle{Version: b.Version, TrustDomain: td.Name()}
	for _, r := range b.Roots {
		p.X509Authorities = append(p.X509Authorities, keystore.CertificatePEM(r))
	}
	for _, k := range b.TokenKeys {
		if der, err := x509.MarshalPKIXPublicKey(k); err == nil {
			p.TokenKeys = append(p.TokenKeys, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
		}
	}
	b.proto = p
	return b
}

// Proto is the wire form; shared, do not modify.
func (b *Bundle) Proto() *cav1.TrustBundle { return b.proto }

// X509Bundle is the go-spiffe form, for TLS configurations.
func (b *Bundle) X509Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(b.TrustDomain, b.Roots)
}

// Publisher distributes bundles. Publish is called with every new bundle,
// in version order; it must not block for long.
type Publisher interface {
	Publish(ctx context.Context, b *Bundle) error
}

// Stats is a Broadcaster's view of its watchers.
type Stats struct {
	// ServedVersion is the version new watchers get.
	ServedVersion uint64 `json:"servedVersion"`
	Watchers      int    `json:"watchers"`
	// Acked counts watchers by the last version they acknowledged.
	Acked map[uint64]int `json:"acked,omitempty"`
}

// AckedAtLeast counts watchers that acknowledged version v or later.
func (s Stats) AckedAtLeast(v uint64) int {
	n := 0
	for ver, c := range s.Acked {
		if ver >= v {
			n += c
		}
	}
	return n
}

// Broadcaster serves the bundle to watchers and counts acknowledgements.
type Broadcaster struct {
	mu       sync.Mutex
	current  *Bundle
	changed  chan struct{} // closed when current changes
	watchers map[*Watcher]struct{}
	notify   chan struct{} // capacity 1: stats changed
}

// NewBroadcaster returns a Broadcaster with nothing to serve yet.
func NewBroadcaster() *Broadcaster {
	return &Broadcaster{changed: make(chan struct{}), watchers: map[*Watcher]struct{}{}, notify: make(chan struct{}, 1)}
}

var _ Publisher = (*Broadcaster)(nil)

// Publish makes b current unless a newer version already is.
func (br *Broadcaster) Publish(_ context.Context, b *Bundle) error {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.current != nil && br.current.Version >= b.Version {
		return nil
	}
	br.current = b
	close(br.changed)
	br.changed = make(chan struct{})
	br.poke()
	return nil
}

// Current returns the bundle and a channel closed when it changes.
func (br *Broadcaster) Current() (*Bundle, <-chan struct{}) {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.current, br.changed
}

// StatsChanged receives a value after stats changed (coalesced).
func (br *Broadcaster) StatsChanged() <-chan struct{} { return br.notify }

func (br *Broadcaster) poke() {
	select {
	case br.notify <- struct{}{}:
	default:
	}
}

// Stats returns the current counts.
func (br *Broadcaster) Stats() Stats {
	br.mu.Lock()
	defer br.mu.Unlock()
	s := Stats{Watchers: len(br.watchers), Acked: map[uint64]int{}}
	if br.current != nil {
		s.ServedVersion = br.current.Version
	}
	for w := range br.watchers {
		if w.acked > 0 {
			s.Acked[w.acked]++
		}
	}
	return s
}

// Watcher is one connected Watch stream.
type Watcher struct {
	br     *Broadcaster
	Caller string
	acked  uint64
}

// Register adds a watcher; Close it when the stream ends.
func (br *Broadcaster) Register(caller string) *Watcher {
	w := &Watcher{br: br, Caller: caller}
	br.mu.Lock()
	br.watchers[w] = struct{}{}
	br.poke()
	br.mu.Unlock()
	return w
}

// Ack records that the watcher installed version v. Versions the
// broadcaster never served, and regressions, are ignored.
func (w *Watcher) Ack(v uint64) {
	br := w.br
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.current == nil || v > br.current.Version || v <= w.acked {
		return
	}
	w.acked = v
	br.poke()
}

// Close removes the watcher.
func (w *Watcher) Close() {
	br := w.br
	br.mu.Lock()
	delete(br.watchers, w)
	br.poke()
	br.mu.Unlock()
}
