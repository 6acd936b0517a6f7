package resource

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateClusterTrustBundle applies Kubernetes' rules for
// certificates.k8s.io ClusterTrustBundle. The name rule depends on the
// signer, so it is checked here rather than with the rest of metadata: a
// bundle of signer "example.com/foo" must be named "example.com:foo:<x>"
// with <x> a DNS subdomain, and a bundle without a signer must not contain
// ':' at all. Because the name encodes the signer, an update can never
// change spec.signerName, which Kubernetes declares immutable.
func validateClusterTrustBundle(obj *Object) ErrorList {
	s := obj.Spec.(*certificatesv1.ClusterTrustBundleSpec)
	spec := field.NewPath("spec")
	var errs ErrorList
	if obj.Metadata.Name != "" {
		errs = append(errs, validateTrustBundleName(field.NewPath("metadata", "name"), obj.Metadata.Name, s.SignerName)...)
	}
	if s.SignerName != "" {
		errs = append(errs, validateSignerName(spec.Child("signerName"), s.SignerName)...)
	}
	errs = append(errs, validateTrustAnchors(spec.Child("trustBundle"), s.TrustBundle)...)
	return errs
}

// trustBundleNamePrefix is the prefix Kubernetes requires of the name of a
// ClusterTrustBundle with a signer: the signer name with '/' written as
// ':', then ':'.
func trustBundleNamePrefix(signerName string) string {
	return strings.ReplaceAll(signerName, "/", ":") + ":"
}

func validateTrustBundleName(p *field.Path, name, signerName string) ErrorList {
	if signerName == "" {
		if strings.Contains(name, ":") {
			return ErrorList{errInvalid(p, name, "invalid name", `a ClusterTrustBundle without spec.signerName must not contain ":"`)}
		}
		return validateDNS1123Subdomain(p, name, "invalid name")
	}
	prefix := trustBundleNamePrefix(signerName)
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return ErrorList{errInvalid(p, name, "invalid name", fmt.Sprintf("a ClusterTrustBundle of signer %q must be named %q followed by a DNS subdomain", signerName, prefix))}
	}
	if msgs := content.IsDNS1123Subdomain(rest); len(msgs) > 0 {
		return ErrorList{errInvalid(p, name, "invalid name", fmt.Sprintf("the part after %q: %s", prefix, strings.Join(msgs, "; ")))}
	}
	return nil
}

// validateSignerName checks the "<domain>/<path>" form of a signer name:
// the domain a DNS subdomain of at least two labels, the path a DNS
// subdomain.
func validateSignerName(p *field.Path, signerName string) ErrorList {
	domain, path, ok := strings.Cut(signerName, "/")
	if !ok || strings.Contains(path, "/") {
		return ErrorList{errInvalid(p, signerName, "invalid signer name", `must be a domain and a path, e.g. "example.com/signer-name"`)}
	}
	var errs ErrorList
	if msgs := content.IsDNS1123Subdomain(domain); len(msgs) > 0 {
		errs = append(errs, errInvalid(p, signerName, "invalid signer name", "domain: "+strings.Join(msgs, "; ")))
	} else if !strings.Contains(domain, ".") {
		errs = append(errs, errInvalid(p, signerName, "invalid signer name", "domain: must have at least two labels separated by '.'"))
	}
	if msgs := content.IsDNS1123Subdomain(path); len(msgs) > 0 {
		errs = append(errs, errInvalid(p, signerName, "invalid signer name", "path: "+strings.Join(msgs, "; ")))
	}
	return errs
}

// validateTrustAnchors checks a PEM bundle of trust anchors as the API
// server does: CERTIFICATE blocks only, without headers, each an X.509 CA
// certificate, none twice. Text between blocks is ignored, as Kubernetes
// ignores it, but a block that does not decode is an error rather than
// silently skipped, so a truncated certificate cannot drop a root unseen.
func validateTrustAnchors(p *field.Path, bundle string) ErrorList {
	if bundle == "" {
		return ErrorList{errRequired(p, "at least one PEM CERTIFICATE block")}
	}
	data := []byte(bundle)
	bad := func(detail string, args ...any) *FieldError {
		return errInvalid(p, sizeOf(data), "invalid trust bundle", fmt.Sprintf(detail, args...))
	}
	var errs ErrorList
	first := map[string]int{} // DER → index of its first occurrence
	n := 0
	for rest := data; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		switch {
		case block.Type != "CERTIFICATE":
			errs = append(errs, bad("PEM block %d is %q, want CERTIFICATE", n, block.Type))
			continue
		case len(block.Headers) > 0:
			errs = append(errs, bad("PEM block %d has headers", n))
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		switch {
		case err != nil:
			errs = append(errs, bad("PEM block %d: %v", n, err))
		case !cert.BasicConstraintsValid || !cert.IsCA:
			errs = append(errs, bad("PEM block %d (%s) is not a CA certificate", n, cert.Subject))
		default:
			if i, dup := first[string(block.Bytes)]; dup {
				errs = append(errs, bad("PEM block %d repeats block %d", n, i))
			} else {
				first[string(block.Bytes)] = n
			}
		}
	}
	if begins := pemBeginLines(data); begins > n {
		errs = append(errs, bad("%d of %d PEM blocks do not decode", begins-n, begins))
	} else if n == 0 {
		errs = append(errs, bad("no PEM CERTIFICATE block found"))
	}
	return errs
}

// pemBeginLines counts the lines that open a PEM block, as pem.Decode
// recognizes them.
func pemBeginLines(data []byte) int {
	const begin = "-----BEGIN "
	n := bytes.Count(data, []byte("\n"+begin))
	if bytes.HasPrefix(data, []byte(begin)) {
		n++
	}
	return n
}
