// Package stateconn connects control-plane services to the state servers:
// etcd (the truth) and NATS (the change feed and status). The config structs
// carry confload tags so every service exposes the same flags
// (--etcd-endpoints, --nats-url, ...) and environment variables.
package stateconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd configures the etcd client.
type Etcd struct {
	Endpoints   []string      `json:"endpoints" flag:"endpoints" usage:"etcd client URLs, comma separated"`
	CAFile      string        `json:"caFile" flag:"ca-file" usage:"CA bundle that signs etcd's serving certificate (enables TLS)"`
	CertFile    string        `json:"certFile" flag:"cert-file" usage:"client certificate for etcd"`
	KeyFile     string        `json:"keyFile" flag:"key-file" usage:"client key for etcd"`
	DialTimeout time.Duration `json:"dialTimeout" flag:"dial-timeout" usage:"how long the first connection may take"`
}

// DefaultEtcd is the configuration for a local etcd.
func DefaultEtcd() Etcd {
	return Etcd{Endpoints: []string{"http://127.0.0.1:2379"}, DialTimeout: 5 * time.Second}
}

// Validate checks the configuration.
func (e Etcd) Validate() error {
	if len(e.Endpoints) == 0 {
		return errors.New("etcd endpoints: at least one is required")
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return errors.New("etcd cert-file and key-file go together")
	}
	return nil
}

// Connect returns an etcd client. etcd's own logs go to log at warn level.
func (e Etcd) Connect(log *slog.Logger) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: e.DialTimeout,
		Logger:      zap.NewNop(),
		// Keep-alives notice a dead member quickly so the client fails over.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	}
	if e.CAFile != "" || e.CertFile != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		cfg.TLS = tc
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", e.Endpoints, err)
	}
	return c, nil
}

// NATS configures the NATS connection.
type NATS struct {
	URL       string `json:"url" flag:"url" usage:"NATS server URLs, comma separated"`
	CredsFile string `json:"credsFile" flag:"creds-file" usage:"NATS credentials file (JWT + seed) of this component"`
	CAFile    string `json:"caFile" flag:"ca-file" usage:"CA bundle that signs NATS' serving certificate"`
}

// DefaultNATS is the configuration for a local NATS.
func DefaultNATS() NATS { return NATS{URL: nats.DefaultURL} }

// Validate checks the configuration.
func (n NATS) Validate() error {
	if n.URL == "" {
		return errors.New("nats url is required")
	}
	return nil
}

// Connect opens a connection that reconnects forever: the control plane
// rides out NATS restarts rather than exiting.
func (n NATS) Connect(name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrl()) }),
	}
	if n.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	}
	if n.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.CAFile))
	}
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", n.URL, err)
	}
	return nc, nil
}

// EtcdReady is a readiness check: etcd answers a linearizable read.
func EtcdReady(c *clientv3.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.Get(ctx, "/ambit/health", clientv3.WithCountOnly())
		return err
	}
}

// NATSReady is a readiness check: the connection is up.
func NATSReady(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats: %s", nc.Status())
		}
		return nil
	}
}
