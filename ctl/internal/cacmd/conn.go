// Package cacmd holds ambitctl's commands that talk to the certificate
// authority (ambit-ca):
//
//	ambitctl node token create <node> [--ttl 1h]   a single-use join token
//	ambitctl ca status [-o json]                   authorities, rotation, distribution
//	ambitctl ca rotate [--wait]                    drive a root rotation, showing progress
//
// They authenticate with an admin certificate, as every ambitctl call does
// (DESIGN §4): the files admin.crt, admin.key and bundle.pem that
// `ambit-ca issue-admin --out DIR` writes, found in --credentials-dir
// (default $AMBIT_CREDENTIALS_DIR, else ~/.ambit/admin). The CA is
// verified by its SPIFFE ID spiffe://<td>/ambit/ca against that bundle;
// the trust domain is taken from the admin certificate.
package cacmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Environment variables that provide flag defaults.
const (
	EnvCAAddr         = "AMBIT_CA_ADDR"
	EnvCredentialsDir = "AMBIT_CREDENTIALS_DIR"
)

// DefaultCAAddr is where a local CA listens.
const DefaultCAAddr = "127.0.0.1:15012"

// Credential file names (as `ambit-ca issue-admin` writes them).
const (
	CertFile   = "admin.crt"
	KeyFile    = "admin.key"
	BundleFile = "bundle.pem"
)

// Dialer opens a connection to the CA. addr and credentialsDir are what
// --ca-addr and --credentials-dir (or their variables) say, "" when unset,
// so a Dialer built on ambitctl's config contexts can fill in its own.
type Dialer func(ctx context.Context, addr, credentialsDir string) (*grpc.ClientConn, error)

// Option adjusts the commands.
type Option func(*options)

type options struct {
	dial         Dialer
	pollInterval time.Duration
	now          func() time.Time
}

// WithDialer replaces how the commands connect to the CA.
func WithDialer(d Dialer) Option { return func(o *options) { o.dial = d } }

// WithPollInterval sets how often `ca rotate` polls the status.
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.pollInterval = d } }

func newOptions(opts []Option) *options {
	o := &options{dial: DialTLS, pollInterval: time.Second, now: time.Now}
	for _, f := range opts {
		f(o)
	}
	return o
}

// connFlags are the connection flags of every CA command.
type connFlags struct {
	addr  string
	creds string
}

func (f *connFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.addr, "ca-addr", os.Getenv(EnvCAAddr),
		"CA address host:port (env "+EnvCAAddr+"; default "+DefaultCAAddr+")")
	cmd.PersistentFlags().StringVar(&f.creds, "credentials-dir", os.Getenv(EnvCredentialsDir),
		"directory with "+CertFile+", "+KeyFile+" and "+BundleFile+" (env "+EnvCredentialsDir+"; default ~/.ambit/admin)")
}

// DialTLS connects with the admin credentials in dir, verifying the CA's
// SPIFFE ID. Empty arguments mean DefaultCAAddr and ~/.ambit/admin.
func DialTLS(_ context.Context, addr, dir string) (*grpc.ClientConn, error) {
	if addr == "" {
		addr = DefaultCAAddr
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, errors.New("no credentials directory: pass --credentials-dir or set " + EnvCredentialsDir)
		}
		dir = filepath.Join(home, ".ambit", "admin")
	}
	files := spiffe.Files{
		CertFile:   filepath.Join(dir, CertFile),
		KeyFile:    filepath.Join(dir, KeyFile),
		BundleFile: filepath.Join(dir, BundleFile),
	}
	// The trust domain is the admin certificate's own.
	svid, _, err := files.Load(spiffe.DefaultTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("admin credentials: %w (create them with `ambit-ca issue-admin --out %s`)", err, dir)
	}
	td := svid.ID.TrustDomain()
	src, err := spiffe.NewSourceFromFiles(files, td)
	if err != nil {
		return nil, err
	}
	caID, err := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	if err != nil {
		return nil, err
	}
	tlsCfg := spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(caID))
	return grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
}

func (o *options) connect(cmd *cobra.Command, f *connFlags) (*grpc.ClientConn, error) {
	return o.dial(cmd.Context(), f.addr, f.creds)
}
