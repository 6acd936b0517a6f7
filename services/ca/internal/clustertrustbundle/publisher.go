// Package clustertrustbundle publishes the CA's trust bundle as a
// certificates.k8s.io ClusterTrustBundle through the config service, so
// everything that follows the change feed (proxies, controllers) picks up a
// rotated root from there without a restart, beside the CA's own streaming
// TrustBundleService.Watch.
//
// The object is named "ambit.io:<td>:bundle", of signer "ambit.io/<td>";
// the config service lets the CA's identity write exactly the
// ClusterTrustBundles of that signer. It holds the bundle's roots in PEM
// and the bundle version in the annotation ambit.io/bundle-version.
//
// # Who publishes
//
// Every replica does, with no election: all of them follow the same key
// material, so they publish the same content, and the writes are made safe
// instead of exclusive. Before writing, a replica reads the stored object;
// if it holds a newer version, or this version with the same roots, the
// replica writes nothing (so N replicas cost N reads and one write per
// bundle change). Otherwise it applies with the stored
// metadata.resourceVersion as precondition, and on a conflict reads again,
// so an older bundle never replaces a newer one. The only unguarded write
// is the very first creation (the API has no create-only precondition); two
// replicas racing there still converge, because each one next publishes the
// newest version it learns from the keystore.
//
// While the config service is unreachable, or refuses the write (an older
// config that does not know the kind yet), the publisher retries with
// jittered exponential backoff up to a minute; it re-checks the stored
// object every few minutes too, so an object deleted or edited by hand is
// put back.
package clustertrustbundle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
)

// Defaults of Options.
const (
	DefaultResync      = 5 * time.Minute
	DefaultMinBackoff  = 250 * time.Millisecond
	DefaultMaxBackoff  = time.Minute
	DefaultCallTimeout = 10 * time.Second
	// conflictAttempts bounds read-compare-write rounds lost to other
	// writers within one sync before it counts as a failure.
	conflictAttempts = 5
)

// Options configure a Publisher.
type Options struct {
	// Addresses of the config API replicas (host:port).
	Addresses   []string
	TrustDomain spiffeid.TrustDomain
	Logger      *slog.Logger
	// Resync is how often the stored object is re-checked without a bundle
	// change (default DefaultResync).
	Resync time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failure.
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds each config API call.
	CallTimeout time.Duration
}

// Publisher is a bundle.Publisher that writes the bundle through the
// config API. Publish only records the bundle; Run does the writing.
type Publisher struct {
	o       Options
	log     *slog.Logger
	mu      sync.Mutex
	latest  *bundle.Bundle
	changed chan struct{} // capacity 1: latest changed
}

var _ bundle.Publisher = (*Publisher)(nil)

// New returns a Publisher; Run starts it.
func New(o Options) (*Publisher, error) {
	if len(o.Addresses) == 0 {
		return nil, errors.New("clustertrustbundle: no config server addresses")
	}
	if err := CheckTrustDomain(o.TrustDomain); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Resync = orDefault(o.Resync, DefaultResync)
	o.MinBackoff = orDefault(o.MinBackoff, DefaultMinBackoff)
	o.MaxBackoff = orDefault(o.MaxBackoff, DefaultMaxBackoff)
	o.CallTimeout = orDefault(o.CallTimeout, DefaultCallTimeout)
	return &Publisher{o: o, log: o.Logger.With("component", "cluster-trust-bundle"), changed: make(chan struct{}, 1)}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Publish records b for Run unless a newer bundle is already recorded. It
// never blocks on the config service.
func (p *Publisher) Publish(_ context.Context, b *bundle.Bundle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.latest != nil && p.latest.Version >= b.Version {
		return nil
	}
	p.latest = b
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return nil
}

func (p *Publisher) current() *bundle.Bundle {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest
}

// Run writes every recorded bundle until ctx ends, authenticating with
// src, the replica's serving certificate.
func (p *Publisher) Run(ctx context.Context, src spiffe.X509Source) error {
	conn, err := Dial(p.o.Addresses, src, p.o.TrustDomain, p.o.MaxBackoff)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := configv1.NewConfigServiceClient(conn)

	delay := time.Duration(0) // current backoff; 0 after a success
	for {
		wait := p.o.Resync
		if b := p.current(); b != nil {
			if err := p.sync(ctx, client, b); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				delay = min(max(2*delay, p.o.MinBackoff), p.o.MaxBackoff)
				wait = jitter(delay)
				p.log.WarnContext(ctx, "publishing the trust bundle as a ClusterTrustBundle failed; retrying",
					"version", b.Version, "retry_in", wait, "error", err)
			} else {
				delay = 0
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-p.changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// sync makes the stored object hold b, or a newer bundle.
func (p *Publisher) sync(ctx context.Context, client configv1.ConfigServiceClient, b *bundle.Bundle) error {
	want := desired(b)
	ref := &configv1.ObjectRef{Group: Group, Kind: Kind, Name: want.Metadata.Name}
	for range conflictAttempts {
		stored, err := p.get(ctx, client, ref)
		if err != nil {
			return err
		}
		a := decide(stored, want)
		if a != write {
			p.log.DebugContext(ctx, "ClusterTrustBundle needs no write", "version", b.Version, "state", a.String())
			return nil
		}
		rv := ""
		if stored != nil {
			rv = stored.Metadata.ResourceVersion
		}
		manifest, err := want.manifest(rv)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, p.o.CallTimeout)
		resp, err := client.Apply(cctx, &configv1.ApplyRequest{Manifest: manifest})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			p.log.InfoContext(ctx, "trust bundle published as ClusterTrustBundle", "name", want.Metadata.Name,
				"version", b.Version, "roots", len(b.Roots), "result", resp.GetResult().String())
			return nil
		case codes.Aborted, codes.NotFound:
			// Another writer changed (or deleted) it since the read.
			continue
		}
		return fmt.Errorf("apply %s %s: %w", Kind, want.Metadata.Name, err)
	}
	return fmt.Errorf("apply %s %s: lost %d races with other writers", Kind, want.Metadata.Name, conflictAttempts)
}

// get reads the stored object; nil when there is none.
func (p *Publisher) get(ctx context.Context, client configv1.ConfigServiceClient, ref *configv1.ObjectRef) (*object, error) {
	cctx, cancel := context.WithTimeout(ctx, p.o.CallTimeout)
	defer cancel()
	resp, err := client.Get(cctx, &configv1.GetRequest{Ref: ref})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", Kind, ref.GetName(), err)
	}
	o, err := parse(resp.GetObject())
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// jitter spreads d over [d/2, d], so replicas that failed together retry
// apart.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}
