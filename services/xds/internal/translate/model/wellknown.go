package model

// Labels and annotations the translator interprets (DESIGN §2: users'
// Istio ambient YAML applies unchanged).
const (
	// LabelDataplaneMode on a namespace or pod: "ambient" enrolls, "none"
	// (on a pod) opts out.
	LabelDataplaneMode = "istio.io/dataplane-mode"
	// LabelUseWaypoint on a namespace, Service, ServiceEntry, pod or
	// WorkloadEntry names the waypoint Gateway to use; "none" disables one
	// inherited from the namespace.
	LabelUseWaypoint = "istio.io/use-waypoint"
	// LabelUseWaypointNamespace names the waypoint's namespace when it is
	// not the object's own.
	LabelUseWaypointNamespace = "istio.io/use-waypoint-namespace"
	// LabelWaypointFor on a waypoint Gateway says what it serves:
	// "service" (default), "workload", "all" or "none".
	LabelWaypointFor = "istio.io/waypoint-for"
	// LabelGatewayName marks the pods and Services of a gateway deployment;
	// they never get a waypoint themselves.
	LabelGatewayName = "gateway.networking.k8s.io/gateway-name"
	// LabelNetwork on a pod or namespace sets the workload's network.
	LabelNetwork = "topology.istio.io/network"
	// LabelTunnel "http" on a WorkloadEntry or pod says it terminates HBONE
	// itself (native_tunnel).
	LabelTunnel = "networking.istio.io/tunnel"
	// LabelLocality on a pod is "region.zone.subzone" (Istio's
	// istio-locality label; '/' is not allowed in label values).
	LabelLocality = "istio-locality"

	// Telemetry labels, in order of preference.
	LabelCanonicalName     = "service.istio.io/canonical-name"
	LabelCanonicalRevision = "service.istio.io/canonical-revision"
	LabelAppName           = "app.kubernetes.io/name"
	LabelAppVersion        = "app.kubernetes.io/version"
	LabelApp               = "app"
	LabelVersion           = "version"

	// AnnotationSidecarStatus marks a pod with an injected sidecar: it is
	// never captured by ztunnel.
	AnnotationSidecarStatus = "sidecar.istio.io/status"
	// AnnotationDryRun "true" on an AuthorizationPolicy makes it dry-run.
	AnnotationDryRun = "istio.io/dry-run"
	// AnnotationTrafficDistribution on a Service or ServiceEntry sets its
	// load balancing like spec.trafficDistribution.
	AnnotationTrafficDistribution = "networking.istio.io/traffic-distribution"

	// WaypointClass is the GatewayClass of waypoints.
	WaypointClass = "istio-waypoint"

	// ModeAmbient and ModeNone are values of LabelDataplaneMode; None is
	// also the value of LabelUseWaypoint that opts out.
	ModeAmbient = "ambient"
	ModeNone    = "none"
)
