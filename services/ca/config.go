package ca

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/clustertrustbundle"
)

// StoreConfig is what both the server and `ambit-ca issue-admin` need to
// reach the CA's key material.
type StoreConfig struct {
	TrustDomain   string   `flag:"trust-domain" usage:"SPIFFE trust domain" json:"trustDomain"`
	EtcdEndpoints []string `flag:"etcd-endpoints" usage:"etcd client URLs, comma-separated" json:"etcdEndpoints"`
	// The key-encryption key: a file, or the AMBIT_CA_KEK variable (base64
	// or hex of 32 bytes). Prefer the file or the variable to the --kek
	// flag, which other users of the host can read from the process list.
	KEKFile string `flag:"kek-file" usage:"file holding the 32-byte key-encryption key (raw, hex or base64)" json:"kekFile"`
	KEK     string `flag:"kek" usage:"the key-encryption key, hex or base64 (prefer AMBIT_CA_KEK or --kek-file)" json:"-"`
	// Operator-provided authority, used on first boot only (later roots
	// come through rotation). Empty: a root is generated.
	SigningCertFile string        `flag:"signing-cert-file" usage:"operator CA: PEM signing (intermediate) certificate, optionally followed by further intermediates" json:"signingCertFile"`
	SigningKeyFile  string        `flag:"signing-key-file" usage:"operator CA: PEM key of the signing certificate" json:"signingKeyFile"`
	RootCertFile    string        `flag:"root-cert-file" usage:"operator CA: PEM root certificate (omit if the signing certificate is the root)" json:"rootCertFile"`
	RootValidity    time.Duration `flag:"root-validity" usage:"lifetime of generated roots" json:"rootValidity"`
	DefaultTTL      time.Duration `flag:"default-ttl" usage:"certificate lifetime when the request names none" json:"defaultTTL"`
	MaxTTL          time.Duration `flag:"max-ttl" usage:"longest certificate lifetime issued; longer requests are capped" json:"maxTTL"`
}

