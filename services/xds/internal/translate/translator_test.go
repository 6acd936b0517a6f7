package translate

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	security "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// TestDeterministic: the same objects, in any order and on another
// Translator, give byte-identical resources and versions.
func TestDeterministic(t *testing.T) {
	objs := allCaseObjects(t)
	// Keep one version per key (the last), as a store would.
	byRef := map[changefeed.ResourceRef]changefeed.Object{}
	for _, o := range objs {
		byRef[o.Ref] = o
	}
	snap := snapshotOf(byRef, 7)
	first := New(Options{}).Reset(snap)
	for i := range 3 {
		shuffled := slices.Clone(snap.Objects)
		rand.New(rand.NewPCG(uint64(i), 9)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		again := New(Options{}).Reset(changefeed.Snapshot{Revision: 7, Objects: shuffled})
		if err := sameDeltas(first, again); err != "" {
			t.Fatalf("run %d: %s", i, err)
		}
	}
}

func sameDeltas(a, b []snapshot.Delta) string {
	if len(a) != len(b) {
		return "different number of deltas"
	}
	for i := range a {
		if a[i].TypeURL != b[i].TypeURL || len(a[i].Upserts) != len(b[i].Upserts) {
			return "different deltas for " + a[i].TypeURL
		}
		for j, r := range a[i].Upserts {
			s := b[i].Upserts[j]
			if r.Name != s.Name || r.Version != s.Version || !bytes.Equal(r.Body.GetValue(), s.Body.GetValue()) || !slices.Equal(r.Aliases, s.Aliases) {
				return "resource " + r.Name + " differs"
			}
		}
	}
	return ""
}

// TestApplyEdgeCases covers events that change nothing or cannot be read.
func TestApplyEdgeCases(t *testing.T) {
	objs := loadObjects(t, "testdata/in/services.yaml")
	pod := func(name, body string) changefeed.Object {
		return changefeed.Object{
			Ref:   changefeed.ResourceRef{Group: "core", Kind: "Pod", Namespace: "bookinfo", Name: name},
			Value: []byte(body),
		}
	}
	tests := []struct {
		name        string
		ev          changefeed.Event
		wantUpserts []string
		wantRemoved []string
		wantInvalid int
	}{{
		name: "kind not translated",
		ev: changefeed.Event{Type: changefeed.EventPut, Object: changefeed.Object{
			Ref:   changefeed.ResourceRef{Group: "networking.istio.io", Kind: "DestinationRule", Namespace: "bookinfo", Name: "x"},
			Value: []byte(`{}`),
		}},
	}, {
		name: "unknown fields are ignored",
		ev: changefeed.Event{Type: changefeed.EventPut, Object: pod("new",
			`{"apiVersion":"v1","kind":"Pod","futureField":{"a":1},"metadata":{"name":"new","labels":{"app":"ratings"},"futureMeta":1},`+
				`"spec":{"nodeName":"n","futureSpec":[1]},"status":{"phase":"Running","podIPs":[{"ip":"10.3.9.9","futureIPField":true}]}}`)},
		wantUpserts: []string{"Kubernetes//Pod/bookinfo/new"},
	}, {
		name:        "undecodable object is skipped and its old version removed",
		ev:          changefeed.Event{Type: changefeed.EventPut, Object: pod("ratings-v1", `{"metadata":{"labels":"not-a-map"}}`)},
		wantRemoved: []string{"Kubernetes//Pod/bookinfo/ratings-v1"},
		wantInvalid: 1,
	}, {
		name:        "delete without a last value",
		ev:          changefeed.Event{Type: changefeed.EventDelete, Object: changefeed.Object{Ref: pod("reviews-v2", "").Ref}},
		wantRemoved: []string{"Kubernetes//Pod/bookinfo/reviews-v2"},
	}, {
		name: "delete of something never seen",
		ev:   changefeed.Event{Type: changefeed.EventDelete, Object: changefeed.Object{Ref: pod("ghost", "").Ref}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(Options{})
			tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs})
			tc.ev.Position.Revision = 5
			var ups, rms []string
			for _, d := range tr.Apply(tc.ev) {
				for _, r := range d.Upserts {
					ups = append(ups, r.Name)
				}
				rms = append(rms, d.Removals...)
			}
			if !slices.Equal(ups, tc.wantUpserts) || !slices.Equal(rms, tc.wantRemoved) {
				t.Errorf("upserts %v removals %v, want %v %v", ups, rms, tc.wantUpserts, tc.wantRemoved)
			}
			if tr.Invalid() != tc.wantInvalid {
				t.Errorf("Invalid() = %d, want %d", tr.Invalid(), tc.wantInvalid)
			}
			if tr.Revision() != 5 {
				t.Errorf("Revision() = %d, want 5", tr.Revision())
			}
		})
	}
}

