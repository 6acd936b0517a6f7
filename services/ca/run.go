package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/presence"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/telemetry"

	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/rotation"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

// Component is the CA's name in versions.yaml, telemetry and env vars.
const Component = "ca"

// Run is the ambit-ca server: telemetry, the admin endpoint and the CA.
func Run(ctx context.Context, cfg *Config, info buildinfo.Info) error {
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Component: Component, Version: info.Version, InstanceID: cfg.ReplicaID,
		LogLevel: cfg.LogLevel, SetGlobal: true,
	})
	if err != nil {
		return &run.ConfigError{Err: err}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger()
	log.Info("starting", "version", info.String(), "replica", cfg.ReplicaID)

	c, err := New(ctx, *cfg, Options{
		Logger: log, TracerProvider: tel.TracerProvider(), MeterProvider: tel.MeterProvider(), Propagator: tel.Propagator(),
	})
	if err != nil {
		return err
	}
	admin := run.NewAdmin(run.AdminOptions{Metrics: tel.Handler()})
	admin.AddReadinessCheck("etcd", c.Ready)
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		c.close()
		return &run.ConfigError{Err: fmt.Errorf("listen on %s: %w", cfg.AdminAddr, err)}
	}
	// Announced on NATS so `ambitctl cluster` lists CA replicas too.
	svc, err := presence.Register(c.nc, presence.Replica{Info: info, Replica: cfg.ReplicaID, Address: c.Addr().String()})
	if err != nil {
		c.close()
		return err
	}
	defer func() { _ = svc.Stop() }()
	log.Info("serving", "grpc", c.Addr().String(), "admin", adminLis.Addr().String())
	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
	g.Go("admin", func(ctx context.Context) error { return admin.Serve(ctx, adminLis) })
	g.Go("ca", c.Run)
	return g.Wait()
}

// IssueAdminCommand is the ambit-ca subcommand that bootstraps the first
// administrator.
const IssueAdminCommand = "issue-admin"

// Admin credential file names written by issue-admin (spiffe.Files).
const (
	AdminCertFile   = "admin.crt"
	AdminKeyFile    = "admin.key"
	AdminBundleFile = "bundle.pem"
)

// IssueAdminMain runs `ambit-ca issue-admin [flags]` and returns the exit
// code. It needs what the CA itself needs to unseal its keys — etcd and
// the key-encryption key — and nothing else: whoever holds the KEK is
// already the CA's equal, so that is the bootstrap credential of the first
// administrator. It writes admin.crt, admin.key (0600) and bundle.pem into
// --out, creating the CA's material if no replica has started yet.
func IssueAdminMain(ctx context.Context, inv run.Invocation) int {
	cfg := DefaultIssueAdminConfig()
	return run.Execute(ctx, inv, Component, cfg, func(ctx context.Context, _ buildinfo.Info) error {
		files, err := IssueAdmin(ctx, cfg)
		if err != nil {
			return err
		}
		out := inv.Stdout
		if out == nil {
			out = io.Discard
		}
		fmt.Fprintf(out, "wrote %s, %s and %s\n", files.CertFile, files.KeyFile, files.BundleFile)
		return nil
	})
}

// IssueAdmin issues an admin certificate straight from the key material.
func IssueAdmin(ctx context.Context, cfg *IssueAdminConfig) (spiffe.Files, error) {
	td := cfg.trustDomain()
	id, err := cfg.identity()
	if err != nil {
		return spiffe.Files{}, &run.ConfigError{Err: err}
	}
	kek, err := keystore.LoadKEK(cfg.KEKFile, cfg.KEK)
	if err != nil {
		return spiffe.Files{}, &run.ConfigError{Err: err}
	}
	etcd, err := newEtcd(cfg.EtcdEndpoints)
	if err != nil {
		return spiffe.Files{}, err
	}
	defer etcd.Close()
	store, err := openStore(ctx, etcd, kek, &cfg.StoreConfig, discardLogger(), time.Now)
	if err != nil {
		return spiffe.Files{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return spiffe.Files{}, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.ID().URL()}}, key)
	if err != nil {
		return spiffe.Files{}, err
	}
	csr, err := signer.CheckCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), id)
	if err != nil {
		return spiffe.Files{}, err
	}
	ttl, err := signer.TTLPolicy{Default: cfg.DefaultTTL, Max: cfg.MaxTTL}.Resolve(cfg.TTL)
	if err != nil {
		return spiffe.Files{}, err
	}
	snap := store.Current()
	now := time.Now()
	chain, err := signer.Issue(&snap.Active.Material, csr, id, ttl, now)
	if err != nil {
		return spiffe.Files{}, err
	}
	rot := &rotation.Manager{Store: store, Etcd: etcd, KEK: kek, TrustDomain: td}
	if err := rot.RecordIssuedTTL(ctx, snap.Active.Record.ID, chain[0].NotAfter.Sub(now)); err != nil {
		return spiffe.Files{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return spiffe.Files{}, err
	}
	if err := os.MkdirAll(cfg.Out, 0o700); err != nil {
		return spiffe.Files{}, err
	}
	certName, keyName := AdminCertFile, AdminKeyFile
	if cfg.Component != "" {
		certName, keyName = cfg.Component+".crt", cfg.Component+".key"
	}
	files := spiffe.Files{
		CertFile:   filepath.Join(cfg.Out, certName),
		KeyFile:    filepath.Join(cfg.Out, keyName),
		BundleFile: filepath.Join(cfg.Out, AdminBundleFile),
	}
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{files.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{files.CertFile, keystore.EncodeCertificates(chain[:len(chain)-1]), 0o644},
		{files.BundleFile, keystore.EncodeCertificates(snap.Roots()), 0o644},
	}
	for _, w := range writes {
		if err := writeFileAtomic(w.path, w.data, w.mode); err != nil {
			return spiffe.Files{}, err
		}
	}
	return files, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
