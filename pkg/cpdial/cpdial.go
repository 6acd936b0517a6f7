// Package cpdial dials a replicated control-plane service (config, ca, xds)
// from a list of replica addresses (DESIGN §6): every client of such a
// service takes the list, spreads calls over the replicas and skips a dead
// one, so any live replica answers. In Kubernetes the list is a Service.
package cpdial

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// scheme is the target scheme of the per-connection resolver. It is
// registered with that one ClientConn only (grpc.WithResolvers), never
// globally, so any number of connections to different lists coexist.
const scheme = "ambit"

// DefaultName is the target name when WithName is not given.
const DefaultName = "control-plane"

// roundRobin makes gRPC connect to every replica and pick among the ready
// ones, so a dead replica is skipped instead of being retried first.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Option adjusts Dial.
type Option func(*options)

type options struct {
	name       string
	maxBackoff time.Duration
	dialOpts   []grpc.DialOption
}

// WithName names the service in the target (ambit:///<name>). gRPC sends
// it as :authority and as the TLS server name; it shows in logs and
// traces. Peers are identified by their SPIFFE ID, never by this name.
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithMaxBackoff caps gRPC's delay between reconnection attempts to a
// replica (gRPC's default grows to 2 minutes), so a replica that comes back
// is used again no later than max after it did. Attempts also time out
// after 5 seconds instead of 20, so a black-holed replica is given up on
// sooner.
func WithMaxBackoff(maxBackoff time.Duration) Option {
	return func(o *options) { o.maxBackoff = maxBackoff }
}

// WithDialOptions adds gRPC dial options, such as a stats handler for
// OpenTelemetry or interceptors. They must not set the resolver, the
// transport credentials or the load-balancing configuration.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Dial returns a client of the service whose replicas listen on addrs
// (host:port each). Calls are spread round-robin over the replicas that
// are up; a replica that fails is skipped until it reconnects. The
// connection is lazy: nothing is dialed before the first call, so Dial
// succeeds while every replica is still down. creds authenticate both
// ends; MTLS builds the usual ones. Close the connection when done.
func Dial(addrs []string, creds credentials.TransportCredentials, opts ...Option) (*grpc.ClientConn, error) {
	if err := CheckAddresses(addrs); err != nil {
		return nil, err
	}
	if creds == nil {
		return nil, errors.New("cpdial: no transport credentials")
	}
	o := options{name: DefaultName}
	for _, opt := range opts {
		opt(&o)
	}
	if o.name == "" {
		return nil, errors.New("cpdial: empty service name")
	}
	if o.maxBackoff < 0 {
		return nil, fmt.Errorf("cpdial: negative max backoff %s", o.maxBackoff)
	}
	r := manual.NewBuilderWithScheme(scheme)
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	dialOpts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(roundRobin),
	}
	if o.maxBackoff > 0 {
		dialOpts = append(dialOpts, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: min(time.Second, o.maxBackoff), Multiplier: 1.6, Jitter: 0.2, MaxDelay: o.maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}))
	}
	dialOpts = append(dialOpts, o.dialOpts...)
	conn, err := grpc.NewClient(scheme+":///"+o.name, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("cpdial: %s: %w", o.name, err)
	}
	return conn, nil
}

// CheckAddresses reports what is wrong with a list of replica addresses:
// empty, or an entry that is not host:port with a numeric port. Services
// call it from Config.Validate, so a bad flag fails at start rather than at
// the first call.
func CheckAddresses(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("cpdial: no server addresses")
	}
	var errs []error
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("cpdial: address %q is not host:port: %w", a, err))
			continue
		}
		if host == "" {
			errs = append(errs, fmt.Errorf("cpdial: address %q has no host", a))
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			errs = append(errs, fmt.Errorf("cpdial: address %q: port %q is not a number in 1..65535", a, port))
		}
	}
	return errors.Join(errs...)
}

// MTLS returns the credentials of a control-plane client: it presents src's
// SVID (or none while src holds none, as a node before its join) and
// accepts only a server that verifies against src's bundle and that
// authorize allows, e.g. spiffe.AuthorizeComponents(td, spiffe.ComponentCA).
// Renewed certificates and rotated bundles in src apply to the next
// handshake.
func MTLS(src spiffe.X509Source, authorize spiffe.Authorizer) credentials.TransportCredentials {
	return credentials.NewTLS(spiffe.ClientConfig(src, authorize))
}
