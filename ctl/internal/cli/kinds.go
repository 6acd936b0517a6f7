package cli

import (
	"strings"

	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

// shortNames are kubectl's and Istio's abbreviations.
var shortNames = map[string]string{
	"ns": "Namespace", "svc": "Service", "po": "Pod",
	"se": "ServiceEntry", "we": "WorkloadEntry", "dr": "DestinationRule",
	"ap": "AuthorizationPolicy", "pa": "PeerAuthentication", "ra": "RequestAuthentication",
	"gc": "GatewayClass", "gtw": "Gateway", "gw": "Gateway",
}

// parseKind turns "services", "svc", "Service", "gateways.gateway.networking.k8s.io"
// into a reference the config API resolves (it matches kinds
// case-insensitively).
func parseKind(s string) *configv1.ObjectRef {
	ref := &configv1.ObjectRef{}
	if i := strings.Index(s, "."); i >= 0 {
		s, ref.Group = s[:i], s[i+1:]
	}
	if full, ok := shortNames[strings.ToLower(s)]; ok {
		ref.Kind = full
		return ref
	}
	ref.Kind = singular(strings.ToLower(s))
	return ref
}

func singular(s string) string {
	switch {
	case strings.HasSuffix(s, "ies"):
		return strings.TrimSuffix(s, "ies") + "y"
	case strings.HasSuffix(s, "sses"), strings.HasSuffix(s, "ches"):
		return strings.TrimSuffix(s, "es")
	case strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ss"):
		return strings.TrimSuffix(s, "s")
	}
	return s
}

// parseTarget reads "<kind>/<name>" or "<kind> <name>" arguments.
func parseTarget(args []string) (*configv1.ObjectRef, error) {
	switch len(args) {
	case 1:
		kind, name, ok := strings.Cut(args[0], "/")
		if !ok || name == "" {
			return nil, usageErrorf("expected <kind>/<name>, got %q", args[0])
		}
		ref := parseKind(kind)
		ref.Name = name
		return ref, nil
	case 2:
		ref := parseKind(args[0])
		ref.Name = args[1]
		return ref, nil
	}
	return nil, usageErrorf("expected <kind>/<name> or <kind> <name>")
}
