package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/presence"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	"github.com/ambitmesh/ambit/services/xds/internal/server"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
	"github.com/ambitmesh/ambit/services/xds/internal/translate"
)

// Run runs one xds replica until ctx ends.
func Run(ctx context.Context, cfg *Config, info buildinfo.Info) error {
	if cfg.ReplicaID == "" {
		host, _ := os.Hostname()
		cfg.ReplicaID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Component: Component, Version: info.Version, InstanceID: cfg.ReplicaID, LogLevel: cfg.LogLevel,
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger()
	log.Info("starting", "replica", cfg.ReplicaID, "version", info.String(), "listen", cfg.ListenAddr)

	r, err := newReplica(cfg, info, tel)
	if err != nil {
		return err
	}
	defer r.close()
	return r.run(ctx)
}

// replica holds the running parts of one xds replica.
type replica struct {
	cfg      *Config
	info     buildinfo.Info
	log      *slog.Logger
	td       spiffeid.TrustDomain
	source   *spiffe.Source
	etcd     *clientv3.Client
	nats     *nats.Conn
	cache    *snapshot.Cache
	feed     *feedHandler
	consumer *changefeed.Consumer
	xds      *server.Server
	status   *proxystatus.Publisher
	grpc     *grpc.Server
	lis      net.Listener
	admin    *run.Admin
	adminLn  net.Listener
}

func newReplica(cfg *Config, info buildinfo.Info, tel *telemetry.Telemetry) (r *replica, err error) {
	r = &replica{cfg: cfg, info: info, log: tel.Logger()}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.td, err = spiffeid.TrustDomainFromString(cfg.TrustDomain); err != nil {
		return nil, &run.ConfigError{Err: err}
	}
	files := spiffe.Files{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, BundleFile: cfg.BundleFile}
	if r.source, err = spiffe.NewSourceFromFiles(files, r.td); err != nil {
		return nil, &run.ConfigError{Err: err}
	}
	if r.etcd, err = cfg.Etcd.Connect(r.log); err != nil {
		return nil, err
	}
	if r.nats, err = cfg.NATS.Connect(presence.ServiceName(Component)+"-"+cfg.ReplicaID, r.log); err != nil {
		return nil, err
	}

	r.cache = snapshot.New(snapshot.Options{})
	tr := translate.New(translate.Options{
		ClusterID: cfg.ClusterID, DomainSuffix: cfg.DomainSuffix, TrustDomain: cfg.TrustDomain,
		Network: cfg.Network, RootNamespace: cfg.RootNamespace, Logger: r.log,
	})
	r.feed = newFeedHandler(tr, r.cache)
	r.consumer, err = changefeed.NewConsumer(changefeed.ConsumerOptions{
		Etcd: r.etcd, NATS: r.nats, Handler: r.feed, Name: Component, Kinds: translate.Kinds(),
		Telemetry: changefeed.Telemetry{
			Logger: r.log, TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(), Propagator: tel.Propagator(),
		},
	})
	if err != nil {
		return nil, err
	}
	r.xds, err = server.New(server.Options{
		Cache: r.cache,
		// Bearer node credentials (Istio's ztunnel) join this chain once
		// their verification is in pkg.
		Authenticator:    server.Chain{server.CertificateAuthenticator{TrustDomain: r.td}},
		Debounce:         cfg.Debounce,
		MaxResponseBytes: cfg.MaxResponseBytes,
		ReplicaID:        cfg.ReplicaID,
		Ready:            r.feed.Ready(),
		Logger:           r.log,
		TracerProvider:   tel.TracerProvider(),
		MeterProvider:    tel.MeterProvider(),
	})
	if err != nil {
		return nil, err
	}
	r.status, err = proxystatus.NewPublisher(proxystatus.PublisherOptions{
		NATS: r.nats, Replica: cfg.ReplicaID, Collect: r.xds.ProxyReports,
		Interval: cfg.StatusInterval, FullInterval: cfg.StatusFullInterval, Logger: r.log,
	})
	if err != nil {
		return nil, err
	}

	// A certificate that verifies must belong to a proxy; callers without
	// one get to the Authenticator chain (bearer credentials).
	authorize := spiffe.AuthorizeAnyOf(
		spiffe.AuthorizeNodes(r.td),
		spiffe.AuthorizeWorkloads(r.td),
		spiffe.AuthorizeComponents(r.td, spiffe.ComponentGateway),
	)
	r.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(spiffe.OptionalClientCertServerConfig(r.source, authorize))),
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider()),
			otelgrpc.WithMeterProvider(tel.MeterProvider()),
			otelgrpc.WithPropagators(tel.Propagator()),
		)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// One long-lived stream per proxy: release each connection's write
		// buffer after every flush and keep the read buffer small, so an
		// idle proxy costs little beyond its stream state (CP-2).
		grpc.ReadBufferSize(8<<10),
	)
	r.xds.Register(r.grpc)
	if r.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, &run.ConfigError{Err: fmt.Errorf("listen-addr %s: %w", cfg.ListenAddr, err)}
	}
	if r.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, &run.ConfigError{Err: fmt.Errorf("admin-addr %s: %w", cfg.AdminAddr, err)}
	}
	r.admin = run.NewAdmin(run.AdminOptions{
		Metrics: tel.Handler(),
		Pprof:   cfg.Pprof,
		Handlers: map[string]http.Handler{
			"GET /debug/syncz":       r.xds.SynczHandler(),
			"GET /debug/config_dump": r.xds.ConfigDumpHandler(),
		},
	})
	r.admin.AddReadinessCheck("changefeed", func(context.Context) error {
		if !r.feed.synced() {
			return errors.New("the change feed has not been listed yet")
		}
		return nil
	})
	r.admin.AddReadinessCheck("nats", func(context.Context) error {
		if !r.nats.IsConnected() {
			return fmt.Errorf("nats is %s", r.nats.Status())
		}
		return nil
	})
	return r, nil
}

