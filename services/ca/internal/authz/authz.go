// Package authz decides which identities a caller may obtain certificates
// for (DESIGN §4):
//
//   - anyone may renew its own identity (a node, workload, control-plane
//     service or admin holding a certificate of the trust domain);
//   - a node may in addition obtain the workload identities
//     (/ns/<ns>/sa/<sa>) of pods assigned to it — never a node,
//     control-plane or admin identity, never one of another trust domain;
//   - nothing else.
//
// "Assigned to it" is answered from an in-memory pod index that a change
// feed consumer keeps (Index implements changefeed.Handler for core/Pod).
// The index may lag etcd by a moment — a pod created just now may not be
// in it — so a miss is never a denial by itself: the authorizer then reads
// the pods of the namespace from etcd (a Get, linearizable by default) and
// grants if they show the pod on the node. Only when that read confirms the
// absence is the request denied; when the read fails the answer is
// Unavailable, so the client retries instead of being refused wrongly.
//
// A pod counts from the moment its spec names the node until it is deleted
// or reaches a terminal phase (Succeeded, Failed), as in Kubernetes' node
// authorizer; its service account defaults to "default".
package authz

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
)

// PodKind is the kind the index follows.
var PodKind = changefeed.GroupKind{Group: changefeed.CoreGroup, Kind: "Pod"}

// Denial reasons.
const (
	ReasonForeignTrustDomain = "foreign_trust_domain"
	ReasonNotWorkload        = "not_workload"
	ReasonNotSelf            = "not_self"
	ReasonNoSuchPod          = "no_such_pod"
	ReasonPodNotOnNode       = "pod_not_on_node"
)

// How a grant was decided, for logs and spans.
const (
	ViaSelf  = "self"
	ViaIndex = "index"
	ViaEtcd  = "etcd"
)

// workload is a (namespace, service account) pair.
type workload struct{ ns, sa string }

type podInfo struct {
	node string
	wl   workload
}

// podJSON is the part of a stored Pod the CA reads; everything else is
// ignored, so newer fields never break decoding.
type podJSON struct {
	Spec struct {
		NodeName           string `json:"nodeName"`
		ServiceAccountName string `json:"serviceAccountName"`
		ServiceAccount     string `json:"serviceAccount"` // deprecated alias, as Kubernetes keeps it
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// decodePod returns the pod's node and workload, ok=false for pods that
// hold no identity (unscheduled, terminal, undecodable). The namespace is
// the key's, which is authoritative.
func decodePod(raw []byte, ns string) (podInfo, bool) {
	var p podJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return podInfo{}, false
	}
	if p.Spec.NodeName == "" || p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" {
		return podInfo{}, false
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = p.Spec.ServiceAccount
	}
	if sa == "" {
		sa = "default"
	}
	return podInfo{node: p.Spec.NodeName, wl: workload{ns: ns, sa: sa}}, true
}

// Index maps nodes to the workload identities of their pods.
type Index struct {
	mu     sync.RWMutex
	pods   map[string]podInfo          // by etcd key
	byNode map[string]map[workload]int // node -> identity -> pods
	synced atomic.Bool
	rev    atomic.Int64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{pods: map[string]podInfo{}, byNode: map[string]map[workload]int{}}
}

var _ changefeed.Handler = (*Index)(nil)

// Reset replaces the index with a snapshot.
func (x *Index) Reset(_ context.Context, snap changefeed.Snapshot) error {
	pods := map[string]podInfo{}
	byNode := map[string]map[workload]int{}
	for _, o := range snap.Objects {
		if o.Ref.GroupKind() != PodKind {
			continue
		}
		if p, ok := decodePod(o.Value, o.Ref.Namespace); ok {
			pods[o.Ref.Key()] = p
			addCount(byNode, p, 1)
		}
	}
	x.mu.Lock()
	x.pods, x.byNode = pods, byNode
	x.mu.Unlock()
	x.rev.Store(snap.Revision)
	x.synced.Store(true)
	return nil
}

