package resource

import (
	"slices"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// API groups of the kinds the config service accepts.
const (
	GroupCore         = ""
	GroupSecurity     = "security.istio.io"
	GroupNetworking   = "networking.istio.io"
	GroupGateway      = "gateway.networking.k8s.io"
	GroupCertificates = "certificates.k8s.io"

	// CoreKeyGroup is how the core (empty) API group is spelled in storage
	// keys and change-feed subjects, where an empty segment is not allowed.
	CoreKeyGroup = "core"
	// ClusterScopeSegment stands in for the namespace of cluster-scoped
	// kinds in storage keys.
	ClusterScopeSegment = "_"
)

// nameRule is the format Kubernetes requires of metadata.name for a kind.
type nameRule int

const (
	nameDNS1123Subdomain nameRule = iota // most kinds, including every CRD
	nameDNS1123Label                     // Namespace
	nameDNS1035Label                     // Service (its name becomes a DNS label and must start with a letter)
	nameBySpec                           // ClusterTrustBundle: the rule depends on the spec, so validateSpec checks it
)

// bodyLayout says where a kind keeps its content in the stored JSON.
type bodyLayout int

const (
	bodyInSpec     bodyLayout = iota // {"spec": {...}, "status": {...}}
	bodyAtTopLevel                   // Secret: type/data/immutable beside metadata, no status
)

// Kind describes one accepted resource kind. Values are created only by
// Kinds() and are read-only: every field is unexported and the accessors
// return copies.
type Kind struct {
	group          string
	name           string
	versions       []string
	storageVersion string
	namespaced     bool
	layout         bodyLayout
	nameRule       nameRule
	spec           specCodec
	status         specCodec // typed status, nil when status stays opaque JSON
	applyDefaults  func(*Object)
	validateSpec   func(*Object) ErrorList
}

// Group is the API group as written in apiVersion ("" for core).
func (k *Kind) Group() string { return k.group }

// KeyGroup is the group as a storage-key segment ("core" for the core group).
func (k *Kind) KeyGroup() string {
	if k.group == GroupCore {
		return CoreKeyGroup
	}
	return k.group
}

// Name is the kind, e.g. "AuthorizationPolicy".
func (k *Kind) Name() string { return k.name }

// Versions lists every accepted version, storage version first.
func (k *Kind) Versions() []string { return slices.Clone(k.versions) }

// StorageVersion is the version objects are converted to before storage.
func (k *Kind) StorageVersion() string { return k.storageVersion }

// StorageAPIVersion is the apiVersion objects are stored with, e.g.
// "security.istio.io/v1" or "v1".
func (k *Kind) StorageAPIVersion() string { return apiVersionOf(k.group, k.storageVersion) }

// Namespaced reports whether objects of the kind live in a namespace.
func (k *Kind) Namespaced() bool { return k.namespaced }

// Accepts reports whether version is one of the kind's accepted versions.
func (k *Kind) Accepts(version string) bool { return slices.Contains(k.versions, version) }

// NewSpec returns an empty spec of the kind's Go type (a proto message for
// Istio kinds, a pointer to a struct for core and Gateway API kinds).
func (k *Kind) NewSpec() any { return k.spec.newSpec() }

func apiVersionOf(group, version string) string {
	if group == GroupCore {
		return version
	}
	return group + "/" + version
}

// splitAPIVersion splits "group/version" ("v1" alone is the core group).
func splitAPIVersion(apiVersion string) (group, version string) {
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		return apiVersion[:i], apiVersion[i+1:]
	}
	return GroupCore, apiVersion
}

type groupKind struct{ group, kind string }

// KindTable is the immutable set of accepted kinds with their lookups.
type KindTable struct {
	kinds       []*Kind
	byGroupKind map[groupKind]*Kind
}

