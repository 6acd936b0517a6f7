// Package app wires the config service together: state connections, the
// store, the gRPC API, the change-feed publisher (which only the elected
// replica runs), the change-feed consumer feeding the watch cache that
// serves Watch, the distribution-status tracker, health and telemetry.
package app

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/stateconn"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// Component is the config service's name in versions.yaml, metrics and
// environment variables (AMBIT_CONFIG_*).
const Component = "config"

// Config is the whole configuration of ambit-config.
type Config struct {
	ListenAddr string `json:"listenAddr" flag:"listen-addr" usage:"gRPC address of the config API"`
	AdminAddr  string `json:"adminAddr" flag:"admin-addr" usage:"address of /healthz, /readyz and /metrics"`
	ReplicaID  string `json:"replicaID" flag:"replica-id" usage:"this replica's name (default: host-pid)"`
	LogLevel   string `json:"logLevel" flag:"log-level" usage:"debug, info, warn or error"`

	TrustDomain string `json:"trustDomain" flag:"trust-domain" usage:"SPIFFE trust domain"`
	CertFile    string `json:"certFile" flag:"cert-file" usage:"serving certificate (spiffe://<td>/ambit/config)"`
	KeyFile     string `json:"keyFile" flag:"key-file" usage:"serving key"`
	BundleFile  string `json:"bundleFile" flag:"bundle-file" usage:"trust bundle that signs callers' client certificates"`
	// InsecureLoopback serves plaintext gRPC and treats every caller as an
	// admin. It refuses to start on a non-loopback address.
	InsecureLoopback bool `json:"insecureLoopback" flag:"insecure-loopback" usage:"development only: plaintext on a loopback address, every caller is admin"`

	Etcd stateconn.Etcd `json:"etcd" flag:"etcd"`
	NATS stateconn.NATS `json:"nats" flag:"nats"`

	ElectionTTL       time.Duration `json:"electionTTL" flag:"election-ttl" usage:"change-feed leader session TTL; a killed leader is replaced within about this long"`
	StreamReplicas    int           `json:"streamReplicas" flag:"stream-replicas" usage:"JetStream replicas of AMBIT_CHANGES (3 in production)"`
	StreamMaxAge      time.Duration `json:"streamMaxAge" flag:"stream-max-age" usage:"how long the change feed keeps events"`
	ServiceCIDRs      []string      `json:"serviceCIDRs" flag:"service-cidrs" usage:"pools of Service cluster IPs, one per family"`
	ServiceEntryCIDRs []string      `json:"serviceEntryCIDRs" flag:"serviceentry-cidrs" usage:"pools of automatic ServiceEntry VIPs"`
	MaxObjectBytes    int           `json:"maxObjectBytes" flag:"max-object-bytes" usage:"largest stored object, below NATS max_payload"`
	WatchCacheEvents  int           `json:"watchCacheEvents" flag:"watch-cache-events" usage:"recent events each replica keeps for Watch; a watch from an older revision must re-list"`
	WatchCacheBytes   int           `json:"watchCacheBytes" flag:"watch-cache-bytes" usage:"largest total size of the objects the watch cache keeps"`
	WatchBufferEvents int           `json:"watchBufferEvents" flag:"watch-buffer-events" usage:"events one Watch stream may have pending before it is ended as too slow"`
	StatusExpiry      time.Duration `json:"statusExpiry" flag:"status-expiry" usage:"forget an xds replica's proxies after this long without a report"`
	ShutdownTimeout   time.Duration `json:"shutdownTimeout" flag:"shutdown-timeout" usage:"how long a graceful shutdown may take"`
}

// DefaultConfig is the configuration with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		ListenAddr:        "127.0.0.1:15030",
		AdminAddr:         "127.0.0.1:15031",
		LogLevel:          "info",
		TrustDomain:       spiffe.DefaultTrustDomainName,
		Etcd:              stateconn.DefaultEtcd(),
		NATS:              stateconn.DefaultNATS(),
		ElectionTTL:       5 * time.Second,
		StreamReplicas:    1,
		StreamMaxAge:      24 * time.Hour,
		ServiceCIDRs:      []string{store.DefaultServiceCIDR.String()},
		ServiceEntryCIDRs: []string{store.DefaultServiceEntryCIDR.String()},
		MaxObjectBytes:    resource.DefaultMaxObjectBytes,
		WatchCacheEvents:  watchhub.DefaultCapacity,
		WatchCacheBytes:   watchhub.DefaultMaxBytes,
		WatchBufferEvents: watchhub.DefaultWatcherBuffer,
		StatusExpiry:      30 * time.Second,
		ShutdownTimeout:   15 * time.Second,
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
	if _, err := spiffeTrustDomain(c.TrustDomain); err != nil {
		add(confload.FieldErr("trust-domain", c.TrustDomain, err.Error()))
	}
	files := spiffe.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, BundleFile: c.BundleFile}
	switch {
	case c.InsecureLoopback && files.Configured():
		add(errors.New("insecure-loopback: cannot be combined with cert-file/key-file/bundle-file"))
	case c.InsecureLoopback:
		if host, _, err := net.SplitHostPort(c.ListenAddr); err == nil {
			if ip, perr := netip.ParseAddr(host); perr != nil || !ip.IsLoopback() {
				add(confload.FieldErr("listen-addr", c.ListenAddr, "insecure-loopback needs a loopback IP address"))
			}
		}
	default:
		if err := files.Validate(); err != nil {
			add(fmt.Errorf("TLS (cert-file, key-file, bundle-file) or --insecure-loopback: %w", err))
		}
	}
	add(c.Etcd.Validate())
	add(c.NATS.Validate())
	if c.ElectionTTL < time.Second {
		add(confload.FieldErr("election-ttl", c.ElectionTTL, "must be at least 1s"))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		add(confload.FieldErr("stream-replicas", c.StreamReplicas, "must be 1 to 5"))
	}
	if _, err := parsePrefixes(c.ServiceCIDRs); err != nil {
		add(confload.FieldErr("service-cidrs", c.ServiceCIDRs, err.Error()))
	}
	if _, err := parsePrefixes(c.ServiceEntryCIDRs); err != nil {
		add(confload.FieldErr("serviceentry-cidrs", c.ServiceEntryCIDRs, err.Error()))
	}
	// Leave room for the change-feed envelope within NATS' default 1 MiB.
	if c.MaxObjectBytes < 1024 || c.MaxObjectBytes > 900<<10 {
		add(confload.FieldErr("max-object-bytes", c.MaxObjectBytes, "must be between 1 KiB and 900 KiB"))
	}
	if c.WatchCacheEvents < 1 {
		add(confload.FieldErr("watch-cache-events", c.WatchCacheEvents, "must be at least 1"))
	}
	if c.WatchCacheBytes < 1<<20 {
		add(confload.FieldErr("watch-cache-bytes", c.WatchCacheBytes, "must be at least 1 MiB"))
	}
	if c.WatchBufferEvents < 1 {
		add(confload.FieldErr("watch-buffer-events", c.WatchBufferEvents, "must be at least 1"))
	}
	return errors.Join(errs...)
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, errors.New("at least one CIDR is required")
	}
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q", s)
		}
		if p.Addr().BitLen()-p.Bits() < 2 {
			return nil, fmt.Errorf("CIDR %q is too small", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
