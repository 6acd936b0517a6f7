package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// Result says what Apply did.
type Result int

const (
	Created Result = iota + 1
	Configured
	Unchanged
)

func (r Result) String() string {
	switch r {
	case Created:
		return "created"
	case Configured:
		return "configured"
	case Unchanged:
		return "unchanged"
	}
	return "unknown"
}

// Apply creates or updates obj, which must already be decoded and validated.
// A resourceVersion in obj's metadata is a precondition: the write happens
// only if the stored object still has that version (ErrConflict otherwise).
// Without one, Apply retries lost races on fresh state, as `kubectl apply`
// does. Spec, labels and annotations come from obj; uid, creation time and
// status are kept from the stored object; generation bumps on spec changes.
// A dry run computes the same result and stores nothing.
func (s *Store) Apply(ctx context.Context, obj *resource.Object, dryRun bool) (Stored, Result, error) {
	key := objectKey(obj.Key())
	ctx, span := s.tracer.Start(ctx, "store.Apply")
	span.SetAttributes(attribute.String("ambit.key", key), attribute.Bool("ambit.dry_run", dryRun))
	defer span.End()

	st, res, err := s.apply(ctx, key, obj, dryRun)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return Stored{}, 0, err
	}
	span.SetAttributes(attribute.String("ambit.result", res.String()), attribute.Int64("ambit.revision", st.Revision))
	return st, res, nil
}

// EnsureExists creates obj unless an object of its key exists already, in
// which case it returns that one, untouched (Unchanged). It is for objects
// the control plane provides by default, such as the "default" namespace,
// which users may then label as they like.
func (s *Store) EnsureExists(ctx context.Context, obj *resource.Object) (Stored, Result, error) {
	key := objectKey(obj.Key())
	return s.write(ctx, key, obj, false, true)
}

func (s *Store) apply(ctx context.Context, key string, obj *resource.Object, dryRun bool) (Stored, Result, error) {
	return s.write(ctx, key, obj, dryRun, false)
}

func (s *Store) write(ctx context.Context, key string, obj *resource.Object, dryRun, createOnly bool) (Stored, Result, error) {
	var precondition int64
	if rv := obj.Metadata.ResourceVersion; rv != "" {
		v, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || v <= 0 {
			return Stored{}, 0, invalid("metadata.resourceVersion: invalid value %q", rv)
		}
		precondition = v
	}
	nsKey := ""
	if k, ok := obj.NamespaceKey(); ok {
		nsKey = objectKey(k)
	}

	for attempt := 0; attempt < s.attempts; attempt++ {
		cur, nsExists, err := s.readForWrite(ctx, key, nsKey)
		if err != nil {
			return Stored{}, 0, err
		}
		if nsKey != "" && !nsExists {
			return Stored{}, 0, notFound("namespace %q", obj.Metadata.Namespace)
		}
		if createOnly && cur.stored != nil {
			return *cur.stored, Unchanged, nil
		}
		if precondition != 0 {
			if cur.stored == nil {
				return Stored{}, 0, notFound("%s (resourceVersion %d given)", key, precondition)
			}
			if cur.stored.Revision != precondition {
				return Stored{}, 0, conflict("%s has resourceVersion %d, not %d: read it again and retry", key, cur.stored.Revision, precondition)
			}
		}
		next, res, err := s.merge(obj, cur.stored)
		if err != nil {
			return Stored{}, 0, err
		}
		if res == Unchanged {
			return *cur.stored, Unchanged, nil
		}
		alloc, err := s.allocate(ctx, key, next, cur.stored, dryRun)
		if err != nil {
			return Stored{}, 0, err
		}
		if dryRun {
			return Stored{Object: next}, res, nil
		}
		val, err := encode(next)
		if err != nil {
			return Stored{}, 0, fmt.Errorf("encode %s: %w", key, err)
		}

		cmps := append([]clientv3.Cmp{keyUnchanged(key, cur.stored)}, alloc.cmps...)
		if nsKey != "" {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(nsKey), ">", 0))
		}
		ops := append([]clientv3.Op{clientv3.OpPut(key, string(val))}, alloc.ops...)
		tctx, cancel := s.withTimeout(ctx)
		resp, err := s.etcd.Txn(tctx).If(cmps...).Then(changefeed.WithTrace(ctx, s.prop, ops...)...).Commit()
		cancel()
		if err != nil {
			return Stored{}, 0, etcdErr("apply "+key, err)
		}
		if resp.Succeeded {
			next.Metadata.ResourceVersion = strconv.FormatInt(resp.Header.Revision, 10)
			return Stored{Object: next, Revision: resp.Header.Revision}, res, nil
		}
		// Lost a race: the object, its namespace or an address changed
		// under us. With a precondition the caller's view is stale; without
		// one, merge again onto what is there now.
		if precondition != 0 {
			return Stored{}, 0, conflict("%s changed while applying: read it again and retry", key)
		}
	}
	return Stored{}, 0, conflict("%s: gave up after %d attempts under contention", key, s.attempts)
}

