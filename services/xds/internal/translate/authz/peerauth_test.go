package authz

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	security "github.com/ambitmesh/ambit/proto/istio/security"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

func pa(ns, name string, mode model.MTLSMode, selector bool, ports ...model.PortMTLS) *model.PeerAuthentication {
	p := &model.PeerAuthentication{Namespace: model.A(ns), Name: name, Mode: mode, Ports: ports}
	if selector {
		p.Selector = model.LabelsFrom(map[string]string{"app": "x"})
	}
	return p
}

func port(p uint32, m model.MTLSMode) model.PortMTLS { return model.PortMTLS{Port: p, Mode: m} }

const (
	unset      = model.MTLSUnset
	disable    = model.MTLSDisable
	permissive = model.MTLSPermissive
	strict     = model.MTLSStrict
)

// TestKeys covers every mode at every level.
func TestKeys(t *testing.T) {
	static := "root/" + StaticStrictName
	conv := "ns/" + ConvertedName("wl")
	tests := []struct {
		name           string
		mesh, ns, wl   *model.PeerAuthentication
		want           []string
		wantConversion bool
	}{
		{name: "nothing: permissive", want: nil},
		{name: "mesh strict", mesh: pa("root", "m", strict, false), want: []string{static}},
		{name: "mesh permissive", mesh: pa("root", "m", permissive, false)},
		{name: "mesh disable", mesh: pa("root", "m", disable, false)},
		{name: "mesh strict, ns unset inherits", mesh: pa("root", "m", strict, false), ns: pa("ns", "n", unset, false), want: []string{static}},
		{name: "mesh strict, ns permissive", mesh: pa("root", "m", strict, false), ns: pa("ns", "n", permissive, false)},
		{name: "mesh strict, ns disable", mesh: pa("root", "m", strict, false), ns: pa("ns", "n", disable, false)},
		{name: "mesh permissive, ns strict", mesh: pa("root", "m", permissive, false), ns: pa("ns", "n", strict, false), want: []string{static}},
		{name: "ns strict, wl permissive", ns: pa("ns", "n", strict, false), wl: pa("ns", "wl", permissive, true)},
		{name: "ns strict, wl disable", ns: pa("ns", "n", strict, false), wl: pa("ns", "wl", disable, true)},
		{name: "wl strict", wl: pa("ns", "wl", strict, true), want: []string{static}},
		{name: "wl unset inherits strict", mesh: pa("root", "m", strict, false), wl: pa("ns", "wl", unset, true), want: []string{static}},
		{name: "wl strict, all ports strict", wl: pa("ns", "wl", strict, true, port(80, strict)), want: []string{static}},
		{name: "wl strict, port permissive", wl: pa("ns", "wl", strict, true, port(80, permissive)), want: []string{conv}, wantConversion: true},
		{name: "wl strict, port disable", wl: pa("ns", "wl", strict, true, port(80, disable)), want: []string{conv}, wantConversion: true},
		{name: "wl permissive, port strict", wl: pa("ns", "wl", permissive, true, port(80, strict)), want: []string{conv}, wantConversion: true},
		{name: "wl disable, port strict", wl: pa("ns", "wl", disable, true, port(80, strict)), want: []string{conv}, wantConversion: true},
		{name: "wl permissive, port disable", wl: pa("ns", "wl", permissive, true, port(80, disable))},
		{name: "wl unset under strict, port permissive", ns: pa("ns", "n", strict, false), wl: pa("ns", "wl", unset, true, port(80, permissive)), want: []string{conv}, wantConversion: true},
		{name: "wl unset under strict, port disable", ns: pa("ns", "n", strict, false), wl: pa("ns", "wl", unset, true, port(80, disable)), want: []string{conv}, wantConversion: true},
		{name: "wl unset under permissive, port strict", mesh: pa("root", "m", permissive, false), wl: pa("ns", "wl", unset, true, port(80, strict)), want: []string{conv}, wantConversion: true},
		{name: "wl unset under strict, port strict", mesh: pa("root", "m", strict, false), wl: pa("ns", "wl", unset, true, port(80, strict)), want: []string{static}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Effective{Mesh: tc.mesh, Namespace: tc.ns, Workload: tc.wl}.Keys("root")
			if !slices.Equal(got, tc.want) {
				t.Errorf("Keys = %v, want %v", got, tc.want)
			}
			if tc.wl != nil {
				if c := ConvertPeerAuthentication(tc.wl, tc.ns, tc.mesh); (c != nil) != tc.wantConversion {
					t.Errorf("conversion %v, want one: %t", c, tc.wantConversion)
				}
			}
		})
	}
}

func TestConvertPeerAuthentication(t *testing.T) {
	deny := func(m *security.Match) *security.Authorization {
		return &security.Authorization{
			Name: ConvertedName("wl"), Namespace: "ns", Scope: security.Scope_WORKLOAD_SELECTOR, Action: security.Action_DENY,
			Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{m}}}}},
		}
	}
	tests := []struct {
		name string
		wl   *model.PeerAuthentication
		want *security.Authorization
	}{{
		name: "strict except two ports",
		wl:   pa("ns", "wl", strict, true, port(80, permissive), port(81, disable), port(82, strict)),
		want: deny(&security.Match{NotPrincipals: []*security.StringMatch{presence()}, NotDestinationPorts: []uint32{80, 81}}),
	}, {
		name: "permissive except one port",
		wl:   pa("ns", "wl", permissive, true, port(8443, strict)),
		want: deny(&security.Match{NotPrincipals: []*security.StringMatch{presence()}, DestinationPorts: []uint32{8443}}),
	}, {
		name: "no selector: not converted",
		wl:   pa("ns", "wl", permissive, false, port(8443, strict)),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ConvertPeerAuthentication(tc.wl, nil, nil); !proto.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		in, ns, name, converted string
		ok                      bool
	}{
		{"a/b", "a", "b", "", true},
		{"a/converted_peer_authentication_x", "a", "converted_peer_authentication_x", "x", true},
		{"noslash", "", "", "", false},
	}
	for _, tc := range tests {
		ns, name, conv, ok := SplitName(tc.in)
		if ns != tc.ns || name != tc.name || conv != tc.converted || ok != tc.ok {
			t.Errorf("SplitName(%q) = %q %q %q %t", tc.in, ns, name, conv, ok)
		}
	}
}
