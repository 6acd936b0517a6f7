package spiffe_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	clusterLocal = spiffe.DefaultTrustDomain()
	exampleOrg   = spiffeid.RequireTrustDomainFromString("example.org")
)

// parts is what an Identity's accessors return, for table comparisons.
type parts struct {
	kind           spiffe.Kind
	td             string
	namespace      string
	serviceAccount string
	node           string
	component      spiffe.Component
	adminName      string
}

func partsOf(id spiffe.Identity) parts {
	return parts{
		kind:           id.Kind(),
		td:             id.TrustDomain().Name(),
		namespace:      id.Namespace(),
		serviceAccount: id.ServiceAccount(),
		node:           id.Node(),
		component:      id.Component(),
		adminName:      id.AdminName(),
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		in   string
		want parts
	}{
		{"spiffe://cluster.local/ns/default/sa/default", parts{kind: spiffe.KindWorkload, td: "cluster.local", namespace: "default", serviceAccount: "default"}},
		{"spiffe://example.org/ns/a/sa/b", parts{kind: spiffe.KindWorkload, td: "example.org", namespace: "a", serviceAccount: "b"}},
		{"spiffe://cluster.local/ns/kube-system/sa/coredns.v1-2", parts{kind: spiffe.KindWorkload, td: "cluster.local", namespace: "kube-system", serviceAccount: "coredns.v1-2"}},
		{"spiffe://cluster.local/ns/" + strings.Repeat("n", 63) + "/sa/" + strings.Repeat("s", 253), parts{kind: spiffe.KindWorkload, td: "cluster.local", namespace: strings.Repeat("n", 63), serviceAccount: strings.Repeat("s", 253)}},
		{"spiffe://cluster.local/ambit/node/node-1", parts{kind: spiffe.KindNode, td: "cluster.local", node: "node-1"}},
		{"spiffe://cluster.local/ambit/node/ip-10-0-0-1.ec2.internal", parts{kind: spiffe.KindNode, td: "cluster.local", node: "ip-10-0-0-1.ec2.internal"}},
		{"spiffe://cluster.local/ambit/xds", parts{kind: spiffe.KindControlPlane, td: "cluster.local", component: spiffe.ComponentXDS}},
		{"spiffe://cluster.local/ambit/ca", parts{kind: spiffe.KindControlPlane, td: "cluster.local", component: spiffe.ComponentCA}},
		{"spiffe://cluster.local/ambit/future-thing", parts{kind: spiffe.KindControlPlane, td: "cluster.local", component: "future-thing"}},
		{"spiffe://cluster.local/ambit/admin", parts{kind: spiffe.KindAdmin, td: "cluster.local"}},
		{"spiffe://cluster.local/ambit/admin/alice", parts{kind: spiffe.KindAdmin, td: "cluster.local", adminName: "alice"}},
		{"spiffe://a_b-c.d/ns/x/sa/y", parts{kind: spiffe.KindWorkload, td: "a_b-c.d", namespace: "x", serviceAccount: "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id, err := spiffe.Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := partsOf(id); got != tt.want {
				t.Errorf("parts = %+v, want %+v", got, tt.want)
			}
			if id.String() != tt.in {
				t.Errorf("String() = %q, want %q", id.String(), tt.in)
			}
			if id.ID().String() != tt.in {
				t.Errorf("ID() = %q, want %q", id.ID(), tt.in)
			}
			if id.IsZero() {
				t.Error("IsZero() = true")
			}
			fromID, err := spiffe.FromID(spiffeid.RequireFromString(tt.in))
			if err != nil || fromID != id {
				t.Errorf("FromID = %v, %v; want %v", fromID, err, id)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name, in string
		wantErr  string // a fragment naming the bad part
	}{
		{"empty", "", "empty"},
		{"no scheme", "cluster.local/ns/a/sa/b", "scheme"},
		{"wrong scheme", "https://cluster.local/ns/a/sa/b", "scheme"},
		{"upper-case scheme", "SPIFFE://cluster.local/ns/a/sa/b", "scheme"},
		{"no trust domain", "spiffe:///ns/a/sa/b", "trust domain"},
		{"upper-case trust domain", "spiffe://Cluster.local/ns/a/sa/b", "trust domain"},
		{"port", "spiffe://cluster.local:8080/ns/a/sa/b", "trust domain"},
		{"user info", "spiffe://u@cluster.local/ns/a/sa/b", "trust domain"},
		{"trust domain only", "spiffe://cluster.local", "path is empty"},
		{"trailing slash", "spiffe://cluster.local/ns/a/sa/b/", "trailing"},
		{"empty segment", "spiffe://cluster.local/ns//sa/b", "empty"},
		{"dot segment", "spiffe://cluster.local/ns/./sa/b", "dot"},
		{"percent-encoded", "spiffe://cluster.local/ns/a%2Fb/sa/b", "path"},
		{"query", "spiffe://cluster.local/ns/a/sa/b?x=1", "path"},
		{"fragment", "spiffe://cluster.local/ns/a/sa/b#x", "path"},
		{"unknown root segment", "spiffe://cluster.local/foo/bar", `path "/foo/bar": must start with /ns/`},
		{"workload without sa", "spiffe://cluster.local/ns/a", "workload path"},
		{"workload wrong keyword", "spiffe://cluster.local/ns/a/serviceaccount/b", "workload path"},
		{"workload extra segment", "spiffe://cluster.local/ns/a/sa/b/c", "workload path"},
		{"namespace upper case", "spiffe://cluster.local/ns/Default/sa/b", `namespace "Default": invalid character 'D'`},
		{"namespace underscore", "spiffe://cluster.local/ns/a_b/sa/b", `namespace "a_b": invalid character '_'`},
		{"namespace dot", "spiffe://cluster.local/ns/a.b/sa/b", `namespace "a.b": invalid character '.'`},
		{"namespace leading dash", "spiffe://cluster.local/ns/-a/sa/b", `namespace "-a": must start and end`},
		{"namespace trailing dash", "spiffe://cluster.local/ns/a-/sa/b", `namespace "a-": must start and end`},
		{"namespace too long", "spiffe://cluster.local/ns/" + strings.Repeat("n", 64) + "/sa/b", "namespace " + `"` + strings.Repeat("n", 64) + `": must be at most 63 characters`},
		{"service account upper case", "spiffe://cluster.local/ns/a/sa/Web", `service account "Web"`},
		{"service account double dot", "spiffe://cluster.local/ns/a/sa/a..b", `service account "a..b": must not contain an empty label`},
		{"service account leading dot", "spiffe://cluster.local/ns/a/sa/.a", `service account ".a"`},
		{"service account label ends with dash", "spiffe://cluster.local/ns/a/sa/a-.b", `service account "a-.b": must start and end`},
		{"service account too long", "spiffe://cluster.local/ns/a/sa/" + strings.Repeat("s", 254), "must be at most 253 characters"},
		{"ambit alone", "spiffe://cluster.local/ambit", "/ambit must be followed"},
		{"node without name", "spiffe://cluster.local/ambit/node", "node path"},
		{"node extra segment", "spiffe://cluster.local/ambit/node/a/b", "node path"},
		{"node upper case", "spiffe://cluster.local/ambit/node/Node1", `node "Node1"`},
		{"admin extra segment", "spiffe://cluster.local/ambit/admin/a/b", "admin path"},
		{"admin name with dot", "spiffe://cluster.local/ambit/admin/a.b", `admin name "a.b"`},
		{"component nested", "spiffe://cluster.local/ambit/xds/extra", "control-plane path"},
		{"component upper case", "spiffe://cluster.local/ambit/XDS", `component "XDS"`},
		{"component underscore", "spiffe://cluster.local/ambit/x_ds", `component "x_ds"`},
		{"long input is truncated", "spiffe://cluster.local/" + long, "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := spiffe.Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, id)
			}
			if !errors.Is(err, spiffe.ErrInvalidIdentity) {
				t.Errorf("error %v does not wrap ErrInvalidIdentity", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("error is %d bytes long; untrusted input must be truncated", len(err.Error()))
			}
			if !id.IsZero() {
				t.Errorf("Parse returned non-zero %v with error", id)
			}
		})
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		name    string
		make    func() (spiffe.Identity, error)
		want    string
		wantErr string
	}{
		{"workload", func() (spiffe.Identity, error) { return spiffe.NewWorkload(clusterLocal, "ns1", "sa1") }, "spiffe://cluster.local/ns/ns1/sa/sa1", ""},
		{"node", func() (spiffe.Identity, error) { return spiffe.NewNode(exampleOrg, "n1") }, "spiffe://example.org/ambit/node/n1", ""},
		{"control plane", func() (spiffe.Identity, error) { return spiffe.NewControlPlane(clusterLocal, spiffe.ComponentConfig) }, "spiffe://cluster.local/ambit/config", ""},
		{"admin", func() (spiffe.Identity, error) { return spiffe.NewAdmin(clusterLocal, "") }, "spiffe://cluster.local/ambit/admin", ""},
		{"named admin", func() (spiffe.Identity, error) { return spiffe.NewAdmin(clusterLocal, "ambitctl-up") }, "spiffe://cluster.local/ambit/admin/ambitctl-up", ""},
		{"zero trust domain", func() (spiffe.Identity, error) { return spiffe.NewWorkload(spiffeid.TrustDomain{}, "a", "b") }, "", "trust domain: must not be empty"},
		{"empty namespace", func() (spiffe.Identity, error) { return spiffe.NewWorkload(clusterLocal, "", "b") }, "", "namespace: must not be empty"},
		{"empty service account", func() (spiffe.Identity, error) { return spiffe.NewWorkload(clusterLocal, "a", "") }, "", "service account: must not be empty"},
		{"namespace with slash", func() (spiffe.Identity, error) { return spiffe.NewWorkload(clusterLocal, "a/sa/b", "c") }, "", `namespace "a/sa/b": invalid character '/'`},
		{"empty node", func() (spiffe.Identity, error) { return spiffe.NewNode(clusterLocal, "") }, "", "node: must not be empty"},
		{"component node is reserved", func() (spiffe.Identity, error) { return spiffe.NewControlPlane(clusterLocal, "node") }, "", `component "node": reserved`},
		{"component admin is reserved", func() (spiffe.Identity, error) { return spiffe.NewControlPlane(clusterLocal, "admin") }, "", `component "admin": reserved`},
		{"empty component", func() (spiffe.Identity, error) { return spiffe.NewControlPlane(clusterLocal, "") }, "", "component: must not be empty"},
		{"admin name upper case", func() (spiffe.Identity, error) { return spiffe.NewAdmin(clusterLocal, "Alice") }, "", `admin name "Alice"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.make()
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, spiffe.ErrInvalidIdentity) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want error wrapping ErrInvalidIdentity containing %q", id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tt.want {
				t.Errorf("String() = %q, want %q", id, tt.want)
			}
			if parsed := spiffe.MustParse(tt.want); parsed != id {
				t.Errorf("MustParse(%q) = %#v, want %#v", tt.want, parsed, id)
			}
		})
	}
}

func TestKnownComponents(t *testing.T) {
	for _, c := range spiffe.KnownComponents() {
		if !c.Known() {
			t.Errorf("%q.Known() = false", c)
		}
		if _, err := spiffe.NewControlPlane(clusterLocal, c); err != nil {
			t.Errorf("NewControlPlane(%q): %v", c, err)
		}
	}
	if spiffe.Component("future-thing").Known() {
		t.Error(`"future-thing".Known() = true`)
	}
}

func TestZeroIdentity(t *testing.T) {
	var id spiffe.Identity
	if !id.IsZero() || id.Kind() != spiffe.KindUnknown || id.String() != "" || !id.ID().IsZero() {
		t.Errorf("zero Identity: IsZero=%v Kind=%v String=%q", id.IsZero(), id.Kind(), id)
	}
	if _, err := spiffe.FromID(spiffeid.ID{}); !errors.Is(err, spiffe.ErrInvalidIdentity) {
		t.Errorf("FromID(zero) error = %v, want ErrInvalidIdentity", err)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse did not panic on an invalid identity")
		}
	}()
	spiffe.MustParse("spiffe://cluster.local/nope")
}

func TestIdentityJSON(t *testing.T) {
	type config struct {
		Peer  spiffe.Identity `json:"peer"`
		Empty spiffe.Identity `json:"empty"`
	}
	in := config{Peer: spiffe.MustParse("spiffe://cluster.local/ambit/node/n1")}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"peer":"spiffe://cluster.local/ambit/node/n1","empty":""}`; string(data) != want {
		t.Errorf("json = %s, want %s", data, want)
	}
	var out config
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	err = json.Unmarshal([]byte(`{"peer":"spiffe://cluster.local/ns/UPPER/sa/x"}`), &out)
	if !errors.Is(err, spiffe.ErrInvalidIdentity) {
		t.Errorf("unmarshal of a bad identity: error = %v, want ErrInvalidIdentity", err)
	}
}

func TestIdentityIsComparable(t *testing.T) {
	a := spiffe.MustParse("spiffe://cluster.local/ns/a/sa/b")
	b, err := spiffe.NewWorkload(clusterLocal, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[spiffe.Identity]int{a: 1}
	if seen[b] != 1 {
		t.Error("equal identities are different map keys")
	}
	if a == spiffe.MustParse("spiffe://example.org/ns/a/sa/b") {
		t.Error("identities of different trust domains compare equal")
	}
}

func TestKindString(t *testing.T) {
	for kind, want := range map[spiffe.Kind]string{
		spiffe.KindUnknown:      "unknown",
		spiffe.KindWorkload:     "workload",
		spiffe.KindNode:         "node",
		spiffe.KindControlPlane: "control-plane",
		spiffe.KindAdmin:        "admin",
	} {
		if got := kind.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", kind, got, want)
		}
	}
}
