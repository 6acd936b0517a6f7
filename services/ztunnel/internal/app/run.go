package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/nodecred"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/certs"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/conntel"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/inpod"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/mesh"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/proxy"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/xdsclient"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/zdsclient"
)

// Run runs ztunnel until ctx ends.
func Run(ctx context.Context, cfg *Config, info buildinfo.Info) error {
	cfg.resolve()
	tel, err := telemetry.Setup(ctx, telemetry.Options{Component: Component, Version: info.Version, InstanceID: cfg.Node, LogLevel: cfg.LogLevel})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger().With("node", cfg.Node)
	log.Info("starting", "version", info.String())
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
		Node: cfg.Node, TrustDomain: td, Dir: cfg.CredentialDir, JoinToken: token,
		BootstrapBundleFile: cfg.CABundleFile, CAAddresses: cfg.CAServers, Logger: log.With("part", "credential"),
	})
	if err != nil {
		return fmt.Errorf("node credential: %w", err)
	}
	log.Info("node identity", "id", cred.Identity().String())

	caConn, err := cpdial.Dial(cfg.CAServers, cpdial.MTLS(cred.Source(), spiffe.AuthorizeComponents(td, spiffe.ComponentCA)), cpdial.WithName("ca"), cpdial.WithMaxBackoff(5*time.Second))
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("ca-servers: %w", err)}
	}
	defer caConn.Close()
	xdsConn, err := cpdial.Dial(cfg.XDSServers, cpdial.MTLS(cred.Source(), spiffe.AuthorizeComponents(td, spiffe.ComponentXDS)), cpdial.WithName("xds"), cpdial.WithMaxBackoff(5*time.Second))
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("xds-servers: %w", err)}
	}
	defer xdsConn.Close()

	store := mesh.New()
	xds := xdsclient.New(xdsclient.Options{Conn: xdsConn, Store: store, Node: cfg.Node, Version: info.Version, Logger: log.With("part", "xds")})
	cm, err := certs.New(certs.Options{CA: caConn, Trust: certs.NodeTrust(cred), Logger: log.With("part", "certs"), MeterProvider: tel.MeterProvider()})
	if err != nil {
		return err
	}
	defer cm.Close()
	rec, err := conntel.New(tel.Meter("ambit/ztunnel"), log.With("part", "access"))
	if err != nil {
		return err
	}
	var pods *inpod.Manager
	px := proxy.New(proxy.Options{
		TrustDomain: td, Mesh: store, Certs: cm, Pods: podsRef{&pods}, Telemetry: rec,
		Logger: log.With("part", "proxy"), HBONEPort: uint16(cfg.HBONEPort),
	})
	pods, err = inpod.New(inpod.Options{
		Handlers: px.Handlers(),
		Ports:    inpod.Ports{Outbound: cfg.OutboundPort, InboundPlaintext: cfg.InboundPlaintextPort, InboundHBONE: cfg.HBONEPort},
		Logger:   log.With("part", "inpod"),
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	defer pods.Close()
	zds, err := zdsclient.New(zdsclient.Options{
		Path: cfg.ZDSSocket, Handler: podHandler{pods: pods, certs: cm, td: td},
		Logger: log.With("part", "zds"), MeterProvider: tel.MeterProvider(),
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}

	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("admin-addr %s: %w", cfg.AdminAddr, err)}
	}
	metricsLn, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("metrics-addr %s: %w", cfg.MetricsAddr, err)}
	}
	readyLn, err := net.Listen("tcp", cfg.ReadinessAddr)
	if err != nil {
		return &run.ConfigError{Err: fmt.Errorf("readiness-addr %s: %w", cfg.ReadinessAddr, err)}
	}
	ready := func() error {
		select {
		case <-xds.Synced():
		default:
			return errors.New("waiting for the first xds state")
		}
		select {
		case <-zds.Synced():
		default:
			return errors.New("waiting for the CNI agent's ZDS snapshot")
		}
		return nil
	}
	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	g.Go("credential", cred.Run)
	g.Go("xds", xds.Run)
	g.Go("proxy", px.Run)
	g.Go("zds", zds.Run)
	g.Go("admin", func(ctx context.Context) error {
		return run.ServeHTTP(ctx, &http.Server{Handler: adminMux(store, cm, xds, px, tel.LogLevel()), ReadHeaderTimeout: 5 * time.Second}, adminLn)
	})
	g.Go("metrics", func(ctx context.Context) error {
		return run.ServeHTTP(ctx, &http.Server{Handler: tel.Handler(), ReadHeaderTimeout: 5 * time.Second}, metricsLn)
	})
	g.Go("readiness", func(ctx context.Context) error {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		})
		return run.ServeHTTP(ctx, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, readyLn)
	})
	g.Go("drain", func(ctx context.Context) error {
		<-ctx.Done()
		// Stop accepting so a new ztunnel's SO_REUSEPORT listeners take new
		// connections; established ones keep running until the group's
		// shutdown timeout.
		_ = pods.StopAccepting()
		return nil
	})
	log.Info("serving", "admin", adminLn.Addr().String(), "metrics", metricsLn.Addr().String(), "readiness", readyLn.Addr().String(), "zds", cfg.ZDSSocket)
	return g.Wait()
}

// podsRef lets the proxy find pods of a manager created after it.
type podsRef struct{ m **inpod.Manager }

func (r podsRef) Pod(uid string) (*inpod.Pod, bool) { return (*r.m).Pod(uid) }

// adminMux is localhost:15000: /config_dump, /debug/pprof/, /logging.
func adminMux(store *mesh.Store, cm *certs.Manager, xds *xdsclient.Client, px *proxy.Proxy, level *slog.LevelVar) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) {
		dump := store.Dump()
		dump["certificates"] = cm.Status()
		dump["xds"] = xds.Status()
		dump["hboneConnections"] = px.PoolConns()
		dump["inboundConnections"] = px.Tracked()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(dump)
	})
	mux.HandleFunc("/logging", func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("level"); v != "" {
			var l slog.Level
			if err := l.UnmarshalText([]byte(v)); err != nil {
				http.Error(w, "level: "+err.Error(), http.StatusBadRequest)
				return
			}
			level.Set(l)
		}
		_, _ = w.Write([]byte("level " + level.Level().String() + "\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
