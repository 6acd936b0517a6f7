package certs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/ambitmesh/ambit/pkg/nodecred"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

// TestNodeTrust reads the bundle of a node credential loaded from its
// directory (no CA needed for a stored, valid credential).
func TestNodeTrust(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	root := spiffetest.NewCA(t, td)
	node, err := spiffe.NewNode(td, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := root.MintSVID(t, node).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, err := root.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{nodecred.CertFile: certPEM, nodecred.KeyFile: keyPEM, nodecred.BundleFile: bundlePEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cred, err := nodecred.Obtain(context.Background(), nodecred.Options{Node: "node-a", Dir: dir, CAAddresses: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	trust := NodeTrust(cred)
	if trust.Changed() == nil {
		t.Error("Changed returned nil")
	}
	got, err := trust.Bundles()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Equal(root.Bundle()) {
		t.Errorf("Bundles() = %v, want the credential's bundle", got)
	}
	if !sameBundles(got, []*x509bundle.Bundle{root.Bundle()}) {
		t.Error("sameBundles differs on equal bundles")
	}
}