// TestApplyTouchesOnlyWhatChanged: changes produce exactly the resources
// whose content changed.
func TestApplyTouchesOnlyWhatChanged(t *testing.T) {
	objs := loadObjects(t, "testdata/in/waypoints.yaml")
	find := func(kind, ns, name string) changefeed.Object {
		for _, o := range objs {
			if o.Ref.Kind == kind && o.Ref.Namespace == ns && o.Ref.Name == name {
				return o
			}
		}
		t.Fatalf("no %s %s/%s", kind, ns, name)
		return changefeed.Object{}
	}
	withJSON := func(o changefeed.Object, old, new string) changefeed.Object {
		if !bytes.Contains(o.Value, []byte(old)) {
			t.Fatalf("%s does not contain %s", o.Value, old)
		}
		o.Value = bytes.Replace(o.Value, []byte(old), []byte(new), 1)
		return o
	}
	tests := []struct {
		name string
		obj  changefeed.Object
		want []string
	}{{
		name: "pod IP change: only that workload",
		obj:  withJSON(find("Pod", "app", "frontend-1"), `10.5.0.10`, `10.5.0.99`),
		want: []string{"Kubernetes//Pod/app/frontend-1"},
	}, {
		name: "namespace label that nothing reads: nothing",
		obj:  withJSON(find("Namespace", "_", "app"), `"labels":{`, `"labels":{"team":"x",`),
	}, {
		name: "namespace waypoint removed: its services",
		obj:  withJSON(find("Namespace", "_", "app"), `"istio.io/use-waypoint":"waypoint"`, `"team":"x"`),
		want: []string{"app/frontend.app.svc.cluster.local"},
	}, {
		name: "waypoint address change: services using it",
		obj:  withJSON(find("Gateway", "app", "waypoint"), `"value":"waypoint.app.svc.cluster.local"`, `"value":"wp.app.svc.cluster.local"`),
		want: []string{"app/frontend.app.svc.cluster.local"},
	}, {
		name: "service VIP change: only the service",
		obj:  withJSON(find("Service", "app", "frontend"), `10.96.6.1`, `10.96.6.100`),
		want: []string{"app/frontend.app.svc.cluster.local"},
	}, {
		name: "service target port change: the service and its pods",
		obj:  withJSON(find("Service", "app", "frontend"), `"targetPort":8080`, `"targetPort":8443`),
		want: []string{"Kubernetes//Pod/app/frontend-1", "app/frontend.app.svc.cluster.local"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(Options{})
			tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs})
			var got []string
			for _, d := range tr.Apply(changefeed.Event{Type: changefeed.EventPut, Object: tc.obj}) {
				for _, r := range d.Upserts {
					got = append(got, r.Name)
				}
				got = append(got, d.Removals...)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("changed %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	var got []string
	for _, gk := range Kinds() {
		if err := gk.Validate(); err != nil {
			t.Error(err)
		}
		got = append(got, gk.String())
	}
	slices.Sort(got)
	want := []string{
		"core/Namespace", "core/Pod", "core/Service", "gateway.networking.k8s.io/Gateway",
		"networking.istio.io/ServiceEntry", "networking.istio.io/WorkloadEntry",
		"security.istio.io/AuthorizationPolicy", "security.istio.io/PeerAuthentication",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Kinds() = %v, want %v", got, want)
	}
}

// TestWireNumbers pins the field numbers and type names shared with
// Istio's workload API (DESIGN §2): changing one breaks compatibility.
func TestWireNumbers(t *testing.T) {
	tests := []struct {
		msg    protoreflect.MessageDescriptor
		fields map[string]protoreflect.FieldNumber
	}{
		{(&workloadpb.Address{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"workload": 1, "service": 2}},
		{(&workloadpb.Workload{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{
			"uid": 20, "name": 1, "namespace": 2, "addresses": 3, "hostname": 21, "network": 4, "tunnel_protocol": 5,
			"trust_domain": 6, "service_account": 7, "waypoint": 8, "network_gateway": 19, "node": 9,
			"canonical_name": 10, "canonical_revision": 11, "workload_type": 12, "workload_name": 13,
			"native_tunnel": 14, "application_tunnel": 23, "services": 22, "authorization_policies": 16,
			"status": 17, "cluster_id": 18, "locality": 24, "network_mode": 25, "extensions": 26, "capacity": 27,
		}},
		{(&workloadpb.Service{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{
			"name": 1, "namespace": 2, "hostname": 3, "addresses": 4, "ports": 5, "subject_alt_names": 6,
			"waypoint": 7, "load_balancing": 8, "ip_families": 9, "extensions": 10,
		}},
		{(&workloadpb.GatewayAddress{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"hostname": 1, "address": 2, "hbone_mtls_port": 3}},
		{(&workloadpb.NetworkAddress{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"network": 1, "address": 2}},
		{(&workloadpb.LoadBalancing{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{
			"routing_preference": 1, "mode": 2, "health_policy": 3, "dns_connect_strategy": 4,
		}},
		{(&security.Authorization{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{
			"name": 1, "namespace": 2, "scope": 3, "action": 4, "groups": 5, "dry_run": 6,
		}},
		{(&security.Group{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"rules": 1}},
		{(&security.Rules{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"matches": 2}},
		{(&security.Match{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{
			"namespaces": 1, "not_namespaces": 2, "principals": 3, "not_principals": 4, "source_ips": 5,
			"not_source_ips": 6, "destination_ips": 7, "not_destination_ips": 8, "destination_ports": 9,
			"not_destination_ports": 10, "service_accounts": 11, "not_service_accounts": 12,
		}},
		{(&security.ServiceAccountMatch{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"namespace": 1, "service_account": 2}},
		{(&security.StringMatch{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"exact": 1, "prefix": 2, "suffix": 3, "presence": 4}},
		{(&zds.WorkloadRequest{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"add": 1, "del": 2, "snapshot_sent": 3, "keep": 5}},
		{(&zds.DelWorkload{}).ProtoReflect().Descriptor(), map[string]protoreflect.FieldNumber{"uid": 2}},
	}
	for _, tc := range tests {
		if tc.msg.Fields().Len() != len(tc.fields) {
			t.Errorf("%s has %d fields, want %d", tc.msg.FullName(), tc.msg.Fields().Len(), len(tc.fields))
		}
		for name, num := range tc.fields {
			f := tc.msg.Fields().ByName(protoreflect.Name(name))
			if f == nil || f.Number() != num {
				t.Errorf("%s.%s: want field number %d", tc.msg.FullName(), name, num)
			}
		}
	}
	if got := (&security.ServiceAccountMatch{}).ProtoReflect().Descriptor().Fields().ByName("service_account").JSONName(); got != "serviceAccount" {
		t.Errorf("ServiceAccountMatch JSON name %q", got)
	}
	for _, u := range []string{AddressTypeURL, AuthorizationTypeURL} {
		want := map[string]protoreflect.FullName{AddressTypeURL: "istio.workload.Address", AuthorizationTypeURL: "istio.security.Authorization"}[u]
		if "type.googleapis.com/"+string(want) != u {
			t.Errorf("type URL %s", u)
		}
	}
	if (&workloadpb.Address{}).ProtoReflect().Descriptor().FullName() != "istio.workload.Address" ||
		(&security.Authorization{}).ProtoReflect().Descriptor().FullName() != "istio.security.Authorization" {
		t.Error("message full names differ from Istio's")
	}
}
