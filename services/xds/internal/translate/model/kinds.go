package model

// Kind is a stored kind the translator consumes.
type Kind uint8

// The kinds, in the order their objects are best applied during a full
// rebuild (namespaces and waypoints before what refers to them; nothing
// depends on it for correctness).
const (
	KindUnknown Kind = iota
	KindNamespace
	KindGateway
	KindService
	KindServiceEntry
	KindPod
	KindWorkloadEntry
	KindAuthorizationPolicy
	KindPeerAuthentication
)

// Storage groups (DESIGN §3: the core group is spelled "core" in keys).
const (
	GroupCore       = "core"
	GroupSecurity   = "security.istio.io"
	GroupNetworking = "networking.istio.io"
	GroupGateway    = "gateway.networking.k8s.io"
)

var kindNames = [...]struct{ group, kind string }{
	KindUnknown:             {"", ""},
	KindNamespace:           {GroupCore, "Namespace"},
	KindGateway:             {GroupGateway, "Gateway"},
	KindService:             {GroupCore, "Service"},
	KindServiceEntry:        {GroupNetworking, "ServiceEntry"},
	KindPod:                 {GroupCore, "Pod"},
	KindWorkloadEntry:       {GroupNetworking, "WorkloadEntry"},
	KindAuthorizationPolicy: {GroupSecurity, "AuthorizationPolicy"},
	KindPeerAuthentication:  {GroupSecurity, "PeerAuthentication"},
}

// KindOf maps a storage group and kind; KindUnknown for kinds the
// translator ignores.
func KindOf(group, kind string) Kind {
	for k, n := range kindNames {
		if k != int(KindUnknown) && n.group == group && n.kind == kind {
			return Kind(k)
		}
	}
	return KindUnknown
}

// Kinds lists every kind the translator consumes.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(kindNames)-1)
	for k := KindNamespace; int(k) < len(kindNames); k++ {
		ks = append(ks, k)
	}
	return ks
}

// Group is the storage group of k.
func (k Kind) Group() string { return kindNames[k].group }

// Name is the kind's name, e.g. "Pod".
func (k Kind) Name() string { return kindNames[k].kind }

func (k Kind) String() string {
	if k == KindUnknown || int(k) >= len(kindNames) {
		return "Unknown"
	}
	return kindNames[k].group + "/" + kindNames[k].kind
}

// Ref names one stored object. Namespace is "" for namespaces.
type Ref struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (r Ref) String() string {
	if r.Namespace == "" {
		return r.Kind.String() + "/" + r.Name
	}
	return r.Kind.String() + "/" + r.Namespace + "/" + r.Name
}