// Kinds builds the table of every kind the config service accepts. Each call
// returns a fresh table, so there is no shared mutable state; callers that
// decode often keep one and reuse it (it is safe for concurrent use).
//
// Canonical (storage) versions and why:
//   - security.istio.io v1beta1 → v1 and networking.istio.io v1alpha3/v1beta1
//     → v1: Istio serves every version from one schema and its v1 Go
//     packages are type aliases of the older ones, so conversion is a rename.
//   - gateway.networking.k8s.io v1beta1 → v1: the v1beta1 Go types alias the
//     v1 ones. ReferenceGrant too (upstream still stores v1beta1, but v1 is
//     served with the identical schema, so we store the newer name).
//   - GRPCRoute is accepted only as v1: the v1.6 CRDs no longer serve v1alpha2.
//   - core kinds: v1 only.
//   - certificates.k8s.io ClusterTrustBundle v1beta1/v1alpha1 → v1: the
//     three versions share one schema (signerName, trustBundle), and v1 is
//     GA since Kubernetes 1.37 (k8s.io/api v0.37), which deprecates v1beta1
//     in its favor; v1alpha1 stays accepted for old manifests.
func Kinds() *KindTable {
	istioSecurity := []string{"v1", "v1beta1"}
	istioNetworking := []string{"v1", "v1beta1", "v1alpha3"}
	gatewayVersions := []string{"v1", "v1beta1"}

	kinds := []*Kind{
		// core
		{
			group: GroupCore, name: "Namespace", versions: []string{"v1"}, nameRule: nameDNS1123Label,
			spec:         structSpec[corev1.NamespaceSpec](),
			validateSpec: validateNamespace,
		},
		{
			group: GroupCore, name: "Service", versions: []string{"v1"}, namespaced: true, nameRule: nameDNS1035Label,
			spec:          structSpec[corev1.ServiceSpec](),
			applyDefaults: defaultService,
			validateSpec:  validateService,
		},
		{
			group: GroupCore, name: "Pod", versions: []string{"v1"}, namespaced: true,
			spec:          structSpec[corev1.PodSpec](),
			status:        structSpec[corev1.PodStatus](),
			applyDefaults: defaultPod,
			validateSpec:  validatePod,
		},
		{
			group: GroupCore, name: "Secret", versions: []string{"v1"}, namespaced: true, layout: bodyAtTopLevel,
			spec:          structSpec[SecretContent](),
			applyDefaults: defaultSecret,
			validateSpec:  validateSecret,
		},
		// security.istio.io
		{
			group: GroupSecurity, name: "AuthorizationPolicy", versions: istioSecurity, namespaced: true,
			spec:         protoSpec[securityv1beta1.AuthorizationPolicy](),
			validateSpec: validateAuthorizationPolicy,
		},
		{
			group: GroupSecurity, name: "PeerAuthentication", versions: istioSecurity, namespaced: true,
			spec:         protoSpec[securityv1beta1.PeerAuthentication](),
			validateSpec: validatePeerAuthentication,
		},
		{
			group: GroupSecurity, name: "RequestAuthentication", versions: istioSecurity, namespaced: true,
			spec:         protoSpec[securityv1beta1.RequestAuthentication](),
			validateSpec: validateRequestAuthentication,
		},
		// networking.istio.io
		{
			group: GroupNetworking, name: "ServiceEntry", versions: istioNetworking, namespaced: true,
			spec:         protoSpec[networkingv1alpha3.ServiceEntry](),
			validateSpec: validateServiceEntry,
		},
		{
			group: GroupNetworking, name: "WorkloadEntry", versions: istioNetworking, namespaced: true,
			spec:         protoSpec[networkingv1alpha3.WorkloadEntry](),
			validateSpec: validateWorkloadEntry,
		},
		{
			group: GroupNetworking, name: "DestinationRule", versions: istioNetworking, namespaced: true,
			spec:         protoSpec[networkingv1alpha3.DestinationRule](),
			validateSpec: validateDestinationRule,
		},
		// gateway.networking.k8s.io
		{
			group: GroupGateway, name: "GatewayClass", versions: gatewayVersions,
			spec:         structSpec[gatewayv1.GatewayClassSpec](),
			validateSpec: validateGatewayClass,
		},
		{
			group: GroupGateway, name: "Gateway", versions: gatewayVersions, namespaced: true,
			spec:          structSpec[gatewayv1.GatewaySpec](),
			applyDefaults: defaultGateway,
			validateSpec:  validateGateway,
		},
		{
			group: GroupGateway, name: "HTTPRoute", versions: gatewayVersions, namespaced: true,
			spec:          structSpec[gatewayv1.HTTPRouteSpec](),
			applyDefaults: defaultHTTPRoute,
			validateSpec:  validateHTTPRoute,
		},
		{
			group: GroupGateway, name: "GRPCRoute", versions: []string{"v1"}, namespaced: true,
			spec:          structSpec[gatewayv1.GRPCRouteSpec](),
			applyDefaults: defaultGRPCRoute,
			validateSpec:  validateGRPCRoute,
		},
		{
			group: GroupGateway, name: "ReferenceGrant", versions: gatewayVersions, namespaced: true,
			spec:         structSpec[gatewayv1.ReferenceGrantSpec](),
			validateSpec: validateReferenceGrant,
		},
		// certificates.k8s.io
		{
			group: GroupCertificates, name: "ClusterTrustBundle", versions: []string{"v1", "v1beta1", "v1alpha1"}, nameRule: nameBySpec,
			spec:         structSpec[certificatesv1.ClusterTrustBundleSpec](),
			validateSpec: validateClusterTrustBundle,
		},
	}

	t := &KindTable{kinds: kinds, byGroupKind: make(map[groupKind]*Kind, len(kinds))}
	for _, k := range kinds {
		k.storageVersion = k.versions[0]
		t.byGroupKind[groupKind{k.group, k.name}] = k
	}
	return t
}

