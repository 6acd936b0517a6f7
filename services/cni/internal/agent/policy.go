package agent

import (
	corev1 "k8s.io/api/core/v1"
)

// Labels and annotations with Istio's meaning (DESIGN §2), so an ambient
// user's namespaces and pods enroll unchanged.
const (
	LabelDataplaneMode = "istio.io/dataplane-mode"
	ModeAmbient        = "ambient"
	ModeNone           = "none"
	// annotationSidecarStatus marks a pod that runs Istio's sidecar; such
	// a pod already has a proxy and is never captured twice.
	annotationSidecarStatus = "sidecar.istio.io/status"
)

// Decision is whether a sandbox should be in the mesh, and why.
type Decision struct {
	Enroll bool
	Reason string
}

// decide applies Istio's ambient enrollment rules: a pod labelled
// dataplane-mode=none stays out whatever its namespace says; a pod or its
// namespace labelled ambient is in; everything else is out. Pods that are
// not this node's, not this sandbox's incarnation (uid), host-network,
// sidecar-injected or finished stay out.
func decide(node string, sb *Sandbox, pod *corev1.Pod, nsLabels map[string]string, nsKnown bool) Decision {
	switch {
	case pod == nil:
		return Decision{Reason: "pod not found"}
	case pod.Spec.NodeName != node:
		return Decision{Reason: "pod is assigned to node " + pod.Spec.NodeName}
	case sb.PodUID != "" && string(pod.UID) != sb.PodUID:
		return Decision{Reason: "sandbox belongs to an earlier pod with the same name"}
	case pod.Spec.HostNetwork:
		return Decision{Reason: "host network pod"}
	case pod.Annotations[annotationSidecarStatus] != "":
		return Decision{Reason: "pod runs a sidecar"}
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return Decision{Reason: "pod finished"}
	case pod.DeletionTimestamp != nil:
		return Decision{Reason: "pod is being deleted"}
	}
	switch pod.Labels[LabelDataplaneMode] {
	case ModeNone:
		return Decision{Reason: "pod label " + LabelDataplaneMode + "=none"}
	case ModeAmbient:
		return Decision{Enroll: true, Reason: "pod label " + LabelDataplaneMode + "=ambient"}
	}
	if !nsKnown {
		return Decision{Reason: "namespace " + pod.Namespace + " not found"}
	}
	if nsLabels[LabelDataplaneMode] == ModeAmbient {
		return Decision{Enroll: true, Reason: "namespace label " + LabelDataplaneMode + "=ambient"}
	}
	return Decision{Reason: "neither pod nor namespace labelled " + LabelDataplaneMode + "=ambient"}
}
