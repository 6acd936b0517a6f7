// Package app wires one xds replica together: the change-feed consumer
// feeding the translator, whose output goes into the snapshot cache that
// the ADS server streams to proxies; the distribution-status publisher;
// the admin endpoints (/healthz, /readyz, /metrics, /debug/syncz,
// /debug/config_dump); presence in NATS micro; telemetry.
//
// The replica serves nothing before the feed's first listing is in the
// cache (server.Options.Ready), and /readyz says so, because answering a
// reconnecting proxy from an empty cache would tell it to delete
// everything.
package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/stateconn"
	"github.com/ambitmesh/ambit/services/xds/internal/server"
)

// Component is the xds service's name in versions.yaml, metrics and
// environment variables (AMBIT_XDS_*).
const Component = "xds"

// Config is the whole configuration of ambit-xds.
type Config struct {
	ListenAddr string `json:"listenAddr" flag:"listen-addr" usage:"gRPC (TLS) address of the xDS API"`
	AdminAddr  string `json:"adminAddr" flag:"admin-addr" usage:"address of /healthz, /readyz, /metrics and /debug/*"`
	ReplicaID  string `json:"replicaID" flag:"replica-id" usage:"this replica's name (default: host-pid)"`
	LogLevel   string `json:"logLevel" flag:"log-level" usage:"debug, info, warn or error"`
	Pprof      bool   `json:"pprof" flag:"pprof" usage:"serve /debug/pprof on the admin address"`

	TrustDomain string `json:"trustDomain" flag:"trust-domain" usage:"SPIFFE trust domain"`
	CertFile    string `json:"certFile" flag:"cert-file" usage:"serving certificate (spiffe://<td>/ambit/xds)"`
	KeyFile     string `json:"keyFile" flag:"key-file" usage:"serving key"`
	BundleFile  string `json:"bundleFile" flag:"bundle-file" usage:"trust bundle that signs proxies' client certificates"`

	Etcd stateconn.Etcd `json:"etcd" flag:"etcd"`
	NATS stateconn.NATS `json:"nats" flag:"nats"`

	ClusterID     string `json:"clusterID" flag:"cluster-id" usage:"cluster id that starts workload uids (Istio's default: Kubernetes)"`
	DomainSuffix  string `json:"domainSuffix" flag:"domain-suffix" usage:"DNS suffix of Service host names"`
	Network       string `json:"network" flag:"network" usage:"default network of workloads and VIPs"`
	RootNamespace string `json:"rootNamespace" flag:"root-namespace" usage:"namespace of mesh-wide policies"`

	Debounce           time.Duration `json:"debounce" flag:"debounce" usage:"how long changes are collected before a push (0: push each change at once)"`
	MaxResponseBytes   int           `json:"maxResponseBytes" flag:"max-response-bytes" usage:"split delta responses above about this size"`
	StatusInterval     time.Duration `json:"statusInterval" flag:"status-interval" usage:"how often changed distribution status is published"`
	StatusFullInterval time.Duration `json:"statusFullInterval" flag:"status-full-interval" usage:"how often the full distribution status is published"`
	ShutdownTimeout    time.Duration `json:"shutdownTimeout" flag:"shutdown-timeout" usage:"how long a graceful shutdown may take"`
}

// DefaultConfig is the configuration with every default filled in. xDS
// listens on all addresses (always TLS); the admin endpoints, which
// include configuration dumps, on loopback.
func DefaultConfig() *Config {
	return &Config{
		ListenAddr:         ":15010",
		AdminAddr:          "127.0.0.1:15011",
		LogLevel:           "info",
		TrustDomain:        spiffe.DefaultTrustDomainName,
		Etcd:               stateconn.DefaultEtcd(),
		NATS:               stateconn.DefaultNATS(),
		ClusterID:          "Kubernetes",
		DomainSuffix:       "cluster.local",
		RootNamespace:      "istio-system",
		Debounce:           server.DefaultDebounce,
		MaxResponseBytes:   server.DefaultMaxResponseBytes,
		StatusInterval:     200 * time.Millisecond,
		StatusFullInterval: 10 * time.Second,
		ShutdownTimeout:    15 * time.Second,
	}
}

// Validate checks every field and names the flag of each bad value.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(confload.HostPort("listen-addr", c.ListenAddr))
	add(confload.HostPort("admin-addr", c.AdminAddr))
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		add(confload.FieldErr("trust-domain", c.TrustDomain, err.Error()))
	}
	if err := (spiffe.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, BundleFile: c.BundleFile}).Validate(); err != nil {
		add(fmt.Errorf("TLS (cert-file, key-file, bundle-file): %w", err))
	}
	add(c.Etcd.Validate())
	add(c.NATS.Validate())
	add(confload.NonEmpty("cluster-id", c.ClusterID))
	add(confload.NonEmpty("domain-suffix", c.DomainSuffix))
	add(confload.NonEmpty("root-namespace", c.RootNamespace))
	if c.Debounce < 0 || c.Debounce > 10*time.Second {
		add(confload.FieldErr("debounce", c.Debounce, "must be between 0 and 10s"))
	}
	add(confload.InRange("max-response-bytes", c.MaxResponseBytes, 64<<10, 1<<30))
	if c.StatusInterval < 10*time.Millisecond {
		add(confload.FieldErr("status-interval", c.StatusInterval, "must be at least 10ms"))
	}
	if c.StatusFullInterval < c.StatusInterval {
		add(confload.FieldErr("status-full-interval", c.StatusFullInterval, "must be at least status-interval"))
	}
	if c.ShutdownTimeout <= 0 {
		add(confload.FieldErr("shutdown-timeout", c.ShutdownTimeout, "must be positive"))
	}
	return errors.Join(errs...)
}
