// Package devstack runs the state and messaging servers of Ambit — etcd and
// NATS with JetStream — embedded in the current process on loopback random
// ports.
//
// These are the real servers (go.etcd.io/etcd/server/v3/embed and
// github.com/nats-io/nats-server/v2/server), not fakes: the local runtime
// (`ambitctl up`) and every integration test use them. Each server can be
// stopped and started again on the same address and data directory, which
// is what the fault tests (etcd down, NATS down, NATS with a fresh store)
// need.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Options configures a Stack. The zero value is usable: data goes to a
// temporary directory removed by Stop.
type Options struct {
	// Dir holds the etcd and JetStream data. Empty means a fresh temporary
	// directory that Stop removes; a given directory is kept.
	Dir string
	// Logger receives the servers' warnings and errors. Nil discards them.
	Logger *slog.Logger
	// Etcd tunes the embedded etcd server.
	Etcd EtcdOptions
	// NATS tunes the embedded NATS server.
	NATS NATSOptions
	// StartTimeout bounds how long each server may take to become ready.
	StartTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	o.Etcd.setDefaults()
	o.NATS.setDefaults()
}

// Stack is a running etcd + NATS pair.
type Stack struct {
	opts    Options
	dir     string
	tempDir bool

	mu   sync.Mutex
	etcd *etcdServer
	nats *natsServer
}

// Start brings up etcd and NATS and returns once both accept clients.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	opts.setDefaults()
	s := &Stack{opts: opts, dir: opts.Dir}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "ambit-devstack-")
		if err != nil {
			return nil, fmt.Errorf("devstack: create data dir: %w", err)
		}
		s.dir, s.tempDir = d, true
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: create data dir %q: %w", s.dir, err)
	}

	var err error
	s.etcd, err = newEtcdServer(filepath.Join(s.dir, "etcd"), opts.Etcd, opts.Logger.With("server", "etcd"))
	if err == nil {
		err = s.etcd.start(ctx, opts.StartTimeout)
	}
	if err == nil {
		s.nats, err = newNATSServer(filepath.Join(s.dir, "nats"), opts.NATS, opts.Logger.With("server", "nats"))
	}
	if err == nil {
		err = s.nats.start(opts.StartTimeout)
	}
	if err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	return s, nil
}

// Dir is the data directory of the stack.
func (s *Stack) Dir() string { return s.dir }

// EtcdEndpoints are the client URLs of etcd. They stay the same across
// StopEtcd/StartEtcd.
func (s *Stack) EtcdEndpoints() []string { return []string{s.etcd.clientURL.String()} }

// NATSURL is the client URL of NATS. It stays the same across
// StopNATS/StartNATS.
func (s *Stack) NATSURL() string { return s.nats.url() }

// EtcdRunning reports whether etcd is currently serving.
func (s *Stack) EtcdRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcd.running()
}

// NATSRunning reports whether NATS is currently serving.
func (s *Stack) NATSRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nats.running()
}

// StopEtcd stops etcd, keeping its data. Clients see it as down.
func (s *Stack) StopEtcd() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etcd.stop()
}

// StartEtcd starts a stopped etcd again on the same address and data.
func (s *Stack) StartEtcd(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etcd.start(ctx, s.opts.StartTimeout)
}

// StopNATS stops NATS, keeping the JetStream store.
func (s *Stack) StopNATS() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nats.stop()
}

// StartNATS starts a stopped NATS again on the same address. With
// freshStore the JetStream store is wiped first, as if the server had been
// replaced by a new one: streams and their messages are gone.
func (s *Stack) StartNATS(freshStore bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if freshStore {
		if s.nats.running() {
			return errors.New("devstack: nats must be stopped before wiping its store")
		}
		if err := os.RemoveAll(s.nats.storeDir); err != nil {
			return fmt.Errorf("devstack: wipe nats store: %w", err)
		}
	}
	return s.nats.start(s.opts.StartTimeout)
}

// Stop shuts both servers down and removes a temporary data directory.
// It is safe to call more than once.
func (s *Stack) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nats != nil {
		s.nats.stop()
	}
	if s.etcd != nil {
		s.etcd.stop()
	}
	if s.tempDir && s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("devstack: remove data dir: %w", err)
		}
		s.dir = ""
	}
	return nil
}
