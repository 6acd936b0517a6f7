package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecide(t *testing.T) {
	pod := func(mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "p", UID: "u1"}, Spec: corev1.PodSpec{NodeName: "node-a"}}
		if mut != nil {
			mut(p)
		}
		return p
	}
	ambient := map[string]string{LabelDataplaneMode: ModeAmbient}
	sb := &Sandbox{PodNamespace: "demo", PodName: "p", PodUID: "u1"}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		ns      map[string]string
		nsKnown bool
		sb      *Sandbox
		want    bool
	}{
		{"namespace ambient", pod(nil), ambient, true, sb, true},
		{"namespace unlabelled", pod(nil), nil, true, sb, false},
		{"pod ambient in plain namespace", pod(func(p *corev1.Pod) { p.Labels = ambient }), nil, true, sb, true},
		{"pod none overrides namespace", pod(func(p *corev1.Pod) { p.Labels = map[string]string{LabelDataplaneMode: ModeNone} }), ambient, true, sb, false},
		{"other node", pod(func(p *corev1.Pod) { p.Spec.NodeName = "node-b" }), ambient, true, sb, false},
		{"earlier incarnation", pod(func(p *corev1.Pod) { p.UID = "u2" }), ambient, true, sb, false},
		{"no uid in CNI args", pod(nil), ambient, true, &Sandbox{PodNamespace: "demo", PodName: "p"}, true},
		{"host network", pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), ambient, true, sb, false},
		{"sidecar", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{annotationSidecarStatus: "{}"} }), ambient, true, sb, false},
		{"finished", pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), ambient, true, sb, false},
		{"terminating", pod(func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }), ambient, true, sb, false},
		{"pod missing", nil, ambient, true, sb, false},
		{"namespace missing", pod(nil), nil, false, sb, false},
	} {
		d := decide("node-a", tc.sb, tc.pod, tc.ns, tc.nsKnown)
		if d.Enroll != tc.want || d.Reason == "" {
			t.Errorf("%s: got %+v, want enroll=%t", tc.name, d, tc.want)
		}
	}
}
