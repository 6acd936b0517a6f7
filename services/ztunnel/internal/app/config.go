// Package app wires one ztunnel together: node credential, xds client and
// state, workload certificates, ZDS client and in-pod listeners, the
// proxy, telemetry and the admin, metrics and readiness endpoints.
package app

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/cpdial"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Component is the name in versions.yaml, metrics and the environment
// (AMBIT_ZTUNNEL_*).
const Component = "ztunnel"

// Config is the whole configuration of ambit-ztunnel. Per-node paths
// default under run-dir/<node>, shared with the node's CNI agent (the ZDS
// socket, the node credential).
type Config struct {
	Node      string `json:"node" flag:"node" usage:"this node's name (required)"`
	RunDir    string `json:"runDir" flag:"run-dir" usage:"base directory; per-node paths default to <run-dir>/<node>/..."`
	ClusterID string `json:"clusterID" flag:"cluster-id" usage:"cluster id of this node's workloads (Istio's default: Kubernetes)"`
	LogLevel  string `json:"logLevel" flag:"log-level" usage:"debug, info, warn or error"`

	AdminAddr     string `json:"adminAddr" flag:"admin-addr" usage:"/config_dump, /debug/pprof and /logging (keep it on localhost)"`
	MetricsAddr   string `json:"metricsAddr" flag:"metrics-addr" usage:"Prometheus /metrics"`
	ReadinessAddr string `json:"readinessAddr" flag:"readiness-addr" usage:"/healthz/ready"`

	ZDSSocket string `json:"zdsSocket" flag:"zds-socket" usage:"the CNI agent's ZDS socket (default <run-dir>/<node>/ztunnel/zds.sock)"`

	OutboundPort         int `json:"outboundPort" flag:"outbound-port" usage:"in-pod outbound capture port"`
	InboundPlaintextPort int `json:"inboundPlaintextPort" flag:"inbound-plaintext-port" usage:"in-pod inbound plaintext port"`
	HBONEPort            int `json:"hbonePort" flag:"hbone-port" usage:"in-pod inbound HBONE port"`

	TrustDomain   string   `json:"trustDomain" flag:"trust-domain" usage:"SPIFFE trust domain"`
	CredentialDir string   `json:"credentialDir" flag:"credential-dir" usage:"node certificate directory, shared with the CNI agent (default <run-dir>/<node>/credential)"`
	JoinToken     string   `json:"joinToken" flag:"join-token" usage:"single-use join token; only needed until the node has a certificate"`
	JoinTokenFile string   `json:"joinTokenFile" flag:"join-token-file" usage:"file holding the join token"`
	CABundleFile  string   `json:"caBundleFile" flag:"ca-bundle-file" usage:"trust bundle that verifies the CA when joining"`
	CAServers     []string `json:"caServers" flag:"ca-servers" usage:"CA replicas, host:port, comma separated"`
	XDSServers    []string `json:"xdsServers" flag:"xds-servers" usage:"xds replicas, host:port, comma separated"`

	DrainTimeout    time.Duration `json:"drainTimeout" flag:"drain-timeout" usage:"how long established connections may finish after shutdown starts"`
	ShutdownTimeout time.Duration `json:"shutdownTimeout" flag:"shutdown-timeout" usage:"how long a graceful shutdown may take in all"`
}

// DefaultConfig is the configuration with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		RunDir:               "/run/ambit",
		ClusterID:            "Kubernetes",
		LogLevel:             "info",
		AdminAddr:            "127.0.0.1:15000",
		MetricsAddr:          ":15020",
		ReadinessAddr:        ":15021",
		OutboundPort:         15001,
		InboundPlaintextPort: 15006,
		HBONEPort:            15008,
		TrustDomain:          spiffe.DefaultTrustDomainName,
		DrainTimeout:         10 * time.Second,
		ShutdownTimeout:      15 * time.Second,
	}
}

func (c *Config) resolve() {
	if c.ZDSSocket == "" {
		c.ZDSSocket = filepath.Join(c.RunDir, c.Node, "ztunnel", "zds.sock")
	}
	if c.CredentialDir == "" {
		c.CredentialDir = filepath.Join(c.RunDir, c.Node, "credential")
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
	add(confload.NonEmpty("node", c.Node))
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		add(confload.FieldErr("trust-domain", c.TrustDomain, err.Error()))
	} else if c.Node != "" {
		if _, err := spiffe.NewNode(td, c.Node); err != nil {
			add(confload.FieldErr("node", c.Node, err.Error()))
		}
	}
	add(confload.NonEmpty("run-dir", c.RunDir))
	add(confload.NonEmpty("cluster-id", c.ClusterID))
	add(confload.HostPort("admin-addr", c.AdminAddr))
	add(confload.HostPort("metrics-addr", c.MetricsAddr))
	add(confload.HostPort("readiness-addr", c.ReadinessAddr))
	for flag, p := range map[string]int{"outbound-port": c.OutboundPort, "inbound-plaintext-port": c.InboundPlaintextPort, "hbone-port": c.HBONEPort} {
		add(confload.InRange(flag, p, 1, 65535))
	}
	if c.OutboundPort == c.InboundPlaintextPort || c.OutboundPort == c.HBONEPort || c.InboundPlaintextPort == c.HBONEPort {
		add(confload.FieldErr("hbone-port", c.HBONEPort, "the three in-pod ports must differ"))
	}
	if len(c.XDSServers) == 0 {
		add(confload.FieldErr("xds-servers", "", "at least one xds replica is required"))
	} else if err := cpdial.CheckAddresses(c.XDSServers); err != nil {
		add(confload.FieldErr("xds-servers", c.XDSServers, err.Error()))
	}
	if len(c.CAServers) == 0 {
		add(confload.FieldErr("ca-servers", "", "at least one CA replica is required"))
	} else if err := cpdial.CheckAddresses(c.CAServers); err != nil {
		add(confload.FieldErr("ca-servers", c.CAServers, err.Error()))
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		add(confload.FieldErr("join-token-file", c.JoinTokenFile, "give join-token or join-token-file, not both"))
	}
	if c.DrainTimeout < 0 {
		add(confload.FieldErr("drain-timeout", c.DrainTimeout, "must not be negative"))
	}
	if c.ShutdownTimeout <= c.DrainTimeout {
		add(confload.FieldErr("shutdown-timeout", c.ShutdownTimeout, "must exceed drain-timeout"))
	}
	return errors.Join(errs...)
}
