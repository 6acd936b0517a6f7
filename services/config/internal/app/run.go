package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/presence"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	"github.com/ambitmesh/ambit/services/config/internal/server"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

func spiffeTrustDomain(s string) (spiffeid.TrustDomain, error) {
	return spiffeid.TrustDomainFromString(s)
}

// Run runs one config replica until ctx ends.
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

	r, err := newReplica(ctx, cfg, info, tel)
	if err != nil {
		return err
	}
	defer r.close()
	return r.run(ctx)
}

// replica holds the running parts of one config replica.
type replica struct {
	cfg     *Config
	info    buildinfo.Info
	tel     *telemetry.Telemetry
	log     *slog.Logger
	td      spiffeid.TrustDomain
	source  *spiffe.Source // nil in insecure-loopback mode
	etcd    *clientv3.Client
	nats    *nats.Conn
	store   *store.Store
	tracker *proxystatus.Tracker
	pub     *changefeed.Publisher
	hub     *watchhub.Hub
	feed    *changefeed.Consumer
	grpc    *grpc.Server
	lis     net.Listener
	admin   *run.Admin
	adminLn net.Listener
}

func newReplica(ctx context.Context, cfg *Config, info buildinfo.Info, tel *telemetry.Telemetry) (r *replica, err error) {
	r = &replica{cfg: cfg, info: info, tel: tel, log: tel.Logger()}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.td, err = spiffeTrustDomain(cfg.TrustDomain); err != nil {
		return nil, &run.ConfigError{Err: err}
	}
	creds := insecure.NewCredentials()
	if !cfg.InsecureLoopback {
		files := spiffe.Files{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, BundleFile: cfg.BundleFile}
		if r.source, err = spiffe.NewSourceFromFiles(files, r.td); err != nil {
			return nil, &run.ConfigError{Err: err}
		}
		// Any Ambit identity of our trust domain may connect; each method
		// then decides what the caller may do.
		authorize := spiffe.AuthorizeAnyOf(
			spiffe.AuthorizeAdmins(r.td),
			spiffe.AuthorizeNodes(r.td),
			spiffe.AuthorizeComponents(r.td, spiffe.KnownComponents()...),
		)
		creds = credentials.NewTLS(spiffe.ServerConfig(r.source, authorize))
	}
	if r.etcd, err = cfg.Etcd.Connect(r.log); err != nil {
		return nil, err
	}
	if r.nats, err = cfg.NATS.Connect(presence.ServiceName(Component)+"-"+cfg.ReplicaID, r.log); err != nil {
		return nil, err
	}
	svcCIDRs, _ := parsePrefixes(cfg.ServiceCIDRs)
	seCIDRs, _ := parsePrefixes(cfg.ServiceEntryCIDRs)
	r.store, err = store.New(store.Options{
		Etcd: r.etcd, ServiceCIDRs: svcCIDRs, ServiceEntryCIDRs: seCIDRs,
		TracerProvider: tel.TracerProvider(), Propagator: tel.Propagator(), Logger: r.log,
	})
	if err != nil {
		return nil, err
	}
	r.tracker = proxystatus.NewTracker(proxystatus.TrackerOptions{ExpireAfter: cfg.StatusExpiry, Logger: r.log})
	feedTel := changefeed.Telemetry{
		Logger: r.log, TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(), Propagator: tel.Propagator(),
	}
	// Watch is served from this replica's own consumer of the feed, never
	// from an etcd watch per client: etcd load stays independent of the
	// number of watchers (DESIGN §3).
	r.hub, err = watchhub.New(watchhub.Options{
		Render: watchhub.StoreRender(r.store), Capacity: cfg.WatchCacheEvents, MaxBytes: cfg.WatchCacheBytes, WatcherBuffer: cfg.WatchBufferEvents,
		Logger: r.log, MeterProvider: tel.MeterProvider(),
	})
	if err != nil {
		return nil, err
	}
	r.feed, err = changefeed.NewConsumer(changefeed.ConsumerOptions{
		Etcd: r.etcd, NATS: r.nats, Handler: r.hub, Name: "config-watch", Telemetry: feedTel,
	})
	if err != nil {
		return nil, err
	}
	api, err := server.New(server.Options{
		Store: r.store, Watch: r.hub, Distribution: r.tracker, InsecureLoopback: cfg.InsecureLoopback,
		MaxObjectBytes: cfg.MaxObjectBytes, Logger: r.log, MeterProvider: tel.MeterProvider(),
	})
	if err != nil {
		return nil, err
	}
	r.pub, err = changefeed.NewPublisher(changefeed.PublisherOptions{
		Etcd: r.etcd, NATS: r.nats, ID: cfg.ReplicaID, SessionTTL: cfg.ElectionTTL,
		Stream:    changefeed.StreamOptions{Replicas: cfg.StreamReplicas, MaxAge: cfg.StreamMaxAge},
		Telemetry: feedTel,
	})
	if err != nil {
		return nil, err
	}

	r.grpc = grpc.NewServer(
		grpc.Creds(creds),
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider()),
			otelgrpc.WithMeterProvider(tel.MeterProvider()),
			otelgrpc.WithPropagators(tel.Propagator()),
		)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	configv1.RegisterConfigServiceServer(r.grpc, api)
	if r.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, &run.ConfigError{Err: fmt.Errorf("listen-addr %s: %w", cfg.ListenAddr, err)}
	}
	if r.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, &run.ConfigError{Err: fmt.Errorf("admin-addr %s: %w", cfg.AdminAddr, err)}
	}
	r.admin = run.NewAdmin(run.AdminOptions{Metrics: tel.Handler()})
	r.admin.AddReadinessCheck("etcd", func(ctx context.Context) error {
		_, err := r.etcd.Get(ctx, "/ambit/health", clientv3.WithCountOnly())
		return err
	})
	r.admin.AddReadinessCheck("nats", func(context.Context) error {
		if !r.nats.IsConnected() {
			return fmt.Errorf("nats is %s", r.nats.Status())
		}
		return nil
	})
	// Until the watch cache holds its first snapshot, Watch calls wait.
	r.admin.AddReadinessCheck("watch-cache", func(context.Context) error {
		select {
		case <-r.hub.Ready():
			return nil
		default:
			return errors.New("watch cache has not synced with the change feed yet")
		}
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
	g.Go("changefeed-publisher", r.pub.Run)
	g.Go("watch-cache", func(ctx context.Context) error {
		// Open watches end when the replica stops, so clients move to
		// another replica and the gRPC server's graceful stop is not held
		// up by streams that never finish on their own.
		defer r.hub.Close()
		return r.feed.Run(ctx)
	})
	g.Go("proxy-status", func(ctx context.Context) error { return r.tracker.Run(ctx, r.nats) })
	if r.source != nil {
		g.Go("certificates", func(ctx context.Context) error {
			r.source.WatchFiles(ctx, spiffe.Files{CertFile: r.cfg.CertFile, KeyFile: r.cfg.KeyFile, BundleFile: r.cfg.BundleFile}, r.td, 10*time.Second, r.log)
			return nil
		})
	}
	if err := r.ensureNamespaces(ctx); err != nil {
		// Not fatal: etcd may be down right now; the API works regardless.
		r.log.Warn("could not ensure the default namespaces", "error", err)
	}
	r.log.Info("serving", "grpc", r.lis.Addr().String(), "admin", r.adminLn.Addr().String())
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ensureNamespaces creates the namespaces every mesh has, as a Kubernetes
// cluster with Istio does — "default" for objects that name no namespace
// and "istio-system", Istio's root namespace for mesh-wide policies — if
// they are absent. It never touches existing ones: their labels are the
// user's.
func (r *replica) ensureNamespaces(ctx context.Context) error {
	for _, ns := range []string{"default", "istio-system"} {
		obj, err := r.store.Kinds().DecodeOne([]byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + ns + `"}}`))
		if err != nil {
			return err
		}
		if _, _, err := r.store.EnsureExists(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// stats is what `ambitctl cluster` shows for this replica.
func (r *replica) stats() any {
	st := r.pub.Status()
	return map[string]any{
		"leader":   st.Leader,
		"proxies":  len(r.tracker.Proxies()),
		"feed":     st,
		"watch":    r.hub.Status(),
		"replica":  r.cfg.ReplicaID,
		"listenOn": r.lis.Addr().String(),
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
