package model

// WaypointRef names a waypoint Gateway.
type WaypointRef struct {
	Namespace, Name string
}

// ObjectWaypoint reads istio.io/use-waypoint on an object in namespace ns.
// set is false when the object does not have the label; a "none" value is
// set but yields a zero ref.
func ObjectWaypoint(labels Labels, ns string) (ref WaypointRef, set bool) {
	name, ok := labels.Get(LabelUseWaypoint)
	if !ok {
		return WaypointRef{}, false
	}
	if name == "" || name == ModeNone {
		return WaypointRef{}, true
	}
	if wns := labels.Value(LabelUseWaypointNamespace); wns != "" {
		ns = wns
	}
	return WaypointRef{Namespace: ns, Name: name}, true
}

// UseWaypoint resolves the waypoint of an object in namespace ns: its own
// label wins over its namespace's; "none" at the object disables an
// inherited one. ok is false when there is none.
func UseWaypoint(obj Labels, ns string, nsLabels Labels) (WaypointRef, bool) {
	ref, set := ObjectWaypoint(obj, ns)
	if !set {
		ref, _ = ObjectWaypoint(nsLabels, ns)
	}
	return ref, ref.Name != ""
}
