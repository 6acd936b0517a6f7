package spiffe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Files names the PEM files a control-plane service or tool is given by an
// operator (or by `ambitctl`/`ambit-ca issue-*`): its certificate chain, its
// key, and the trust bundle (one or more roots) of its trust domain.
type Files struct {
	CertFile   string
	KeyFile    string
	BundleFile string
}

// Configured reports whether any file is named.
func (f Files) Configured() bool { return f.CertFile != "" || f.KeyFile != "" || f.BundleFile != "" }

// Validate checks that all three files are named.
func (f Files) Validate() error {
	var errs []error
	if f.CertFile == "" {
		errs = append(errs, errors.New("certificate file is required"))
	}
	if f.KeyFile == "" {
		errs = append(errs, errors.New("key file is required"))
	}
	if f.BundleFile == "" {
		errs = append(errs, errors.New("trust bundle file is required"))
	}
	return errors.Join(errs...)
}

// Load reads the files into an SVID and the bundle of trust domain td.
func (f Files) Load(td spiffeid.TrustDomain) (*x509svid.SVID, *x509bundle.Bundle, error) {
	svid, err := x509svid.Load(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s and %s: %w", f.CertFile, f.KeyFile, err)
	}
	b, err := x509bundle.Load(td, f.BundleFile)
	if err != nil {
		return nil, nil, fmt.Errorf("load trust bundle %s: %w", f.BundleFile, err)
	}
	return svid, b, nil
}

// NewSourceFromFiles loads the files into a new Source.
func NewSourceFromFiles(f Files, td spiffeid.TrustDomain) (*Source, error) {
	svid, b, err := f.Load(td)
	if err != nil {
		return nil, err
	}
	return NewSource(svid, b)
}

// WatchFiles reloads the files into src whenever one of them changes
// (checked every interval), so renewed certificates and rotated roots take
// effect without a restart. A failed reload keeps the old material and is
// logged; WatchFiles returns when ctx ends.
func (s *Source) WatchFiles(ctx context.Context, f Files, td spiffeid.TrustDomain, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	last := f.modTimes()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := f.modTimes()
		if now == last {
			continue
		}
		svid, b, err := f.Load(td)
		if err != nil {
			log.Warn("keeping the current certificate: reload failed", "error", err)
			continue
		}
		if err := s.Update(svid, b); err != nil {
			log.Warn("keeping the current certificate: reload rejected", "error", err)
			continue
		}
		last = now
		log.Info("reloaded certificate and trust bundle", "cert", f.CertFile, "expires", svid.Certificates[0].NotAfter)
	}
}

func (f Files) modTimes() [3]time.Time {
	var out [3]time.Time
	for i, p := range []string{f.CertFile, f.KeyFile, f.BundleFile} {
		if st, err := os.Stat(p); err == nil {
			out[i] = st.ModTime()
		}
	}
	return out
}
