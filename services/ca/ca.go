package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/authz"
	"github.com/ambitmesh/ambit/services/ca/internal/bootstrap"
	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/clustertrustbundle"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/ratelimit"
	"github.com/ambitmesh/ambit/services/ca/internal/rotation"
	"github.com/ambitmesh/ambit/services/ca/internal/server"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// Options are the process-level inputs of New that do not come from the
// configuration. All are optional.
type Options struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Listener replaces listening on Config.ListenAddr (tests pass one on a
	// random loopback port).
	Listener net.Listener
	// Now replaces the clock for certificate validity, token expiry and the
	// rotation's drop time (tests).
	Now func() time.Time
	// DropMargin replaces rotation.DefaultDropMargin (tests).
	DropMargin time.Duration
	// Publishers receive every trust bundle besides the Watch streams.
	Publishers []bundle.Publisher
	// PublishMaxBackoff caps the ClusterTrustBundle publisher's retry
	// delay (tests; default clustertrustbundle.DefaultMaxBackoff).
	PublishMaxBackoff time.Duration
}

// CA is one running replica.
type CA struct {
	cfg      Config
	log      *slog.Logger
	etcd     *clientv3.Client
	nc       *nats.Conn
	lis      net.Listener
	store    *keystore.Store
	rot      *rotation.Manager
	index    *authz.Index
	consumer *changefeed.Consumer
	reporter *bundle.Reporter
	ctb      *clustertrustbundle.Publisher // nil unless Config.ConfigServers
	srv      *server.Server
	grpc     *grpc.Server
}

// New connects to etcd and NATS, loads (or on first boot creates) the key
// material and prepares the gRPC server; Run serves.
func New(ctx context.Context, cfg Config, o Options) (_ *CA, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = tracenoop.NewTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = metricnoop.NewMeterProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &CA{cfg: cfg, log: o.Logger}
	defer func() {
		if err != nil {
			c.close()
		}
	}()

	td := cfg.trustDomain()
	kek, err := keystore.LoadKEK(cfg.KEKFile, cfg.KEK)
	if err != nil {
		return nil, &run.ConfigError{Err: err}
	}
	if c.etcd, err = newEtcd(cfg.EtcdEndpoints); err != nil {
		return nil, err
	}
	if c.store, err = openStore(ctx, c.etcd, kek, &cfg.StoreConfig, o.Logger, o.Now); err != nil {
		return nil, err
	}
	c.rot = &rotation.Manager{
		Store: c.store, Etcd: c.etcd, KEK: kek, TrustDomain: td, RootValidity: cfg.RootValidity,
		DropMargin: o.DropMargin, Now: o.Now, Logger: o.Logger.With("component", "rotation"),
	}
	c.nc, err = nats.Connect(cfg.NATSURL, nats.Name("ambit-ca "+cfg.ReplicaID), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	c.index = authz.NewIndex()
	c.consumer, err = changefeed.NewConsumer(changefeed.ConsumerOptions{
		Etcd: c.etcd, NATS: c.nc, Handler: c.index, Name: "ca", Kinds: []changefeed.GroupKind{authz.PodKind},
		Telemetry: changefeed.Telemetry{Logger: o.Logger, TracerProvider: o.TracerProvider,
			MeterProvider: o.MeterProvider, Propagator: o.Propagator},
	})
	if err != nil {
		return nil, err
	}
	br := bundle.NewBroadcaster()
	c.reporter = &bundle.Reporter{Etcd: c.etcd, Replica: cfg.ReplicaID, Source: br, Logger: o.Logger}
	publishers := o.Publishers
	if len(cfg.ConfigServers) > 0 {
		c.ctb, err = clustertrustbundle.New(clustertrustbundle.Options{
			Addresses: cfg.ConfigServers, TrustDomain: td, Logger: o.Logger, MaxBackoff: o.PublishMaxBackoff,
		})
		if err != nil {
			return nil, &run.ConfigError{Err: err}
		}
		publishers = append(slices.Clip(publishers), c.ctb)
	}
	c.srv, err = server.New(ctx, server.Options{
		TrustDomain: td,
		Store:       c.store,
		Rotation:    c.rot,
		Tokens:      bootstrap.NewStore(c.etcd, o.Now),
		Authz:       &authz.Authorizer{Index: c.index, Etcd: c.etcd, TrustDomain: td, Logger: o.Logger},
		Broadcaster: br,
		Publishers:  publishers,
		TTL:         signer.TTLPolicy{Default: cfg.DefaultTTL, Max: cfg.MaxTTL},
		Limiter:     ratelimit.New(cfg.RateLimit, cfg.RateBurst, nil),
		Logger:      o.Logger,
		Tracer:      o.TracerProvider.Tracer("github.com/ambitmesh/ambit/services/ca"),
		Meter:       o.MeterProvider,
		Now:         o.Now,
	})
	if err != nil {
		return nil, err
	}
	c.grpc = grpc.NewServer(
		grpc.Creds(c.srv.Credentials()),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(o.TracerProvider),
			otelgrpc.WithMeterProvider(o.MeterProvider), otelgrpc.WithPropagators(o.Propagator))),
		grpc.MaxRecvMsgSize(256<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	c.srv.Register(c.grpc)
	c.lis = o.Listener
	if c.lis == nil {
		if c.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, &run.ConfigError{Err: fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)}
		}
	}
	snap := c.store.Current()
	o.Logger.Info("CA ready", "replica", cfg.ReplicaID, "addr", c.lis.Addr().String(), "trust_domain", td.Name(),
		"active_authority", snap.State.Active, "bundle_version", snap.State.BundleVersion)
	return c, nil
}

