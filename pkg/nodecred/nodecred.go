// Package nodecred is the node credential lifecycle that every node agent
// (CNI agent, ztunnel, gateway) shares (DESIGN §4 "Node bootstrap"): trade
// a single-use join token at the CA for the node certificate
// spiffe://<td>/ambit/node/<node> once, keep it in a per-node directory so
// a restart needs no token, renew it at half-life over mTLS with the
// certificate itself, and follow the CA's trust bundle so root rotation
// reaches the node without a restart.
//
// Agents of one node may share the directory: Obtain serializes them on a
// lock file, so the first one redeems the token and the others load what
// it stored.
package nodecred

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Defaults of Options.
const (
	DefaultRenewFraction = 0.5
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 30 * time.Second
)

// attemptTimeout bounds one call to the CA, so a replica that accepted the
// connection but hangs does not stall renewal; the next attempt may reach
// another replica.
const attemptTimeout = 30 * time.Second

// Options configure Obtain.
type Options struct {
	// Node is the node's name; the credential is spiffe://<td>/ambit/node/<Node>.
	Node string
	// TrustDomain defaults to cluster.local.
	TrustDomain spiffeid.TrustDomain
	// Dir holds the node's cert.pem, key.pem (0600) and bundle.pem; one
	// directory per node (several nodes share a host in the local runtime).
	// It is created (0700) if missing.
	Dir string
	// JoinToken is the single-use token of `ambitctl node token create`.
	// Only needed when Dir holds no usable credential; when it does, the
	// token is left unused.
	JoinToken string
	// CAAddresses are the CA replicas (host:port).
	CAAddresses []string
	// BootstrapBundleFile holds the PEM roots that verify the CA during the
	// join, before the node has the trust bundle. Only needed to join.
	BootstrapBundleFile string
	// Validity is the certificate lifetime asked of the CA; 0 takes the
	// CA's default (24h).
	Validity time.Duration
	// RenewFraction is the part of a certificate's lifetime after which it
	// is renewed; default 0.5 (half-life, as Istio).
	RenewFraction float64
	// MinBackoff and MaxBackoff bound the jittered delay between retries of
	// a failed call to the CA; defaults 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to every connection to the CA, e.g. an
	// OpenTelemetry stats handler.
	DialOptions []grpc.DialOption
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (o *Options) normalize() (spiffe.Identity, error) {
	if o.TrustDomain.IsZero() {
		o.TrustDomain = spiffe.DefaultTrustDomain()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RenewFraction == 0 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	o.JoinToken = strings.TrimSpace(o.JoinToken)
	var errs []error
	id, err := spiffe.NewNode(o.TrustDomain, o.Node)
	if err != nil {
		errs = append(errs, fmt.Errorf("node: %w", err))
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("no credential directory"))
	}
	if err := cpdial.CheckAddresses(o.CAAddresses); err != nil {
		errs = append(errs, fmt.Errorf("CA addresses: %w", err))
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		errs = append(errs, fmt.Errorf("renew fraction %v is not between 0 and 1", o.RenewFraction))
	}
	if o.Validity < 0 {
		errs = append(errs, fmt.Errorf("negative validity %s", o.Validity))
	}
	if o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff {
		errs = append(errs, fmt.Errorf("backoff bounds %s..%s", o.MinBackoff, o.MaxBackoff))
	}
	if err := errors.Join(errs...); err != nil {
		return spiffe.Identity{}, fmt.Errorf("nodecred: %w", err)
	}
	return id, nil
}

// Credential is a node's certificate and trust bundle, kept current by Run.
// TLS configurations built on Source pick up every renewal and bundle
// change on their next handshake.
type Credential struct {
	o       Options
	id      spiffe.Identity
	log     *slog.Logger
	src     *spiffe.Source
	caAuthz spiffe.Authorizer

	running atomic.Bool
	// writeMu makes each change and its persisting one step, so the files
	// never go back to an older certificate or bundle.
	writeMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	st      state
	changed chan struct{} // closed and replaced on every change of st
}

// state is what the credential holds at one moment.
type state struct {
	svid    *x509svid.SVID
	issued  time.Time // start of the renewal clock, see renewAt
	bundle  *x509bundle.Bundle
	version uint64 // of the bundle, as the CA numbers it; 0 until Watch delivered one
}

// Obtain returns the node's credential: the one stored in Dir if it is
// this node's, unexpired and verified by the stored bundle, else a new one
// from the CA for the join token, stored in Dir. Without a usable stored
// credential and without a token it fails, saying why the stored one is
// not usable (a missing or corrupt file is named). A join is retried while
// the CA is unreachable, until ctx ends; a refused token is final.
func Obtain(ctx context.Context, o Options) (*Credential, error) {
	id, err := o.normalize()
	if err != nil {
		return nil, err
	}
	c := &Credential{
		o:       o,
		id:      id,
		log:     o.Logger.With("node_identity", id.String()),
		caAuthz: spiffe.AuthorizeComponents(o.TrustDomain, spiffe.ComponentCA),
		changed: make(chan struct{}),
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("nodecred: %w", err)
	}
	unlock, err := lockDir(ctx, o.Dir)
	if err != nil {
		return nil, fmt.Errorf("nodecred: %w", err)
	}
	defer unlock()

	st, loadErr := load(o.Dir, o.TrustDomain)
	if loadErr == nil {
		loadErr = c.usable(st.svid, st.bundle, filepath.Join(o.Dir, CertFile), filepath.Join(o.Dir, BundleFile))
	}
	if loadErr == nil {
		if o.JoinToken != "" {
			c.log.Info("using the stored node certificate; the join token was not used", "dir", o.Dir)
		}
		if err := c.init(st.svid, earliest(st.written, time.Now()), st.bundle); err != nil {
			return nil, err
		}
		c.log.Info("loaded node certificate", "dir", o.Dir, "not_after", st.svid.Certificates[0].NotAfter)
		return c, nil
	}
	if o.JoinToken == "" {
		return nil, fmt.Errorf("nodecred: node %s has no usable credential in %s (%w) and no join token; create one with `ambitctl node token create %s`",
			o.Node, o.Dir, loadErr, o.Node)
	}
	if !errors.Is(loadErr, errNoCredential) {
		c.log.Warn("the stored node certificate is not usable; joining with the token", "dir", o.Dir, "error", loadErr)
	}
	svid, b, err := c.join(ctx)
	if err != nil {
		return nil, err
	}
	if err := persist(o.Dir, svid, b); err != nil {
		// The token is spent: without the files a restart needs a new one.
		return nil, fmt.Errorf("nodecred: storing the joined credential in %s: %w", o.Dir, err)
	}
	if err := c.init(svid, time.Now(), b); err != nil {
		return nil, err
	}
	c.log.Info("joined: node certificate issued for the join token", "dir", o.Dir, "not_after", svid.Certificates[0].NotAfter)
	return c, nil
}

func (c *Credential) init(svid *x509svid.SVID, issued time.Time, b *x509bundle.Bundle) error {
	src, err := spiffe.NewSource(svid, b)
	if err != nil {
		return fmt.Errorf("nodecred: %w", err)
	}
	if nb := svid.Certificates[0].NotBefore; nb.After(issued) {
		issued = nb
	}
	c.src, c.st = src, state{svid: svid, issued: issued, bundle: b}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// usable says why svid cannot serve as this node's credential, if it
// cannot; certName and bundleName name its sources in the error.
func (c *Credential) usable(svid *x509svid.SVID, b *x509bundle.Bundle, certName, bundleName string) error {
	leaf := svid.Certificates[0]
	switch {
	case svid.ID != c.id.ID():
		return fmt.Errorf("%s holds %s, not %s", certName, svid.ID, c.id)
	case !time.Now().Before(leaf.NotAfter):
		return fmt.Errorf("%s expired at %s", certName, leaf.NotAfter.UTC().Format(time.RFC3339))
	case b.TrustDomain() != c.o.TrustDomain:
		return fmt.Errorf("%s is for trust domain %q, not %q", bundleName, b.TrustDomain().Name(), c.o.TrustDomain.Name())
	}
	if _, err := spiffe.VerifyPeer(svid.Certificates, b, spiffe.AuthorizeIdentity(c.id)); err != nil {
		return fmt.Errorf("%s does not verify against %s: %w", certName, bundleName, err)
	}
	return nil
}

// join redeems the token. The CA is verified against the bootstrap roots;
// the node presents no certificate (it has none yet).
func (c *Credential) join(ctx context.Context) (*x509svid.SVID, *x509bundle.Bundle, error) {
	if c.o.BootstrapBundleFile == "" {
		return nil, nil, errors.New("nodecred: joining needs a bootstrap bundle file, the roots that verify the CA")
	}
	roots, err := x509bundle.Load(c.o.TrustDomain, c.o.BootstrapBundleFile)
	if err != nil {
		return nil, nil, fmt.Errorf("nodecred: bootstrap bundle %s: %w", c.o.BootstrapBundleFile, err)
	}
	boot, err := spiffe.NewSource(nil, roots)
	if err != nil {
		return nil, nil, fmt.Errorf("nodecred: bootstrap bundle %s: %w", c.o.BootstrapBundleFile, err)
	}
	conn, err := c.dial(boot)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	var (
		svid *x509svid.SVID
		b    *x509bundle.Bundle
	)
	err = c.retry(ctx, "join", time.Time{}, func(ctx context.Context) error {
		var err error
		svid, b, err = caclient.Join(ctx, conn, c.o.JoinToken, c.id, c.o.Validity)
		if err != nil {
			return err
		}
		return c.usable(svid, b, "the joined certificate", "the CA's trust bundle")
	}, joinPermanent)
	if err != nil {
		return nil, nil, fmt.Errorf("nodecred: join as %s: %w", c.id, err)
	}
	return svid, b, nil
}

// dial connects to the CA replicas, presenting src's certificate.
func (c *Credential) dial(src spiffe.X509Source) (*grpc.ClientConn, error) {
	conn, err := cpdial.Dial(c.o.CAAddresses, cpdial.MTLS(src, c.caAuthz),
		cpdial.WithName(string(spiffe.ComponentCA)),
		cpdial.WithMaxBackoff(c.o.MaxBackoff),
		cpdial.WithDialOptions(c.o.DialOptions...))
	if err != nil {
		return nil, fmt.Errorf("nodecred: %w", err)
	}
	return conn, nil
}

// Identity is the node's identity, spiffe://<td>/ambit/node/<node>.
func (c *Credential) Identity() spiffe.Identity { return c.id }

// Source holds the current certificate and trust bundle, for the TLS
// configurations of every control-plane client of the agent (e.g.
// cpdial.MTLS(cred.Source(), ...)).
func (c *Credential) Source() *spiffe.Source { return c.src }

// Files names the stored credential, for a process that reads files.
func (c *Credential) Files() spiffe.Files {
	return spiffe.Files{
		CertFile:   filepath.Join(c.o.Dir, CertFile),
		KeyFile:    filepath.Join(c.o.Dir, KeyFile),
		BundleFile: filepath.Join(c.o.Dir, BundleFile),
	}
}

// SVID returns the current certificate.
func (c *Credential) SVID() *x509svid.SVID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.svid
}

// BundleVersion is the CA's version of the installed trust bundle; 0 until
// Run has received one (a loaded bundle carries no version).
func (c *Credential) BundleVersion() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.version
}

// Changed returns a channel closed at the next change of the certificate
// or the trust bundle, for parties that pass them on (an SDS server, a
// bearer token to refresh). Take it before reading the current state, so
// no change falls in between.
func (c *Credential) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Credential) current() state {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}
