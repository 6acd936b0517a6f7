package authz

import "strings"

// Resource names (Istio's).
const (
	// StaticStrictName is the shared STRICT policy, in the root namespace.
	StaticStrictName = "istio_converted_static_strict"
	// convertedPrefix starts the name of a PeerAuthentication's own policy.
	convertedPrefix = "converted_peer_authentication_"
)

// Name is an Authorization resource name: "<namespace>/<name>".
func Name(namespace, name string) string { return namespace + "/" + name }

// ConvertedName is the policy name of PeerAuthentication pa.
func ConvertedName(pa string) string { return convertedPrefix + pa }

// SplitName parses a resource name. converted is the PeerAuthentication
// name when the policy is a converted one.
func SplitName(resource string) (namespace, name, converted string, ok bool) {
	namespace, name, ok = strings.Cut(resource, "/")
	if !ok {
		return "", "", "", false
	}
	converted, _ = strings.CutPrefix(name, convertedPrefix)
	if converted == name {
		converted = ""
	}
	return namespace, name, converted, true
}