// Config configures the ambit-ca server.
type Config struct {
	StoreConfig

	ListenAddr      string        `flag:"listen-addr" usage:"gRPC (TLS) listen address" json:"listenAddr"`
	AdminAddr       string        `flag:"admin-addr" usage:"health, readiness and metrics HTTP address" json:"adminAddr"`
	NATSURL         string        `flag:"nats-url" usage:"NATS URL (change feed)" json:"natsURL"`
	RateLimit       float64       `flag:"rate-limit" usage:"certificate requests per second per caller (0: unlimited)" json:"rateLimit"`
	RateBurst       int           `flag:"rate-burst" usage:"burst of certificate requests per caller" json:"rateBurst"`
	ReplicaID       string        `flag:"replica-id" usage:"this replica's name in etcd and telemetry (default host-pid)" json:"replicaID"`
	LogLevel        string        `flag:"log-level" usage:"debug, info, warn or error" json:"logLevel"`
	ShutdownTimeout time.Duration `flag:"shutdown-timeout" usage:"how long shutdown may take" json:"shutdownTimeout"`
	// ConfigServers, when set, turns on publishing the trust bundle as the
	// ClusterTrustBundle ambit.io:<td>:bundle through the config API
	// (package clustertrustbundle). Empty: not published.
	ConfigServers []string `flag:"config-servers" usage:"config API addresses (host:port, comma-separated) to publish the trust bundle to as ClusterTrustBundle ambit.io:<td>:bundle; empty: not published" json:"configServers"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		StoreConfig:     defaultStoreConfig(),
		ListenAddr:      ":15012",
		AdminAddr:       ":15014",
		NATSURL:         "nats://127.0.0.1:4222",
		RateLimit:       50,
		RateBurst:       500,
		LogLevel:        "info",
		ShutdownTimeout: 15 * time.Second,
	}
}

func defaultStoreConfig() StoreConfig {
	return StoreConfig{
		TrustDomain:   spiffe.DefaultTrustDomainName,
		EtcdEndpoints: []string{"http://127.0.0.1:2379"},
		RootValidity:  10 * 365 * 24 * time.Hour,
		DefaultTTL:    24 * time.Hour,
		MaxTTL:        90 * 24 * time.Hour,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	errs := []error{c.StoreConfig.validate()}
	errs = append(errs,
		confload.NonEmpty("listen-addr", c.ListenAddr),
		confload.NonEmpty("nats-url", c.NATSURL),
		confload.Positive("shutdown-timeout", c.ShutdownTimeout))
	if c.RateLimit < 0 {
		errs = append(errs, confload.FieldErr("rate-limit", c.RateLimit, "must not be negative"))
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		errs = append(errs, confload.FieldErr("rate-burst", c.RateBurst, "must be at least 1"))
	}
	errs = append(errs, c.validateConfigServers())
	if c.ReplicaID == "" {
		host, _ := os.Hostname()
		c.ReplicaID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return errors.Join(errs...)
}

// validateConfigServers checks the addresses and, when publishing is on,
// that the trust domain can name a signer.
func (c *Config) validateConfigServers() error {
	if len(c.ConfigServers) == 0 {
		return nil
	}
	var errs []error
	for _, a := range c.ConfigServers {
		errs = append(errs, confload.HostPort("config-servers", a))
	}
	if td, err := spiffeid.TrustDomainFromString(c.TrustDomain); err == nil {
		if err := clustertrustbundle.CheckTrustDomain(td); err != nil {
			errs = append(errs, confload.FieldErr("config-servers", c.ConfigServers, err.Error()))
		}
	}
	return errors.Join(errs...)
}

func (c *StoreConfig) validate() error {
	var errs []error
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		errs = append(errs, confload.FieldErr("trust-domain", c.TrustDomain, err.Error()))
	}
	if len(c.EtcdEndpoints) == 0 {
		errs = append(errs, confload.FieldErr("etcd-endpoints", "", "at least one endpoint is required"))
	}
	if (c.KEKFile == "") == (c.KEK == "") {
		errs = append(errs, confload.FieldErr("kek-file", c.KEKFile, "give the key-encryption key as exactly one of --kek-file and AMBIT_CA_KEK"))
	}
	if (c.SigningCertFile == "") != (c.SigningKeyFile == "") {
		errs = append(errs, confload.FieldErr("signing-key-file", c.SigningKeyFile, "an operator CA needs both --signing-cert-file and --signing-key-file"))
	}
	if c.RootCertFile != "" && c.SigningCertFile == "" {
		errs = append(errs, confload.FieldErr("root-cert-file", c.RootCertFile, "needs --signing-cert-file and --signing-key-file"))
	}
	errs = append(errs,
		confload.Positive("root-validity", c.RootValidity),
		confload.Positive("default-ttl", c.DefaultTTL),
		confload.Positive("max-ttl", c.MaxTTL))
	if c.DefaultTTL > c.MaxTTL {
		errs = append(errs, confload.FieldErr("default-ttl", c.DefaultTTL, "must not exceed max-ttl"))
	}
	return errors.Join(errs...)
}

func (c *StoreConfig) trustDomain() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(c.TrustDomain)
}

// IssueAdminConfig configures `ambit-ca issue-admin`.
type IssueAdminConfig struct {
	StoreConfig

	Out  string        `flag:"out" usage:"directory to write admin.crt, admin.key and bundle.pem into" json:"out"`
	Name string        `flag:"name" usage:"admin name: the identity becomes spiffe://<td>/ambit/admin/<name> (empty: .../ambit/admin)" json:"name"`
	TTL  time.Duration `flag:"ttl" usage:"certificate lifetime (capped by max-ttl)" json:"ttl"`
	// Component issues a control-plane service's identity instead of an
	// admin's: the same KEK-holder bootstrap gives config and xds their
	// serving certificates before any of them runs.
	Component string `flag:"component" usage:"issue spiffe://<td>/ambit/<component> (config, xds, gateway) into <component>.crt/.key instead of an admin identity" json:"component"`
}

// identity is what issue-admin signs.
func (c *IssueAdminConfig) identity() (spiffe.Identity, error) {
	if c.Component != "" {
		return spiffe.NewControlPlane(c.trustDomain(), spiffe.Component(c.Component))
	}
	return spiffe.NewAdmin(c.trustDomain(), c.Name)
}

// DefaultIssueAdminConfig returns the defaults.
func DefaultIssueAdminConfig() *IssueAdminConfig {
	return &IssueAdminConfig{StoreConfig: defaultStoreConfig(), TTL: 24 * time.Hour}
}

// Validate checks the configuration.
func (c *IssueAdminConfig) Validate() error {
	errs := []error{c.StoreConfig.validate(), confload.NonEmpty("out", c.Out), confload.Positive("ttl", c.TTL)}
	if err := c.StoreConfig.validate(); err == nil {
		switch _, err := c.identity(); {
		case c.Component != "" && c.Name != "":
			errs = append(errs, confload.FieldErr("name", c.Name, "give name (an admin) or component, not both"))
		case c.Component != "" && (!spiffe.Component(c.Component).Known() || c.Component == string(spiffe.ComponentCA)):
			errs = append(errs, confload.FieldErr("component", c.Component, "must be config, xds or gateway"))
		case err != nil && c.Component != "":
			errs = append(errs, confload.FieldErr("component", c.Component, err.Error()))
		case err != nil:
			errs = append(errs, confload.FieldErr("name", c.Name, err.Error()))
		}
	}
	return errors.Join(errs...)
}
