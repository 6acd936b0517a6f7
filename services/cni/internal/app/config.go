// Package app wires the CNI node agent together: node credential (join
// token → CA), config client, the agent core, iptables redirection, the
// ZDS server for ztunnel, the plugin's event socket, admin endpoints and
// telemetry.
package app

import (
	"errors"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Component is the name in versions.yaml, metrics and the environment
// (AMBIT_CNI_*).
const Component = "cni"

// Config is the whole configuration of ambit-cni-agent. Every path is per
// node: several nodes share one kernel and filesystem in the local
// runtime, so the defaults all live under run-dir/<node>.
type Config struct {
	Node      string `json:"node" flag:"node" usage:"this node's name (required)"`
	RunDir    string `json:"runDir" flag:"run-dir" usage:"base directory; per-node paths default to <run-dir>/<node>/..."`
	AdminAddr string `json:"adminAddr" flag:"admin-addr" usage:"address of /healthz, /readyz, /metrics and /debug/sandboxes"`
	LogLevel  string `json:"logLevel" flag:"log-level" usage:"debug, info, warn or error"`

	EventSocket string `json:"eventSocket" flag:"event-socket" usage:"unix socket the ambit-cni plugin sends pod events to (default <run-dir>/<node>/cni/agent.sock)"`
	SpoolDir    string `json:"spoolDir" flag:"spool-dir" usage:"where the plugin spools events while the agent is away (default <run-dir>/<node>/cni/spool)"`
	StateDir    string `json:"stateDir" flag:"state-dir" usage:"one record per known pod sandbox (default <run-dir>/<node>/cni/sandboxes)"`
	ZDSSocket   string `json:"zdsSocket" flag:"zds-socket" usage:"SOCK_SEQPACKET socket ztunnel connects to (default <run-dir>/<node>/ztunnel/zds.sock)"`
	Mode        string `json:"mode" flag:"mode" usage:"redirection mode: iptables"`

	TrustDomain         string   `json:"trustDomain" flag:"trust-domain" usage:"SPIFFE trust domain"`
	CredentialDir       string   `json:"credentialDir" flag:"credential-dir" usage:"where the node certificate is kept (default <run-dir>/<node>/credential)"`
	JoinToken           string   `json:"joinToken" flag:"join-token" usage:"single-use join token (ambitctl node token create); only needed until the node has a certificate"`
	JoinTokenFile       string   `json:"joinTokenFile" flag:"join-token-file" usage:"file holding the join token"`
	CABundleFile        string   `json:"caBundleFile" flag:"ca-bundle-file" usage:"trust bundle that verifies the CA when joining"`
	CAServers           []string `json:"caServers" flag:"ca-servers" usage:"CA replicas, host:port, comma separated"`
	ConfigServers       []string `json:"configServers" flag:"config-servers" usage:"config replicas, host:port, comma separated"`
	ConfigInsecureLocal bool     `json:"configInsecureLoopback" flag:"config-insecure-loopback" usage:"talk to a config service in --insecure-loopback mode (development only)"`

	EventTimeout    time.Duration `json:"eventTimeout" flag:"event-timeout" usage:"how long one plugin event may take"`
	ZDSAckTimeout   time.Duration `json:"zdsAckTimeout" flag:"zds-ack-timeout" usage:"how long ztunnel may take to acknowledge a ZDS message"`
	ShutdownTimeout time.Duration `json:"shutdownTimeout" flag:"shutdown-timeout" usage:"how long a graceful shutdown may take"`
}

// DefaultConfig is the configuration with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		RunDir:          "/run/ambit",
		AdminAddr:       "127.0.0.1:15014",
		LogLevel:        "info",
		Mode:            "iptables",
		TrustDomain:     spiffe.DefaultTrustDomainName,
		EventTimeout:    30 * time.Second,
		ZDSAckTimeout:   5 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// nodeDir is where this node's files live unless a path is given.
func (c *Config) nodeDir(parts ...string) string {
	return filepath.Join(append([]string{c.RunDir, c.Node}, parts...)...)
}

// resolve fills the per-node defaults.
func (c *Config) resolve() {
	set := func(p *string, parts ...string) {
		if *p == "" {
			*p = c.nodeDir(parts...)
		}
	}
	set(&c.EventSocket, "cni", "agent.sock")
	set(&c.SpoolDir, "cni", "spool")
	set(&c.StateDir, "cni", "sandboxes")
	set(&c.ZDSSocket, "ztunnel", "zds.sock")
	set(&c.CredentialDir, "credential")
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
	if _, err := spiffe.NewNode(spiffeid.RequireTrustDomainFromString(orDefaultTD(c.TrustDomain)), orPlaceholder(c.Node)); err != nil && c.Node != "" {
		add(confload.FieldErr("node", c.Node, err.Error()))
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		add(confload.FieldErr("trust-domain", c.TrustDomain, err.Error()))
	}
	add(confload.NonEmpty("run-dir", c.RunDir))
	add(confload.HostPort("admin-addr", c.AdminAddr))
	if c.Mode != "iptables" {
		add(confload.FieldErr("mode", c.Mode, "must be iptables"))
	}
	if len(c.ConfigServers) == 0 {
		add(confload.FieldErr("config-servers", "", "at least one config replica is required"))
	}
	for _, a := range c.ConfigServers {
		add(confload.HostPort("config-servers", a))
		if c.ConfigInsecureLocal {
			if ap, err := netip.ParseAddrPort(a); err != nil || !ap.Addr().IsLoopback() {
				add(confload.FieldErr("config-servers", a, "config-insecure-loopback talks to loopback addresses only"))
			}
		}
	}
	if len(c.CAServers) == 0 {
		add(confload.FieldErr("ca-servers", "", "at least one CA replica is required"))
	}
	for _, a := range c.CAServers {
		add(confload.HostPort("ca-servers", a))
	}
	if c.JoinToken != "" && c.JoinTokenFile != "" {
		add(confload.FieldErr("join-token-file", c.JoinTokenFile, "give join-token or join-token-file, not both"))
	}
	for flag, d := range map[string]time.Duration{"event-timeout": c.EventTimeout, "zds-ack-timeout": c.ZDSAckTimeout, "shutdown-timeout": c.ShutdownTimeout} {
		if d <= 0 {
			add(confload.FieldErr(flag, d, "must be positive"))
		}
	}
	return errors.Join(errs...)
}

func orDefaultTD(td string) string {
	if _, err := spiffeid.TrustDomainFromString(td); err != nil {
		return spiffe.DefaultTrustDomainName
	}
	return td
}

func orPlaceholder(node string) string {
	if node == "" {
		return "n"
	}
	return node
}
