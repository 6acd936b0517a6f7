package nodecred

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// The files of a node credential in Options.Dir. Each is a symbolic link
// into the current generation directory (dataLink), as Kubernetes lays
// out secret volumes: one rename of dataLink replaces all three at once,
// so no reader, and no crash, ever pairs a new key with an old certificate.
const (
	CertFile   = "cert.pem"   // the node certificate, then its intermediates
	KeyFile    = "key.pem"    // PKCS#8, mode 0600
	BundleFile = "bundle.pem" // the trust domain's roots

	dataLink  = ".data"
	genPrefix = ".gen-"
	lockFile  = ".lock"
)

// stored is a credential as read from Dir.
type stored struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	// written is when the certificate was stored, which is about when it
	// was issued: the renewal clock starts there (see renewAt).
	written time.Time
}

// errNoCredential means Dir holds no certificate at all (a new node).
var errNoCredential = errors.New("no stored credential")

// load reads the credential in dir. It returns errNoCredential when there
// is no certificate file, and otherwise an error naming the file that is
// missing or unreadable.
func load(dir string, td spiffeid.TrustDomain) (*stored, error) {
	certPath, keyPath, bundlePath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, BundleFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", errNoCredential, certPath)
	}
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(certPath)
	if err != nil {
		return nil, err
	}
	if _, err := parseCertificates(certPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	if _, err := parsePrivateKey(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	bundlePEM, err := os.ReadFile(bundlePath)
	if err != nil {
		return nil, err
	}
	b, err := x509bundle.Parse(td, bundlePEM)
	if err == nil && b.Empty() {
		err = errors.New("no certificates")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bundlePath, err)
	}
	return &stored{svid: svid, bundle: b, written: st.ModTime()}, nil
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificates")
	}
	return certs, nil
}

// parsePrivateKey accepts PKCS#8 (what persist writes) and SEC1 EC keys
// (what an operator may have placed by hand).
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("no PEM private key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a PKCS#8 or EC private key", blk.Type)
}

// persist stores svid and b in dir: a new generation directory with all
// three files, made current by renaming one symbolic link over dataLink.
// The caller holds the directory lock.
func persist(dir string, svid *x509svid.SVID, b *x509bundle.Bundle) error {
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("encode certificate: %w", err)
	}
	bundlePEM, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("encode trust bundle: %w", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	gen := genPrefix + time.Now().UTC().Format("20060102T150405.000000000") + "-" + hex.EncodeToString(suffix)
	genDir := filepath.Join(dir, gen)
	if err := os.Mkdir(genDir, 0o700); err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = os.RemoveAll(genDir)
		}
	}()
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, keyPEM, 0o600}, {CertFile, certPEM, 0o644}, {BundleFile, bundlePEM, 0o644}} {
		if err := writeSynced(filepath.Join(genDir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	if err := syncDir(genDir); err != nil {
		return err
	}
	if err := replaceSymlink(dir, dataLink, gen); err != nil {
		return err
	}
	committed = true
	for _, name := range []string{CertFile, KeyFile, BundleFile} {
		target := filepath.Join(dataLink, name)
		if cur, err := os.Readlink(filepath.Join(dir, name)); err == nil && cur == target {
			continue
		}
		if err := replaceSymlink(dir, name, target); err != nil {
			return err
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	removeStaleGenerations(dir, gen)
	return nil
}

// removeStaleGenerations removes generation directories other than the
// current one: the previous one, and any left by a crash before its link
// was swapped. Failures only leave garbage behind.
func removeStaleGenerations(dir, current string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, genPrefix) && n != current {
			_ = os.RemoveAll(filepath.Join(dir, n))
		}
	}
}

// replaceSymlink points dir/name at target atomically (a temporary link
// renamed over the old one, whatever it was).
func replaceSymlink(dir, name, target string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func writeSynced(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockPoll is how often a process waiting for another one's lock on Dir
// tries again; flock itself cannot be interrupted by a context.
const lockPoll = 50 * time.Millisecond

// lockDir takes the exclusive lock of dir that serializes the node agents
// sharing it: only one redeems the single-use join token, the others then
// load what it stored. It returns the unlock function.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", f.Name(), ctx.Err())
		case <-t.C:
		}
	}
}
