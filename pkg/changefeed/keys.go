package changefeed

import (
	"errors"
	"fmt"
	"strings"
)

// Key and subject layout (DESIGN §3).
const (
	// ResourcePrefix is the etcd prefix of every resource; the publisher
	// watches it and consumers list it.
	ResourcePrefix = "/ambit/v1/res/"
	// TraceKey is the etcd key a writer puts in the same transaction as its
	// resource changes to carry the trace context of the write (see
	// TraceOp). It sorts just before ResourcePrefix ('.' < '/'), so one
	// watch of [TraceKey, end of ResourcePrefix) sees it together with the
	// resource events of the same revision, and listings of ResourcePrefix
	// never include it. Nothing else may live in that range.
	TraceKey = "/ambit/v1/res.trace"
	// ElectionPrefix holds the publisher election; it is outside
	// ResourcePrefix, so elections never reach the feed.
	ElectionPrefix = "/ambit/election/changefeed"

	// CoreGroup is the group segment of core kinds (Namespace, Service, Pod).
	CoreGroup = "core"
	// ClusterScoped is the namespace segment of cluster-scoped kinds.
	ClusterScoped = "_"

	// StreamName is the JetStream stream of the feed.
	StreamName = "AMBIT_CHANGES"
	// SubjectPrefix starts every subject of the feed.
	SubjectPrefix = "ambit.changes."
	// StreamSubjects is the stream's subject filter.
	StreamSubjects = SubjectPrefix + ">"
	// ResyncSubject carries resync markers. It has fewer tokens than the
	// per-kind subjects, so no kind filter can overlap it.
	ResyncSubject = SubjectPrefix + "resync"
)

// GroupKind names a kind of resource, e.g. {networking.istio.io,
// ServiceEntry} or {core, Service}.
type GroupKind struct {
	Group string
	Kind  string
}

// String is "<group>/<kind>".
func (gk GroupKind) String() string { return gk.Group + "/" + gk.Kind }

// Validate checks that both parts are usable as key segments.
func (gk GroupKind) Validate() error {
	if err := checkSegment("group", gk.Group); err != nil {
		return err
	}
	return checkSegment("kind", gk.Kind)
}

// KeyPrefix is the etcd prefix holding every object of the kind:
// /ambit/v1/res/<group>/<kind>/.
func (gk GroupKind) KeyPrefix() string {
	return ResourcePrefix + gk.Group + "/" + gk.Kind + "/"
}

// SubjectFilter matches the feed subjects of the kind in every namespace:
// ambit.changes.<group>.<kind>.* with escaped tokens.
func (gk GroupKind) SubjectFilter() string {
	return SubjectPrefix + EscapeToken(gk.Group) + "." + EscapeToken(gk.Kind) + ".*"
}

// ResourceRef names one resource: the four segments of its etcd key
// /ambit/v1/res/<group>/<kind>/<namespace>/<name>.
type ResourceRef struct {
	Group     string
	Kind      string
	Namespace string // ClusterScoped ("_") for cluster-scoped kinds
	Name      string
}

// GroupKind is the ref's kind.
func (r ResourceRef) GroupKind() GroupKind { return GroupKind{Group: r.Group, Kind: r.Kind} }

// Validate checks every segment: non-empty, no '/'.
func (r ResourceRef) Validate() error {
	if err := r.GroupKind().Validate(); err != nil {
		return err
	}
	if err := checkSegment("namespace", r.Namespace); err != nil {
		return err
	}
	return checkSegment("name", r.Name)
}