// All returns the kinds in a stable order (core, Istio security, Istio
// networking, Gateway API, certificates).
func (t *KindTable) All() []*Kind { return slices.Clone(t.kinds) }

// ByGroupKind finds a kind by API group and kind name. The core group may be
// given as "" or "core".
func (t *KindTable) ByGroupKind(group, kind string) (*Kind, bool) {
	if group == CoreKeyGroup {
		group = GroupCore
	}
	k, ok := t.byGroupKind[groupKind{group, kind}]
	return k, ok
}

// ByAPIVersionKind finds a kind by apiVersion and kind as written in a
// manifest, accepting any of the kind's versions.
func (t *KindTable) ByAPIVersionKind(apiVersion, kind string) (*Kind, bool) {
	k, err := t.lookup(apiVersion, kind)
	return k, err == nil
}

// lookup is ByAPIVersionKind with an error that says what was wrong.
func (t *KindTable) lookup(apiVersion, kind string) (*Kind, *FieldError) {
	group, version := splitAPIVersion(apiVersion)
	if group == CoreKeyGroup {
		// "core/v1" is not how Kubernetes spells the core group.
		return nil, errInvalid(field.NewPath("apiVersion"), apiVersion, "invalid apiVersion", `the core group is written as "v1"`)
	}
	k, ok := t.byGroupKind[groupKind{group, kind}]
	if !ok {
		supported := make([]string, 0, len(t.kinds))
		for _, c := range t.kinds {
			if c.group == group {
				supported = append(supported, c.name)
			}
		}
		if len(supported) == 0 {
			for _, c := range t.kinds {
				supported = append(supported, c.name)
			}
		}
		return nil, errNotSupported(field.NewPath("kind"), kind, supported)
	}
	if !k.Accepts(version) {
		supported := make([]string, len(k.versions))
		for i, v := range k.versions {
			supported[i] = apiVersionOf(k.group, v)
		}
		return nil, errNotSupported(field.NewPath("apiVersion"), apiVersion, supported)
	}
	return k, nil
}
