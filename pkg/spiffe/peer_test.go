package spiffe_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

func TestFromCertificate(t *testing.T) {
	ca := spiffetest.NewCA(t, spiffe.DefaultTrustDomain())
	leaf := ca.MintSVID(t, node1).Certificates[0]
	withURIs := func(uris ...string) *x509.Certificate {
		cert := *leaf
		cert.URIs = nil
		for _, u := range uris {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			cert.URIs = append(cert.URIs, parsed)
		}
		return &cert
	}

	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    spiffe.Identity
		wantErr bool
	}{
		{"minted SVID", leaf, node1, false},
		{"nil", nil, spiffe.Identity{}, true},
		{"no URI SAN", withURIs(), spiffe.Identity{}, true},
		{"two URI SANs", withURIs(web.String(), db.String()), spiffe.Identity{}, true},
		{"not an Ambit shape", withURIs("spiffe://cluster.local/foo"), spiffe.Identity{}, true},
		{"not SPIFFE", withURIs("https://cluster.local/ns/a/sa/b"), spiffe.Identity{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := spiffe.FromCertificate(tt.cert)
			if tt.wantErr {
				if !errors.Is(err, spiffe.ErrInvalidIdentity) {
					t.Errorf("FromCertificate = %v, %v; want ErrInvalidIdentity", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("FromCertificate = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestPeerIdentityBeforeHandshake(t *testing.T) {
	if _, err := spiffe.PeerIdentity(tls.ConnectionState{}); err == nil {
		t.Error("PeerIdentity of an incomplete handshake succeeded")
	}
}