func (r *replica) run(ctx context.Context) error {
	svc, err := presence.Register(r.nats, presence.Replica{
		Info: r.info, Replica: r.cfg.ReplicaID, Address: r.lis.Addr().String(), Stats: r.stats,
	})
	if err != nil {
		return err
	}
	defer func() { _ = svc.Stop() }()

	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: r.cfg.ShutdownTimeout, Logger: r.log})
	g.Go("grpc", func(ctx context.Context) error { return run.ServeGRPC(ctx, r.grpc, r.lis) })
	g.Go("admin", func(ctx context.Context) error { return r.admin.Serve(ctx, r.adminLn) })
	g.Go("changefeed-consumer", r.consumer.Run)
	g.Go("xds-dispatcher", r.xds.Run)
	g.Go("proxy-status", r.status.Run)
	g.Go("certificates", func(ctx context.Context) error {
		files := spiffe.Files{CertFile: r.cfg.CertFile, KeyFile: r.cfg.KeyFile, BundleFile: r.cfg.BundleFile}
		r.source.WatchFiles(ctx, files, r.td, 10*time.Second, r.log)
		return nil
	})
	r.log.Info("serving", "grpc", r.lis.Addr().String(), "admin", r.adminLn.Addr().String())
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// stats is what `ambitctl cluster` shows for this replica.
func (r *replica) stats() any {
	settled := r.xds.Settled()
	resources := map[string]int{}
	for _, url := range settled.TypeURLs() {
		resources[url] = settled.Len(url)
	}
	return map[string]any{
		"replica":             r.cfg.ReplicaID,
		"listenOn":            r.lis.Addr().String(),
		"streams":             r.xds.StreamCount(),
		"generation":          settled.Generation(),
		"revision":            settled.Revision(),
		"lastAppliedRevision": r.consumer.LastAppliedRevision(),
		"synced":              r.feed.synced(),
		"resources":           resources,
	}
}

func (r *replica) close() {
	if r.lis != nil {
		r.lis.Close()
	}
	if r.adminLn != nil {
		r.adminLn.Close()
	}
	if r.nats != nil {
		r.nats.Close()
	}
	if r.etcd != nil {
		r.etcd.Close()
	}
}