// Apply applies one change.
func (x *Index) Apply(_ context.Context, ev changefeed.Event) error {
	if ev.Object.Ref.GroupKind() != PodKind {
		return nil
	}
	key := ev.Object.Ref.Key()
	x.mu.Lock()
	if old, ok := x.pods[key]; ok {
		addCount(x.byNode, old, -1)
		delete(x.pods, key)
	}
	if ev.Type == changefeed.EventPut {
		if p, ok := decodePod(ev.Object.Value, ev.Object.Ref.Namespace); ok {
			x.pods[key] = p
			addCount(x.byNode, p, 1)
		}
	}
	x.mu.Unlock()
	x.rev.Store(ev.Position.Revision)
	return nil
}

func addCount(byNode map[string]map[workload]int, p podInfo, d int) {
	m := byNode[p.node]
	if m == nil {
		m = map[workload]int{}
		byNode[p.node] = m
	}
	m[p.wl] += d
	if m[p.wl] <= 0 {
		delete(m, p.wl)
		if len(m) == 0 {
			delete(byNode, p.node)
		}
	}
}

// Has reports whether the index shows a pod of (ns, sa) on node.
func (x *Index) Has(node, ns, sa string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byNode[node][workload{ns, sa}] > 0
}

// Synced reports whether the index received its first snapshot.
func (x *Index) Synced() bool { return x.synced.Load() }

// Revision is the etcd revision the index reflects.
func (x *Index) Revision() int64 { return x.rev.Load() }

// Pods is the number of pods indexed.
func (x *Index) Pods() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.pods)
}

// Authorizer applies the rules of the package doc.
type Authorizer struct {
	Index       *Index
	Etcd        *clientv3.Client
	TrustDomain spiffeid.TrustDomain
	Logger      *slog.Logger
}

// Authorize decides whether caller may obtain a certificate for requested.
// It returns how a grant was decided, or a *fault.Error: PermissionDenied
// with a precise message, or Unavailable when etcd could not be read.
func (a *Authorizer) Authorize(ctx context.Context, caller, requested spiffe.Identity) (string, error) {
	if requested.TrustDomain() != a.TrustDomain || caller.TrustDomain() != a.TrustDomain {
		return "", fault.New(fault.PermissionDenied, ReasonForeignTrustDomain,
			"%s is not in trust domain %q", requested, a.TrustDomain.Name())
	}
	if requested == caller {
		return ViaSelf, nil
	}
	if caller.Kind() != spiffe.KindNode {
		return "", fault.New(fault.PermissionDenied, ReasonNotSelf,
			"%s identity %s may obtain only its own certificate, not %s", caller.Kind(), caller, requested)
	}
	if requested.Kind() != spiffe.KindWorkload {
		return "", fault.New(fault.PermissionDenied, ReasonNotWorkload,
			"node %s may obtain workload identities (/ns/<ns>/sa/<sa>) of its pods only, not the %s identity %s",
			caller.Node(), requested.Kind(), requested)
	}
	node, ns, sa := caller.Node(), requested.Namespace(), requested.ServiceAccount()
	if a.Index != nil && a.Index.Has(node, ns, sa) {
		return ViaIndex, nil
	}
	return a.confirm(ctx, node, ns, sa, requested)
}

// confirm reads the namespace's pods from etcd (linearizable).
func (a *Authorizer) confirm(ctx context.Context, node, ns, sa string, requested spiffe.Identity) (string, error) {
	prefix := PodKind.KeyPrefix() + ns + "/"
	resp, err := a.Etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return "", fault.Wrap(fault.Unavailable, "etcd", err, "cannot confirm the pods of namespace %s", ns)
	}
	elsewhere := false
	for _, kv := range resp.Kvs {
		p, ok := decodePod(kv.Value, ns)
		if !ok || p.wl.sa != sa {
			continue
		}
		if p.node == node {
			if a.Logger != nil {
				a.Logger.DebugContext(ctx, "granted from etcd; pod index lagging", "node", node, "identity", requested.String(),
					"revision", resp.Header.Revision)
			}
			return ViaEtcd, nil
		}
		elsewhere = true
	}
	if elsewhere {
		return "", fault.New(fault.PermissionDenied, ReasonPodNotOnNode,
			"no pod with identity %s is assigned to node %s (its pods run on other nodes)", requested, node)
	}
	return "", fault.New(fault.PermissionDenied, ReasonNoSuchPod,
		"no pod in namespace %q runs as service account %q (identity %s)", ns, sa, requested)
}
