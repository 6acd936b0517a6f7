package clustertrustbundle

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// What the CA writes, and how the config service knows it.
const (
	APIVersion = "certificates.k8s.io/v1"
	Group      = "certificates.k8s.io"
	Kind       = "ClusterTrustBundle"
	// VersionAnnotation holds the bundle version (keystore BundleVersion),
	// which only grows; replicas compare it so none overwrites a newer
	// bundle with an older one.
	VersionAnnotation = "ambit.io/bundle-version"
	// ManagedByLabel tells operators who owns the object.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "ambit-ca"
	signerDomain   = "ambit.io"
)

// SignerName is the signer of the CA of trust domain td: "ambit.io/<td>".
// The config service lets the CA write ClusterTrustBundles of this signer
// and of no other.
func SignerName(td spiffeid.TrustDomain) string { return signerDomain + "/" + td.Name() }

// Name is the object's name: "ambit.io:<td>:bundle", the signer name with
// '/' written as ':' and a suffix, as Kubernetes requires of the bundles
// of a signer.
func Name(td spiffeid.TrustDomain) string {
	return strings.ReplaceAll(SignerName(td), "/", ":") + ":bundle"
}

// CheckTrustDomain reports whether td can name a signer: a signer's path
// must be a DNS subdomain, which a SPIFFE trust domain need not be ('_' is
// allowed in one, not in the other).
func CheckTrustDomain(td spiffeid.TrustDomain) error {
	name := td.Name()
	if len(name) > 253 {
		return fmt.Errorf("trust domain %q is longer than 253 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if !isDNSLabel(label) {
			return fmt.Errorf("trust domain %q is not a DNS subdomain (label %q), so it cannot name the signer of a ClusterTrustBundle", name, label)
		}
	}
	return nil
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// object is the part of a ClusterTrustBundle the publisher reads and writes.
type object struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   metadata `json:"metadata"`
	Spec       spec     `json:"spec"`
}

type metadata struct {
	Name            string            `json:"name"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
}

type spec struct {
	SignerName  string `json:"signerName,omitempty"`
	TrustBundle string `json:"trustBundle"`
}

// desired is the object for bundle b: its roots in the keystore's order,
// each once (two authorities may share a root, and the API refuses
// duplicates). Token keys are not certificates and stay out.
func desired(b *bundle.Bundle) object {
	var pemRoots bytes.Buffer
	seen := map[string]bool{}
	for _, r := range b.Roots {
		if seen[string(r.Raw)] {
			continue
		}
		seen[string(r.Raw)] = true
		pemRoots.WriteString(keystore.CertificatePEM(r))
	}
	return object{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata: metadata{
			Name:        Name(b.TrustDomain),
			Labels:      map[string]string{ManagedByLabel: managedBy},
			Annotations: map[string]string{VersionAnnotation: strconv.FormatUint(b.Version, 10)},
		},
		Spec: spec{SignerName: SignerName(b.TrustDomain), TrustBundle: pemRoots.String()},
	}
}

// manifest is o as an Apply request's manifest, conditioned on
// resourceVersion ("" for none: create).
func (o object) manifest(resourceVersion string) ([]byte, error) {
	o.Metadata.ResourceVersion = resourceVersion
	return json.Marshal(o)
}

// version is the bundle version the object carries; 0 when it has none
// that parses (written by someone else: any bundle of ours is newer).
func (o object) version() uint64 {
	v, err := strconv.ParseUint(o.Metadata.Annotations[VersionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// Roots parses the certificates of a stored object (tests and tooling).
func Roots(stored []byte) (version uint64, roots []*x509.Certificate, err error) {
	o, err := parse(stored)
	if err != nil {
		return 0, nil, err
	}
	roots, err = keystore.ParseCertificates([]byte(o.Spec.TrustBundle))
	return o.version(), roots, err
}

func parse(stored []byte) (object, error) {
	var o object
	if err := json.Unmarshal(stored, &o); err != nil {
		return object{}, fmt.Errorf("decode stored %s: %w", Kind, err)
	}
	if o.Kind != Kind {
		return object{}, errors.New("stored object is a " + o.Kind + ", not a " + Kind)
	}
	return o, nil
}

// action is what to do about the stored object, given the desired one.
type action int

const (
	write      action = iota + 1 // absent, older, or ours altered: apply
	upToDate                     // same version, same content: nothing
	newerExist                   // another replica already wrote a newer bundle: nothing
)

func (a action) String() string {
	switch a {
	case write:
		return "write"
	case upToDate:
		return "up-to-date"
	case newerExist:
		return "newer-exists"
	}
	return "unknown"
}

// decide compares the stored object (nil: absent) with the desired one.
// Content at the same version is compared too, so an object edited by hand
// is put back.
func decide(stored *object, want object) action {
	switch {
	case stored == nil:
		return write
	case stored.version() > want.version():
		return newerExist
	case stored.version() == want.version() && stored.Spec == want.Spec:
		return upToDate
	}
	return write
}