// keyUnchanged compares the key with what was read: same mod revision, or
// still absent.
func keyUnchanged(key string, cur *Stored) clientv3.Cmp {
	if cur == nil {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", cur.Revision)
}

// readForWrite reads the key and whether its namespace exists, at one
// revision.
func (s *Store) readForWrite(ctx context.Context, key, nsKey string) (current, bool, error) {
	ops := []clientv3.Op{clientv3.OpGet(key)}
	if nsKey != "" {
		ops = append(ops, clientv3.OpGet(nsKey, clientv3.WithCountOnly()))
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.etcd.Txn(tctx).Then(ops...).Commit()
	if err != nil {
		return current{}, false, etcdErr("read "+key, err)
	}
	var cur current
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		st, err := s.decode(key, kvs[0].Value, kvs[0].ModRevision)
		if err != nil {
			return current{}, false, err
		}
		cur = current{stored: st, raw: kvs[0].Value}
	}
	nsExists := nsKey == "" || resp.Responses[1].GetResponseRange().Count > 0
	return cur, nsExists, nil
}

// merge builds the object to store from the applied one and what is stored.
func (s *Store) merge(in *resource.Object, old *Stored) (*resource.Object, Result, error) {
	next := in.DeepCopy()
	m := &next.Metadata
	m.ResourceVersion = ""
	m.ManagedFields = nil
	m.DeletionTimestamp = nil
	m.DeletionGracePeriodSeconds = nil
	m.Generation = 0

	if old == nil {
		m.UID = types.UID(s.newUID()) // never a client-chosen uid
		m.CreationTimestamp = metav1.NewTime(s.now().UTC().Truncate(1e9))
		m.Generation = 1
		next.Status = nil
		return next, Created, nil
	}

	prev := old.Object
	if m.UID != "" && m.UID != prev.Metadata.UID {
		return nil, 0, conflict("metadata.uid %q does not match the stored object's %q", m.UID, prev.Metadata.UID)
	}
	if err := checkImmutable(next, prev); err != nil {
		return nil, 0, err
	}
	m.UID = prev.Metadata.UID
	m.CreationTimestamp = prev.Metadata.CreationTimestamp
	m.Finalizers = orDefault(m.Finalizers, prev.Metadata.Finalizers)
	next.Status = prev.Status
	specSame := next.SpecEqual(prev)
	m.Generation = prev.Metadata.Generation
	if !specSame {
		m.Generation++
	}
	if specSame && metaSame(&next.Metadata, &prev.Metadata) {
		return nil, Unchanged, nil
	}
	return next, Configured, nil
}

func orDefault[T any](v, def []T) []T {
	if v == nil {
		return def
	}
	return v
}

// metaSame compares the metadata a user controls.
func metaSame(a, b *metav1.ObjectMeta) bool {
	return maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		slices.Equal(a.Finalizers, b.Finalizers) && reflect.DeepEqual(emptyNil(a.OwnerReferences), emptyNil(b.OwnerReferences))
}

func emptyNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// checkImmutable enforces what may not change after create. A Service's
// cluster IPs are fixed once allocated (an apply that omits them keeps
// them); a Pod's node and service account are fixed once set, because the
// CA grants certificates on the strength of them.
func checkImmutable(next, prev *resource.Object) error {
	switch spec := next.Spec.(type) {
	case *corev1.ServiceSpec:
		old := prev.Spec.(*corev1.ServiceSpec)
		if spec.ClusterIP == "" && len(spec.ClusterIPs) == 0 {
			spec.ClusterIP, spec.ClusterIPs = old.ClusterIP, slices.Clone(old.ClusterIPs)
			if len(spec.IPFamilies) == 0 {
				spec.IPFamilies = slices.Clone(old.IPFamilies)
			}
		}
		if old.ClusterIP != "" && spec.ClusterIP != old.ClusterIP {
			return invalid("spec.clusterIP: field is immutable (%q, was %q)", spec.ClusterIP, old.ClusterIP)
		}
	case *corev1.PodSpec:
		old := prev.Spec.(*corev1.PodSpec)
		if old.NodeName != "" && spec.NodeName != old.NodeName {
			return invalid("spec.nodeName: field is immutable once set (%q, was %q)", spec.NodeName, old.NodeName)
		}
		if spec.ServiceAccountName != old.ServiceAccountName {
			return invalid("spec.serviceAccountName: field is immutable (%q, was %q)", spec.ServiceAccountName, old.ServiceAccountName)
		}
	}
	return nil
}

// allocation is the part of a write that reserves or releases addresses.
type allocation struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// allocate gives next the addresses it needs and returns the compares and
// puts that reserve them, plus deletes of the addresses old held that next
// no longer does. A dry run picks nothing.
func (s *Store) allocate(ctx context.Context, key string, next *resource.Object, old *Stored, dryRun bool) (allocation, error) {
	var a allocation
	held := map[string][]netip.Addr{}
	if old != nil {
		held = objectAddresses(old.Object)
	}
	switch spec := next.Spec.(type) {
	case *corev1.ServiceSpec:
		if err := s.allocateServiceIPs(ctx, key, spec, held[poolServiceIP], dryRun, &a); err != nil {
			return a, err
		}
	case *networkingv1alpha3.ServiceEntry:
		if err := s.allocateServiceEntryVIPs(ctx, key, next, spec, dryRun, &a); err != nil {
			return a, err
		}
	}
	// Release what the old object held and the new one does not.
	now := objectAddresses(next)
	for name, addrs := range held {
		for _, ip := range addrs {
			if !slices.Contains(now[name], ip) {
				a.ops = append(a.ops, clientv3.OpDelete(allocKey(name, ip)))
			}
		}
	}
	return a, nil
}

func (s *Store) allocateServiceIPs(ctx context.Context, key string, spec *corev1.ServiceSpec, held []netip.Addr, dryRun bool, a *allocation) error {
	p := s.pools[poolServiceIP]
	if !needsClusterIP(spec) {
		return nil
	}
	// User-given addresses: they must be in the pool and free (or ours).
	given := serviceClusterIPs(spec)
	for _, ip := range given {
		if !p.contains(ip) {
			return invalid("spec.clusterIP: %q is not in the service CIDRs %v", ip, p.prefixes)
		}
		if !slices.Contains(held, ip) {
			reserve(a, p.name, ip, key)
		}
	}
	families := spec.IPFamilies
	if len(families) == 0 {
		if _, ok := p.prefixFor(false); ok {
			families = []corev1.IPFamily{corev1.IPv4Protocol}
		} else {
			families = []corev1.IPFamily{corev1.IPv6Protocol}
		}
	}
	ips := slices.Clone(given)
	for _, fam := range families {
		v6 := fam == corev1.IPv6Protocol
		if slices.ContainsFunc(ips, func(ip netip.Addr) bool { return ip.Is6() == v6 }) {
			continue
		}
		if dryRun {
			continue
		}
		ip, err := s.pick(ctx, p, v6)
		if err != nil {
			return err
		}
		reserve(a, p.name, ip, key)
		ips = append(ips, ip)
	}
	if len(ips) == 0 {
		return nil
	}
	spec.ClusterIPs = spec.ClusterIPs[:0]
	spec.IPFamilies = spec.IPFamilies[:0]
	for _, ip := range ips {
		spec.ClusterIPs = append(spec.ClusterIPs, ip.String())
		fam := corev1.IPv4Protocol
		if ip.Is6() {
			fam = corev1.IPv6Protocol
		}
		spec.IPFamilies = append(spec.IPFamilies, fam)
	}
	spec.ClusterIP = spec.ClusterIPs[0]
	return nil
}

func (s *Store) allocateServiceEntryVIPs(ctx context.Context, key string, obj *resource.Object, spec *networkingv1alpha3.ServiceEntry, dryRun bool, a *allocation) error {
	p := s.pools[poolServiceEntry]
	fields, prevAddrs, err := seStatusAddresses(obj.Status)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	hosts := seNeedsVIPs(spec)
	var addrs []seAddress
	for _, h := range hosts {
		i := slices.IndexFunc(prevAddrs, func(x seAddress) bool { return x.Host == h })
		if i >= 0 {
			addrs = append(addrs, prevAddrs[i])
			continue
		}
		if dryRun {
			continue
		}
		ip, err := s.pick(ctx, p, false)
		if err != nil {
			return err
		}
		reserve(a, p.name, ip, key)
		addrs = append(addrs, seAddress{Value: ip.String(), Host: h})
	}
	if len(addrs) == 0 {
		delete(fields, "addresses")
	} else {
		raw, err := json.Marshal(addrs)
		if err != nil {
			return err
		}
		fields["addresses"] = raw
	}
	if len(fields) == 0 {
		obj.Status = nil
		return nil
	}
	status, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	obj.Status = status
	return nil
}

// reserve adds the compare and put that take an address for key: the
// transaction fails if anyone holds the address already.
func reserve(a *allocation, pool string, ip netip.Addr, key string) {
	a.cmps = append(a.cmps, clientv3.Compare(clientv3.CreateRevision(allocKey(pool, ip)), "=", 0))
	a.ops = append(a.ops, clientv3.OpPut(allocKey(pool, ip), key))
}

// pick chooses a free address of the pool. It probes a few random
// addresses with one read (cheap however many are allocated) and falls back
// to reading every allocation only when all probes are taken, i.e. when the
// pool is nearly full. The caller's transaction compares the chosen key
// absent, so two replicas drawing the same address cannot both win.
func (s *Store) pick(ctx context.Context, p *pool, v6 bool) (netip.Addr, error) {
	pr, ok := p.prefixFor(v6)
	if !ok {
		return netip.Addr{}, invalid("no %s prefix configured for pool %s", family(v6), p.name)
	}
	const probes = 4
	var cands []netip.Addr
	var ops []clientv3.Op
	for range probes {
		ip, ok := candidate(pr, nil)
		if !ok {
			break
		}
		cands = append(cands, ip)
		ops = append(ops, clientv3.OpGet(allocKey(p.name, ip), clientv3.WithCountOnly()))
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if len(ops) > 0 {
		resp, err := s.etcd.Txn(tctx).Then(ops...).Commit()
		if err != nil {
			return netip.Addr{}, etcdErr("probe allocations", err)
		}
		for i, r := range resp.Responses {
			if r.GetResponseRange().Count == 0 {
				return cands[i], nil
			}
		}
	}
	resp, err := s.etcd.Get(tctx, allocPrefix+p.name+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return netip.Addr{}, etcdErr("read allocations", err)
	}
	taken := make(map[netip.Addr]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if ip, err := netip.ParseAddr(string(kv.Key[len(allocPrefix)+len(p.name)+1:])); err == nil {
			taken[ip] = true
		}
	}
	ip, ok := candidate(pr, taken)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: %s (%s)", ErrExhausted, p.name, pr)
	}
	return ip, nil
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
