package translate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/authz"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/index"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/workload"
)

// Type URLs of the resources the translator produces.
const (
	AddressTypeURL       = "type.googleapis.com/istio.workload.Address"
	AuthorizationTypeURL = "type.googleapis.com/istio.security.Authorization"
)

// Options configures a Translator. Zero fields take Istio's defaults.
type Options struct {
	// ClusterID starts workload uids and fills cluster_id (default
	// "Kubernetes").
	ClusterID string
	// DomainSuffix completes Service host names (default "cluster.local").
	DomainSuffix string
	// TrustDomain of workload identities (default "cluster.local").
	TrustDomain string
	// Network is the default network of workloads and VIPs (default "").
	Network string
	// RootNamespace holds mesh-wide policies (default "istio-system").
	RootNamespace string
	// Logger receives decode problems (default: discarded).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.ClusterID == "" {
		o.ClusterID = "Kubernetes"
	}
	if o.DomainSuffix == "" {
		o.DomainSuffix = "cluster.local"
	}
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.RootNamespace == "" {
		o.RootNamespace = "istio-system"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Translator is the pipeline's state: the index and the version of every
// resource it has emitted.
type Translator struct {
	opts    Options
	dec     model.Decoder
	ix      *index.Index
	wb      *workload.Builder
	rev     int64
	invalid int
	changes *index.Changes
	// sent holds the version of every emitted resource, per type.
	sent map[string]map[string]uint64
}

// New returns a Translator with an empty state (call Reset first).
func New(opts Options) *Translator {
	opts.setDefaults()
	t := &Translator{
		opts:    opts,
		dec:     model.Decoder{DomainSuffix: opts.DomainSuffix},
		changes: index.NewChanges(),
		sent:    map[string]map[string]uint64{AddressTypeURL: {}, AuthorizationTypeURL: {}},
	}
	t.ix = t.newIndex()
	t.wb = t.newBuilder(t.ix)
	return t
}

func (t *Translator) newIndex() *index.Index {
	return index.New(index.Options{ClusterID: t.opts.ClusterID, RootNamespace: t.opts.RootNamespace})
}

func (t *Translator) newBuilder(ix *index.Index) *workload.Builder {
	return workload.New(ix, workload.Options{
		ClusterID: t.opts.ClusterID, TrustDomain: t.opts.TrustDomain,
		Network: t.opts.Network, RootNamespace: t.opts.RootNamespace,
	})
}

// Kinds lists the kinds a change-feed consumer must deliver.
func Kinds() []changefeed.GroupKind {
	var out []changefeed.GroupKind
	for _, k := range model.Kinds() {
		out = append(out, changefeed.GroupKind{Group: k.Group(), Kind: k.Name()})
	}
	return out
}

// Revision is the feed revision the output reflects.
func (t *Translator) Revision() int64 { return t.rev }

// Invalid counts objects skipped because they could not be decoded.
func (t *Translator) Invalid() int { return t.invalid }

// Index exposes the current index (read-only; for debugging and dumps).
func (t *Translator) Index() *index.Index { return t.ix }

// Reset replaces the whole state with the snapshot's and returns the full
// resulting state (see the package documentation).
func (t *Translator) Reset(snap changefeed.Snapshot) []snapshot.Delta {
	ix := t.newIndex()
	t.invalid = 0
	for _, o := range snap.Objects {
		ref, ok := modelRef(o.Ref)
		if !ok {
			continue
		}
		if obj := t.decode(ref, o.Value); obj != nil {
			ix.Upsert(obj, nil)
		}
	}
	t.ix, t.wb, t.rev = ix, t.newBuilder(ix), snap.Revision
	return []snapshot.Delta{
		t.rebuildAll(AddressTypeURL, slices.Collect(ix.AddressNames()), t.buildAddress),
		t.rebuildAll(AuthorizationTypeURL, slices.Collect(ix.AuthorizationNames()), t.buildAuthorization),
	}
}

// Apply applies one change and returns the resources it changed.
func (t *Translator) Apply(ev changefeed.Event) []snapshot.Delta {
	if ev.Position.Revision > 0 {
		t.rev = ev.Position.Revision
	}
	ref, ok := modelRef(ev.Object.Ref)
	if !ok {
		return nil
	}
	ch := t.changes
	ch.Reset()
	var obj model.Object
	if ev.Type == changefeed.EventPut {
		obj = t.decode(ref, ev.Object.Value)
	}
	if obj != nil {
		t.ix.Upsert(obj, ch)
	} else {
		t.ix.Delete(ref, ch)
	}
	var out []snapshot.Delta
	if d := t.rebuild(AddressTypeURL, ch.Addresses, t.buildAddress); len(d.Upserts)+len(d.Removals) > 0 {
		out = append(out, d)
	}
	if d := t.rebuild(AuthorizationTypeURL, ch.Authorizations, t.buildAuthorization); len(d.Upserts)+len(d.Removals) > 0 {
		out = append(out, d)
	}
	return out
}

func (t *Translator) decode(ref model.Ref, data []byte) model.Object {
	obj, err := t.dec.Decode(ref, data)
	if err != nil {
		t.invalid++
		t.opts.Logger.Warn("translate: object skipped", "object", ref.String(), "error", err)
		return nil
	}
	return obj
}

// modelRef maps a feed key; ok is false for kinds the translator ignores.
func modelRef(r changefeed.ResourceRef) (model.Ref, bool) {
	k := model.KindOf(r.Group, r.Kind)
	if k == model.KindUnknown {
		return model.Ref{}, false
	}
	ns := r.Namespace
	if ns == changefeed.ClusterScoped {
		ns = ""
	}
	return model.Ref{Kind: k, Namespace: ns, Name: r.Name}, true
}

type builder func(name string) (*snapshot.Resource, uint64)

// rebuild rebuilds the named resources and diffs them against what was
// sent.
func (t *Translator) rebuild(typeURL string, names map[string]struct{}, build builder) snapshot.Delta {
	d := snapshot.Delta{TypeURL: typeURL}
	if len(names) == 0 {
		return d
	}
	sent := t.sent[typeURL]
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, name := range sorted {
		res, h := build(name)
		prev, had := sent[name]
		switch {
		case res == nil && had:
			delete(sent, name)
			d.Removals = append(d.Removals, name)
		case res != nil && (!had || prev != h):
			sent[name] = h
			d.Upserts = append(d.Upserts, res)
		}
	}
	return d
}

// rebuildAll builds every resource of a type and removes what was sent
// before and is gone.
func (t *Translator) rebuildAll(typeURL string, names []string, build builder) snapshot.Delta {
	slices.Sort(names)
	d := snapshot.Delta{TypeURL: typeURL, Upserts: make([]*snapshot.Resource, 0, len(names))}
	sent := make(map[string]uint64, len(names))
	for _, name := range names {
		if res, h := build(name); res != nil {
			sent[name] = h
			d.Upserts = append(d.Upserts, res)
		}
	}
	for name := range t.sent[typeURL] {
		if _, ok := sent[name]; !ok {
			d.Removals = append(d.Removals, name)
		}
	}
	slices.Sort(d.Removals)
	t.sent[typeURL] = sent
	return d
}

func (t *Translator) buildAddress(name string) (*snapshot.Resource, uint64) {
	addr, aliases := t.wb.Address(name)
	if addr == nil {
		return nil, 0
	}
	return t.resource(AddressTypeURL, name, addr, aliases)
}

func (t *Translator) buildAuthorization(name string) (*snapshot.Resource, uint64) {
	pol := authz.Build(t.ix, t.opts.RootNamespace, name)
	if pol == nil {
		return nil, 0
	}
	return t.resource(AuthorizationTypeURL, name, pol, nil)
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// resource marshals m and versions it by its bytes.
func (t *Translator) resource(typeURL, name string, m proto.Message, aliases []string) (*snapshot.Resource, uint64) {
	b, err := deterministic.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string can get here; config validates
		// names and labels, so treat it like an undecodable object.
		t.opts.Logger.Warn("translate: resource not marshalled", "name", name, "error", err)
		return nil, 0
	}
	sum := sha256.Sum256(b)
	return &snapshot.Resource{
		Name:    name,
		Version: hex.EncodeToString(sum[:8]),
		Body:    &anypb.Any{TypeUrl: typeURL, Value: b},
		Aliases: aliases,
	}, binary.BigEndian.Uint64(sum[:8])
}
