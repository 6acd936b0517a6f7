package changefeed

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		key     string
		want    ResourceRef
		wantErr bool
	}{
		{key: "/ambit/v1/res/core/Service/default/echo", want: ResourceRef{"core", "Service", "default", "echo"}},
		{key: "/ambit/v1/res/networking.istio.io/ServiceEntry/istio-system/ext.example.com",
			want: ResourceRef{"networking.istio.io", "ServiceEntry", "istio-system", "ext.example.com"}},
		{key: "/ambit/v1/res/core/Namespace/_/default", want: ResourceRef{"core", "Namespace", "_", "default"}},
		{key: "/ambit/v1/res/core/Service/default", wantErr: true},
		{key: "/ambit/v1/res/core/Service/default/a/b", wantErr: true},
		{key: "/ambit/v1/res/core//default/a", wantErr: true},
		{key: "/ambit/v1/res/core/Service/default/", wantErr: true},
		{key: "/ambit/v1/_ca/key", wantErr: true},
		{key: TraceKey, wantErr: true},
		{key: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := ParseKey(tt.key)
			if tt.wantErr {
				if !errors.Is(err, ErrBadKey) {
					t.Fatalf("ParseKey(%q) = %v, %v; want ErrBadKey", tt.key, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKey(%q) = %v, %v; want %v", tt.key, got, err, tt.want)
			}
			if got.Key() != tt.key {
				t.Errorf("Key() = %q, want %q", got.Key(), tt.key)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct {
		ref     ResourceRef
		subject string
		filter  string
	}{
		{ResourceRef{"core", "Service", "default", "echo"}, "ambit.changes.core.Service.default", "ambit.changes.core.Service.*"},
		{ResourceRef{"networking.istio.io", "ServiceEntry", "istio-system", "x"},
			"ambit.changes.networking%2Eistio%2Eio.ServiceEntry.istio-system", "ambit.changes.networking%2Eistio%2Eio.ServiceEntry.*"},
		{ResourceRef{"gateway.networking.k8s.io", "HTTPRoute", "_", "x"},
			"ambit.changes.gateway%2Enetworking%2Ek8s%2Eio.HTTPRoute._", "ambit.changes.gateway%2Enetworking%2Ek8s%2Eio.HTTPRoute.*"},
		{ResourceRef{"odd group", "K*>", "n%s", "x"}, "ambit.changes.odd%20group.K%2A%3E.n%25s", "ambit.changes.odd%20group.K%2A%3E.*"},
	}
	for _, tt := range tests {
		if got := tt.ref.Subject(); got != tt.subject {
			t.Errorf("%v.Subject() = %q, want %q", tt.ref, got, tt.subject)
		}
		if got := tt.ref.GroupKind().SubjectFilter(); got != tt.filter {
			t.Errorf("%v filter = %q, want %q", tt.ref, got, tt.filter)
		}
		g, k, ns, err := ParseSubject(tt.subject)
		if err != nil || g != tt.ref.Group || k != tt.ref.Kind || ns != tt.ref.Namespace {
			t.Errorf("ParseSubject(%q) = %q %q %q %v", tt.subject, g, k, ns, err)
		}
		if !subjectMatches(tt.filter, tt.subject) {
			t.Errorf("filter %q does not match %q", tt.filter, tt.subject)
		}
	}
	for _, bad := range []string{"ambit.changes.a.b", "ambit.changes.a.b.c.d", "other.a.b.c", "ambit.changes.a%2e.b.c",
		"ambit.changes.a%2.b.c", "ambit.changes.a%41.b.c", "ambit.changes.a b.b.c", ResyncSubject} {
		if _, _, _, err := ParseSubject(bad); err == nil {
			t.Errorf("ParseSubject(%q) succeeded", bad)
		}
	}
	if subjectMatches(kindService.SubjectFilter(), ResyncSubject) {
		t.Error("a kind filter matches the resync subject")
	}
}

// subjectMatches is NATS token matching of a filter with * and >.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"core", "networking.istio.io", "a b", "%", "%2E", "*", ">", "ü", "_", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		if s != "" && strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("EscapeToken(%q) = %q holds a subject metacharacter", s, tok)
		}
		back, err := UnescapeToken(tok)
		if err != nil || back != s {
			t.Fatalf("UnescapeToken(EscapeToken(%q)) = %q, %v", s, back, err)
		}
		// Any accepted token is canonical: escaping its value gives it back.
		if v, err := UnescapeToken(s); err == nil && EscapeToken(v) != s {
			t.Fatalf("UnescapeToken accepted non-canonical %q", s)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"/ambit/v1/res/core/Service/default/echo", "/ambit/v1/res/a/b/c/d/e", "/ambit/v1/res////", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		r, err := ParseKey(key)
		if err != nil {
			return
		}
		if r.Key() != key {
			t.Fatalf("ParseKey(%q).Key() = %q", key, r.Key())
		}
		g, k, ns, err := ParseSubject(r.Subject())
		if err != nil || g != r.Group || k != r.Kind || ns != r.Namespace {
			t.Fatalf("subject of %q does not parse back: %q %q %q %v", key, g, k, ns, err)
		}
	})
}

func TestPositionCompare(t *testing.T) {
	ps := []Position{{1, 0}, {1, 1}, {2, 0}, {2, 5}, {10, 0}}
	for i := range ps {
		for j := range ps {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := ps[i].Compare(ps[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", ps[i], ps[j], got, want)
			}
		}
	}
}

func TestDecodeEnvelopeKeepsUnknownFields(t *testing.T) {
	env := &changefeedv1.Envelope{Position: &changefeedv1.Position{Revision: 7, Index: 1}, Key: "/k", Type: changefeedv1.EventType_EVENT_TYPE_PUT}
	b, err := proto.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	// Field 99 (a newer publisher's), and an unknown enum value elsewhere.
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendString(b, "future")
	got, err := decodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetPosition().GetRevision() != 7 || got.GetKey() != "/k" {
		t.Errorf("decoded %v", got)
	}
	if len(got.ProtoReflect().GetUnknown()) == 0 {
		t.Error("unknown field dropped")
	}
	if _, err := decodeEnvelope([]byte{0xff, 0xff}); err == nil {
		t.Error("garbage decoded")
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	b, _ := proto.Marshal(&changefeedv1.Envelope{Position: &changefeedv1.Position{Revision: 1}, Key: ResourcePrefix + "core/Pod/a/b"})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		_ = positionFromProto(env.GetPosition())
		_, _ = ParseKey(env.GetKey())
	})
}