// Key is the etcd key of the resource. It does not validate; call Validate
// for input from outside.
func (r ResourceRef) Key() string {
	return ResourcePrefix + r.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Subject is the feed subject of the resource's changes.
func (r ResourceRef) Subject() string { return Subject(r.Group, r.Kind, r.Namespace) }

// String is the etcd key.
func (r ResourceRef) String() string { return r.Key() }

// ErrBadKey reports an etcd key or a subject outside the feed's layout.
var ErrBadKey = errors.New("changefeed: malformed key")

// ParseKey splits /ambit/v1/res/<group>/<kind>/<namespace>/<name>.
func ParseKey(key string) (ResourceRef, error) {
	rest, ok := strings.CutPrefix(key, ResourcePrefix)
	if !ok {
		return ResourceRef{}, fmt.Errorf("%w: %q is not under %s", ErrBadKey, key, ResourcePrefix)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return ResourceRef{}, fmt.Errorf("%w: %q: want %s<group>/<kind>/<namespace>/<name>", ErrBadKey, key, ResourcePrefix)
	}
	r := ResourceRef{Group: parts[0], Kind: parts[1], Namespace: parts[2], Name: parts[3]}
	if err := r.Validate(); err != nil {
		return ResourceRef{}, fmt.Errorf("%w: %q: %w", ErrBadKey, key, err)
	}
	return r, nil
}

func checkSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.ContainsRune(s, '/') {
		return fmt.Errorf("%s %q contains '/'", what, s)
	}
	return nil
}

// Subject is ambit.changes.<group>.<kind>.<namespace>, each token escaped
// with EscapeToken.
func Subject(group, kind, namespace string) string {
	return SubjectPrefix + EscapeToken(group) + "." + EscapeToken(kind) + "." + EscapeToken(namespace)
}

// ParseSubject reverses Subject.
func ParseSubject(subject string) (group, kind, namespace string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", "", "", fmt.Errorf("%w: subject %q is not under %s", ErrBadKey, subject, SubjectPrefix)
	}
	toks := strings.Split(rest, ".")
	if len(toks) != 3 {
		return "", "", "", fmt.Errorf("%w: subject %q: want %s<group>.<kind>.<namespace>", ErrBadKey, subject, SubjectPrefix)
	}
	out := make([]string, 3)
	for i, t := range toks {
		if out[i], err = UnescapeToken(t); err != nil {
			return "", "", "", fmt.Errorf("%w: subject %q: %w", ErrBadKey, subject, err)
		}
	}
	return out[0], out[1], out[2], nil
}

// EscapeToken makes s a single NATS subject token. NATS tokens cannot hold
// '.', '*', '>' or white space, and groups such as networking.istio.io hold
// dots, so every byte outside [A-Za-z0-9_-] is written as '%' and two
// upper-case hex digits (URL percent-encoding with a smaller safe set):
// networking.istio.io becomes networking%2Eistio%2Eio. '%' itself is
// escaped, so the mapping is one-to-one and UnescapeToken reverses it;
// escaped tokens never contain '.', '*' or '>', so the wildcards of kind
// filters keep working. The empty string has no token form and is returned
// as is (keys never have empty segments).
func EscapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

// UnescapeToken reverses EscapeToken. It accepts only the canonical form
// EscapeToken produces (safe bytes literal, upper-case hex), so every
// string has exactly one token.
func UnescapeToken(tok string) (string, error) {
	if !strings.ContainsRune(tok, '%') {
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) {
				return "", fmt.Errorf("token %q: byte %q must be escaped", tok, tok[i])
			}
		}
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenSafe(c):
			b = append(b, c)
		case c == '%':
			if i+2 >= len(tok) {
				return "", fmt.Errorf("token %q: truncated escape", tok)
			}
			hi, ok1 := unhex(tok[i+1])
			lo, ok2 := unhex(tok[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("token %q: bad escape %q", tok, tok[i:i+3])
			}
			v := hi<<4 | lo
			if tokenSafe(v) {
				return "", fmt.Errorf("token %q: %q need not be escaped", tok, tok[i:i+3])
			}
			b = append(b, v)
			i += 2
		default:
			return "", fmt.Errorf("token %q: byte %q must be escaped", tok, c)
		}
	}
	return string(b), nil
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