func newEtcd(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	return cli, nil
}

// openStore opens the key material, creating it on first boot from the
// operator's files or a generated root.
func openStore(ctx context.Context, etcd *clientv3.Client, kek *keystore.KEK, cfg *StoreConfig, log *slog.Logger, now func() time.Time) (*keystore.Store, error) {
	td := cfg.trustDomain()
	initial := func() (*keystore.Material, error) {
		if cfg.SigningCertFile == "" {
			return keystore.GenerateRoot(td, cfg.RootValidity, now())
		}
		chain, err := os.ReadFile(cfg.SigningCertFile)
		if err != nil {
			return nil, &run.ConfigError{Err: err}
		}
		if cfg.RootCertFile != "" {
			root, err := os.ReadFile(cfg.RootCertFile)
			if err != nil {
				return nil, &run.ConfigError{Err: err}
			}
			chain = append(append(chain, '\n'), root...)
		}
		key, err := os.ReadFile(cfg.SigningKeyFile)
		if err != nil {
			return nil, &run.ConfigError{Err: err}
		}
		m, err := keystore.ParseMaterial(chain, key, td, now())
		if err != nil {
			return nil, &run.ConfigError{Err: err}
		}
		return m, nil
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return keystore.Open(octx, keystore.Options{
		Client: etcd, KEK: kek, TrustDomain: td, Initial: initial,
		Logger: log.With("component", "keystore"), Now: now,
	})
}

// Addr is the gRPC listener's address.
func (c *CA) Addr() net.Addr { return c.lis.Addr() }

// Source is the replica's serving certificate and bundle (tests use its
// bundle as the root of trust).
func (c *CA) Source() *spiffe.Source { return c.srv.Source() }

// IndexSynced reports whether the pod index has its first snapshot.
func (c *CA) IndexSynced() bool { return c.index.Synced() }

// Ready is the readiness check: etcd answers.
func (c *CA) Ready(ctx context.Context) error {
	_, err := c.etcd.Get(ctx, keystore.StateKey, clientv3.WithCountOnly())
	return err
}

// Run serves until ctx ends, then shuts down and releases everything.
func (c *CA) Run(ctx context.Context) error {
	defer c.close()
	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: c.cfg.ShutdownTimeout, Logger: c.log})
	g.Go("grpc", c.serveGRPC)
	g.Go("keystore", c.store.Run)
	g.Go("bundle", c.srv.Run)
	g.Go("rotation", c.rot.Run)
	g.Go("pod-index", c.consumer.Run)
	g.Go("replica-report", c.reporter.Run)
	if c.ctb != nil {
		g.Go("cluster-trust-bundle", func(ctx context.Context) error { return c.ctb.Run(ctx, c.srv.Source()) })
	}
	return g.Wait()
}

func (c *CA) serveGRPC(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		c.srv.Drain()
		sctx, cancel := run.ShutdownContext(ctx)
		defer cancel()
		stopped := make(chan struct{})
		go func() { c.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			c.grpc.Stop()
			<-stopped
		}
	}()
	err := c.grpc.Serve(c.lis)
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

func (c *CA) close() {
	if c.srv != nil {
		_ = c.srv.Close()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.etcd != nil {
		_ = c.etcd.Close()
	}
}

// The CA's metric names.
const (
	MetricIssued     = server.MetricIssued
	MetricDenied     = server.MetricDenied
	MetricDuration   = server.MetricDuration
	MetricRootExpiry = server.MetricRootExpiry
)

// IndexRevision is the etcd revision the pod index reflects.
func (c *CA) IndexRevision() int64 { return c.index.Revision() }
