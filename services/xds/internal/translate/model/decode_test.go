package model

import (
	"net/netip"
	"slices"
	"testing"
)

func TestDecodeProducesNothing(t *testing.T) {
	d := Decoder{DomainSuffix: "cluster.local"}
	tests := []struct {
		name string
		ref  Ref
		json string
	}{
		{"succeeded pod", Ref{KindPod, "ns", "p"}, `{"status":{"phase":"Succeeded","podIP":"10.0.0.1"}}`},
		{"failed pod", Ref{KindPod, "ns", "p"}, `{"status":{"phase":"Failed","podIP":"10.0.0.1"}}`},
		{"pod without IP", Ref{KindPod, "ns", "p"}, `{"status":{"phase":"Pending"}}`},
		{"pod with garbage IP", Ref{KindPod, "ns", "p"}, `{"status":{"podIP":"nope"}}`},
		{"ExternalName", Ref{KindService, "ns", "s"}, `{"spec":{"type":"ExternalName","externalName":"x.example"}}`},
		{"unix WorkloadEntry", Ref{KindWorkloadEntry, "ns", "w"}, `{"spec":{"address":"unix:///x.sock"}}`},
	}
	for _, tc := range tests {
		obj, err := d.Decode(tc.ref, []byte(tc.json))
		if err != nil || obj != nil {
			t.Errorf("%s: got %v, %v; want nothing", tc.name, obj, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	d := Decoder{DomainSuffix: "cluster.local"}
	tests := []struct {
		ref  Ref
		json string
	}{
		{Ref{KindPod, "ns", "p"}, `not json`},
		{Ref{KindService, "ns", "s"}, `{"spec":{"ports":"x"}}`},
		{Ref{KindAuthorizationPolicy, "ns", "a"}, `{"spec":{"action":42.5}}`},
		{Ref{KindServiceEntry, "ns", "se"}, `{"spec":{},"status":{"addresses":"x"}}`},
		{Ref{KindUnknown, "ns", "x"}, `{}`},
	}
	for _, tc := range tests {
		if _, err := d.Decode(tc.ref, []byte(tc.json)); err == nil {
			t.Errorf("%v %s: no error", tc.ref, tc.json)
		}
	}
}

func TestDecodeLenient(t *testing.T) {
	d := Decoder{DomainSuffix: "cluster.local"}
	obj, err := d.Decode(Ref{KindAuthorizationPolicy, "ns", "a"},
		[]byte(`{"metadata":{"x":1},"spec":{"action":"DENY","newField":{"y":2},"rules":[{"newRuleField":true}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p := obj.(*AuthorizationPolicy); p.Spec.GetAction().String() != "DENY" || len(p.Spec.GetRules()) != 1 {
		t.Errorf("decoded %v", p.Spec)
	}
	// An enum value from a newer config reads as unset.
	obj, err = d.Decode(Ref{KindPeerAuthentication, "ns", "a"}, []byte(`{"spec":{"mtls":{"mode":"SOMETIMES"}}}`))
	if err != nil || obj.(*PeerAuthentication).Mode != MTLSUnset {
		t.Errorf("unknown mode: %v, %v", obj, err)
	}
}

func TestPodWorkloadName(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"no owner", `{}`, "p"},
		{"deployment", `{"metadata":{"labels":{"pod-template-hash":"abc"},"ownerReferences":[{"kind":"ReplicaSet","name":"web-abc","controller":true}]}}`, "web"},
		{"replicaset without hash", `{"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"web-abc"}]}}`, "web-abc"},
		{"cronjob", `{"metadata":{"ownerReferences":[{"kind":"Job","name":"backup-28512345"}]}}`, "backup"},
		{"job", `{"metadata":{"ownerReferences":[{"kind":"Job","name":"migrate-2"}]}}`, "migrate-2"},
		{"statefulset", `{"metadata":{"ownerReferences":[{"kind":"StatefulSet","name":"db"}]}}`, "db"},
		{"controller preferred", `{"metadata":{"ownerReferences":[{"kind":"Thing","name":"a"},{"kind":"DaemonSet","name":"ds","controller":true}]}}`, "ds"},
	}
	d := Decoder{}
	for _, tc := range tests {
		body := tc.json[:len(tc.json)-1]
		if body != "{" {
			body += ","
		}
		body += `"status":{"podIP":"10.0.0.1"}}`
		obj, err := d.Decode(Ref{KindPod, "ns", "p"}, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := obj.(*Workload).WorkloadName.String(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAppendIP(t *testing.T) {
	var ips []netip.Addr
	for _, s := range []string{"10.0.0.1", "10.0.0.1", "None", "", "10.0.0.2/32", "10.0.0.0/24", "::ffff:10.0.0.3", "fd00::1/128", "x"} {
		ips = appendIP(ips, s)
	}
	want := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("fd00::1")}
	if !slices.Equal(ips, want) {
		t.Errorf("got %v, want %v", ips, want)
	}
}

func TestLabels(t *testing.T) {
	ls := LabelsFrom(map[string]string{"b": "2", "a": "1", "c": "3"})
	if v, ok := ls.Get("b"); !ok || v != "2" {
		t.Errorf("Get(b) = %q %t", v, ok)
	}
	tests := []struct {
		sel  map[string]string
		want bool
	}{
		{map[string]string{"a": "1"}, true},
		{map[string]string{"a": "1", "c": "3"}, true},
		{map[string]string{"a": "2"}, false},
		{map[string]string{"d": "1"}, false},
		{map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}, false},
		{nil, true},
	}
	for _, tc := range tests {
		if got := LabelsFrom(tc.sel).Matches(ls); got != tc.want {
			t.Errorf("%v matches = %t", tc.sel, got)
		}
	}
}

func TestUseWaypoint(t *testing.T) {
	l := func(kv ...string) Labels {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return LabelsFrom(m)
	}
	tests := []struct {
		name    string
		obj, ns Labels
		want    WaypointRef
		ok      bool
	}{
		{"none anywhere", nil, nil, WaypointRef{}, false},
		{"namespace", nil, l(LabelUseWaypoint, "wp"), WaypointRef{"app", "wp"}, true},
		{"object overrides", l(LabelUseWaypoint, "own"), l(LabelUseWaypoint, "wp"), WaypointRef{"app", "own"}, true},
		{"object opts out", l(LabelUseWaypoint, "none"), l(LabelUseWaypoint, "wp"), WaypointRef{}, false},
		{"other namespace", l(LabelUseWaypoint, "wp", LabelUseWaypointNamespace, "infra"), nil, WaypointRef{"infra", "wp"}, true},
		{"namespace points elsewhere", nil, l(LabelUseWaypoint, "wp", LabelUseWaypointNamespace, "infra"), WaypointRef{"infra", "wp"}, true},
	}
	for _, tc := range tests {
		got, ok := UseWaypoint(tc.obj, "app", tc.ns)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %t, want %v %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
