package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/netns"
	"github.com/ambitmesh/ambit/pkg/nodecred"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/cni/internal/agent"
	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
	"github.com/ambitmesh/ambit/services/cni/internal/redirect"
	"github.com/ambitmesh/ambit/services/cni/internal/zds"
)

// Run runs the node agent until ctx ends.
func Run(ctx context.Context, cfg *Config, info buildinfo.Info) error {
	cfg.resolve()
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Component: Component, Version: info.Version, InstanceID: cfg.Node, LogLevel: cfg.LogLevel,
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger().With("node", cfg.Node)
	log.Info("starting", "version", info.String(), "mode", cfg.Mode)
	td := spiffeid.RequireTrustDomainFromString(cfg.TrustDomain)

	token := cfg.JoinToken
	if cfg.JoinTokenFile != "" {
		b, err := os.ReadFile(cfg.JoinTokenFile)
		if err != nil {
			return &run.ConfigError{Err: fmt.Errorf("join-token-file: %w", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	cred, err := nodecred.Obtain(ctx, nodecred.Options{
		Node: cfg.Node, TrustDomain: td, Dir: cfg.CredentialDir,
		JoinToken: token, BootstrapBundleFile: cfg.CABundleFile, CAAddresses: cfg.CAServers,
		Logger: log.With("part", "credential"),
	})
	if err != nil {
		return fmt.Errorf("node credential: %w", err)
	}
	log.Info("node identity", "id", cred.Identity().String())

	configConn, err := dialConfig(cfg, cred.Source(), td)
	if err != nil {
		return err
	}
	defer configConn.Close()

	metrics, err := agent.NewMetrics(tel.Meter("ambit/cni"))
	if err != nil {
		return err
	}
	zsrv, err := zds.New(zds.Options{
		Path: cfg.ZDSSocket, Logger: log.With("part", "zds"), MeterProvider: tel.MeterProvider(), AckTimeout: cfg.ZDSAckTimeout,
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	ag, err := agent.New(agent.Options{
		Node: cfg.Node, StateDir: cfg.StateDir, Spool: cnievent.Spool{Dir: cfg.SpoolDir},
		Config:   configv1.NewConfigServiceClient(configConn),
		Redirect: redirect.NewIPTables(redirect.IPTablesOptions{Logger: log.With("part", "iptables")}),
		ZDS:      zdsAdapter{zsrv},
		Logger:   log, Tracer: tel.Tracer("ambit/cni"), Metrics: metrics,
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}

	admin := run.NewAdmin(run.AdminOptions{Metrics: tel.Handler(), Handlers: map[string]http.Handler{
		"/debug/sandboxes": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(ag.Sandboxes())
		}),
	}})
	admin.AddReadinessCheck("restored", func(context.Context) error {
		select {
		case <-ag.Restored():
			return nil
		default:
			return errors.New("restoring the sandboxes of the last run")
		}
	})
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("admin-addr %s: %w", cfg.AdminAddr, err)}
	}

	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	g.Go("admin", func(ctx context.Context) error { return admin.Serve(ctx, adminLn) })
	g.Go("credential", cred.Run)
	g.Go("agent", ag.Run)
	g.Go("serve", func(ctx context.Context) error {
		// ztunnel's first snapshot and the plugin's first event must see
		// every sandbox of the last run, so both wait for the restore.
		select {
		case <-ag.Restored():
		case <-ctx.Done():
			return nil
		}
		evLn, err := agent.ListenEvents(cfg.EventSocket)
		if err != nil {
			return err
		}
		sg := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
		sg.Go("zds", zsrv.Serve)
		sg.Go("events", func(ctx context.Context) error {
			return run.ServeHTTP(ctx, &http.Server{Handler: ag.EventHandler(cfg.EventTimeout), ReadHeaderTimeout: 5 * time.Second}, evLn)
		})
		log.Info("serving", "admin", adminLn.Addr().String(), "events", cfg.EventSocket, "zds", cfg.ZDSSocket)
		return sg.Wait()
	})
	return g.Wait()
}

// dialConfig connects to config with the node certificate, or without
// TLS to a development config on loopback.
func dialConfig(cfg *Config, src spiffe.X509Source, td spiffeid.TrustDomain) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if cfg.ConfigInsecureLocal {
		creds = insecure.NewCredentials()
	} else {
		creds = cpdial.MTLS(src, spiffe.AuthorizeComponents(td, spiffe.ComponentConfig))
	}
	conn, err := cpdial.Dial(cfg.ConfigServers, creds, cpdial.WithName("config"), cpdial.WithMaxBackoff(5*time.Second))
	if err != nil {
		return nil, &run.ConfigError{Err: fmt.Errorf("config-servers: %w", err)}
	}
	return conn, nil
}

// zdsAdapter gives the agent the ZDS server in the agent's terms.
type zdsAdapter struct{ s *zds.Server }

func (z zdsAdapter) Add(ctx context.Context, uid string, info *zdspb.WorkloadInfo, ns *netns.Handle) error {
	return z.s.Add(ctx, zds.Workload{UID: uid, Info: info, Netns: ns})
}

func (z zdsAdapter) Del(ctx context.Context, uid string) error { return z.s.Del(ctx, uid) }
