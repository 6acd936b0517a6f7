package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdOptions tunes the embedded etcd.
type EtcdOptions struct {
	// AutoCompactionMode is "periodic" or "revision" (default "periodic").
	AutoCompactionMode string
	// AutoCompactionRetention is a duration for periodic mode or a revision
	// count for revision mode (default "1h").
	AutoCompactionRetention string
	// QuotaBackendBytes caps the database size (default 2 GiB).
	QuotaBackendBytes int64
	// UnsafeNoFsync trades durability for speed; for tests and benchmarks.
	UnsafeNoFsync bool
}

func (o *EtcdOptions) setDefaults() {
	if o.AutoCompactionMode == "" {
		o.AutoCompactionMode = embed.CompactorModePeriodic
	}
	if o.AutoCompactionRetention == "" {
		o.AutoCompactionRetention = "1h"
	}
	if o.QuotaBackendBytes == 0 {
		o.QuotaBackendBytes = 2 << 30
	}
}

type etcdServer struct {
	dir       string
	opts      EtcdOptions
	log       *slog.Logger
	clientURL url.URL
	peerURL   url.URL
	etcd      *embed.Etcd
}

func newEtcdServer(dir string, opts EtcdOptions, log *slog.Logger) (*etcdServer, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, fmt.Errorf("devstack: etcd ports: %w", err)
	}
	return &etcdServer{
		dir:       dir,
		opts:      opts,
		log:       log,
		clientURL: url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0]))},
		peerURL:   url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[1]))},
	}, nil
}

func (e *etcdServer) running() bool { return e.etcd != nil }

func (e *etcdServer) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "devstack"
	cfg.Dir = e.dir
	cfg.ListenClientUrls = []url.URL{e.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{e.clientURL}
	cfg.ListenPeerUrls = []url.URL{e.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{e.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.AutoCompactionMode = e.opts.AutoCompactionMode
	cfg.AutoCompactionRetention = e.opts.AutoCompactionRetention
	cfg.QuotaBackendBytes = e.opts.QuotaBackendBytes
	cfg.UnsafeNoFsync = e.opts.UnsafeNoFsync
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(e.log, zap.WarnLevel)))
	return cfg
}

func (e *etcdServer) start(ctx context.Context, timeout time.Duration) error {
	if e.etcd != nil {
		return nil
	}
	srv, err := embed.StartEtcd(e.config())
	if err != nil {
		return fmt.Errorf("devstack: start etcd on %s: %w", e.clientURL.Host, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-srv.Server.ReadyNotify():
		e.etcd = srv
		return nil
	case err := <-srv.Err():
		srv.Close()
		return fmt.Errorf("devstack: etcd failed while starting: %w", err)
	case <-t.C:
		srv.Close()
		return fmt.Errorf("devstack: etcd not ready after %s", timeout)
	case <-ctx.Done():
		srv.Close()
		return fmt.Errorf("devstack: etcd start: %w", ctx.Err())
	}
}

func (e *etcdServer) stop() {
	if e.etcd == nil {
		return
	}
	e.etcd.Close()
	e.etcd = nil
}

// freePorts asks the kernel for n distinct free loopback ports. The ports
// are released before use, so another process could take one in between;
// the servers then fail to bind and the caller sees a clear error.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
