package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/ambitmesh/ambit/pkg/backoff"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

// View is the agent's copy of the two kinds that decide enrollment:
// Namespaces (their labels) and the Pods assigned to this node. It follows
// config's List + Watch, one stream per kind; a broken stream resumes
// after the last revision it saw, and a stream the server can no longer
// resume (OutOfRange) starts over with a fresh List. Objects are decoded
// leniently, so an older agent keeps working against a newer config.
type View struct {
	client   configv1.ConfigServiceClient
	node     string
	log      *slog.Logger
	onChange func(Change)
	retryMax time.Duration

	mu         sync.RWMutex
	namespaces map[string]*corev1.Namespace
	pods       map[string]*corev1.Pod // namespace/name, this node's only
	synced     [2]bool
	syncedCh   chan struct{}
}

// Change says what moved in the view: a namespace (every pod in it may
// need another look) or one pod.
type Change struct {
	Namespace string
	// Pod is the pod's name; empty for a namespace change.
	Pod string
}

// NewView makes a view for node; onChange is called (from the view's
// goroutines, never under its lock) after each applied change.
func NewView(client configv1.ConfigServiceClient, node string, log *slog.Logger, onChange func(Change)) *View {
	return &View{
		client: client, node: node, log: log, onChange: onChange, retryMax: 5 * time.Second,
		namespaces: map[string]*corev1.Namespace{}, pods: map[string]*corev1.Pod{},
		syncedCh: make(chan struct{}),
	}
}

const (
	kindNamespace = iota
	kindPod
)

var watchedKinds = [...]string{kindNamespace: "Namespace", kindPod: "Pod"}

// Run follows both kinds until ctx ends.
func (v *View) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for k := range watchedKinds {
		wg.Go(func() { v.follow(ctx, k) })
	}
	wg.Wait()
	return ctx.Err()
}

// Synced is closed once both kinds were listed once.
func (v *View) Synced() <-chan struct{} { return v.syncedCh }

// Namespace returns a namespace's labels, or ok=false when it is unknown.
func (v *View) Namespace(name string) (labels map[string]string, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ns, ok := v.namespaces[name]
	if !ok {
		return nil, false
	}
	return ns.Labels, true
}

// Pod returns the cached pod (read only), or nil.
func (v *View) Pod(namespace, name string) *corev1.Pod {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.pods[namespace+"/"+name]
}

// GetPod reads a pod from config directly. The ADD path uses it: a pod
// created a moment ago may not have reached the view yet.
func (v *View) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	resp, err := v.client.Get(ctx, &configv1.GetRequest{Ref: &configv1.ObjectRef{Group: "core", Kind: "Pod", Namespace: namespace, Name: name}})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p corev1.Pod
	if err := json.Unmarshal(resp.GetObject(), &p); err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
	}
	return &p, nil
}

func (v *View) follow(ctx context.Context, kind int) {
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: v.retryMax}
	var rev int64
	for ctx.Err() == nil {
		var err error
		before := rev
		if rev == 0 {
			rev, err = v.list(ctx, kind)
		}
		if err == nil {
			rev, err = v.watch(ctx, kind, rev)
		}
		if rev > before {
			bo.Reset() // a listing or events arrived: config is there
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.OutOfRange {
			v.log.Info("watch cannot resume, listing again", "kind", watchedKinds[kind], "err", err)
			rev = 0
			continue
		}
		d := bo.Next()
		v.log.Warn("following config", "kind", watchedKinds[kind], "err", err, "retry", d)
		if backoff.Sleep(ctx, d) != nil {
			return
		}
	}
}

func (v *View) list(ctx context.Context, kind int) (int64, error) {
	var objs [][]byte
	var rev int64
	token := ""
	for {
		resp, err := v.client.List(ctx, &configv1.ListRequest{Ref: &configv1.ObjectRef{Group: "core", Kind: watchedKinds[kind]}, Limit: 500, Continue: token})
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", watchedKinds[kind], err)
		}
		objs = append(objs, resp.GetObjects()...)
		rev = max(rev, resp.GetRevision())
		if token = resp.GetContinue(); token == "" {
			break
		}
	}
	var changes []Change
	v.mu.Lock()
	switch kind {
	case kindNamespace:
		old := v.namespaces
		v.namespaces = map[string]*corev1.Namespace{}
		for _, b := range objs {
			var ns corev1.Namespace
			if err := json.Unmarshal(b, &ns); err != nil {
				v.log.Warn("skipping undecodable namespace", "err", err)
				continue
			}
			v.namespaces[ns.Name] = &ns
			if o := old[ns.Name]; o == nil || !sameLabels(o.Labels, ns.Labels) {
				changes = append(changes, Change{Namespace: ns.Name})
			}
			delete(old, ns.Name)
		}
		for name := range old {
			changes = append(changes, Change{Namespace: name})
		}
	case kindPod:
		old := v.pods
		v.pods = map[string]*corev1.Pod{}
		for _, b := range objs {
			p, err := v.decodePod(b)
			if err != nil {
				v.log.Warn("skipping undecodable pod", "err", err)
				continue
			}
			if p == nil {
				continue
			}
			key := p.Namespace + "/" + p.Name
			v.pods[key] = p
			changes = append(changes, Change{Namespace: p.Namespace, Pod: p.Name})
			delete(old, key)
		}
		for _, p := range old {
			changes = append(changes, Change{Namespace: p.Namespace, Pod: p.Name})
		}
	}
	first := !v.synced[kind]
	v.synced[kind] = true
	allSynced := v.synced[kindNamespace] && v.synced[kindPod]
	v.mu.Unlock()
	if first && allSynced {
		close(v.syncedCh)
	}
	for _, c := range changes {
		v.onChange(c)
	}
	return rev, nil
}

// watch streams changes after rev and returns the last revision applied
// when the stream ends.
func (v *View) watch(ctx context.Context, kind int, rev int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := v.client.Watch(ctx, &configv1.WatchRequest{Ref: &configv1.ObjectRef{Group: "core", Kind: watchedKinds[kind]}, AfterRevision: rev})
	if err != nil {
		return rev, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return rev, err
		}
		for _, ev := range resp.GetEvents() {
			if ev.GetRevision() <= rev {
				continue
			}
			rev = ev.GetRevision()
			if c, ok := v.apply(kind, ev); ok {
				v.onChange(c)
			}
		}
	}
}

func (v *View) apply(kind int, ev *configv1.WatchEvent) (Change, bool) {
	deleted := ev.GetType() == configv1.WatchEventType_WATCH_EVENT_TYPE_DELETED
	v.mu.Lock()
	defer v.mu.Unlock()
	switch kind {
	case kindNamespace:
		var ns corev1.Namespace
		if err := json.Unmarshal(ev.GetObject(), &ns); err != nil || ns.Name == "" {
			v.log.Warn("skipping undecodable namespace event", "revision", ev.GetRevision(), "err", err)
			return Change{}, false
		}
		old := v.namespaces[ns.Name]
		if deleted {
			delete(v.namespaces, ns.Name)
			return Change{Namespace: ns.Name}, old != nil
		}
		v.namespaces[ns.Name] = &ns
		return Change{Namespace: ns.Name}, old == nil || !sameLabels(old.Labels, ns.Labels)
	default:
		var meta struct {
			Metadata struct{ Namespace, Name string }
		}
		if err := json.Unmarshal(ev.GetObject(), &meta); err != nil || meta.Metadata.Name == "" {
			v.log.Warn("skipping undecodable pod event", "revision", ev.GetRevision(), "err", err)
			return Change{}, false
		}
		key := meta.Metadata.Namespace + "/" + meta.Metadata.Name
		c := Change{Namespace: meta.Metadata.Namespace, Pod: meta.Metadata.Name}
		_, had := v.pods[key]
		if deleted {
			delete(v.pods, key)
			return c, had
		}
		p, err := v.decodePod(ev.GetObject())
		if err != nil {
			v.log.Warn("skipping undecodable pod event", "revision", ev.GetRevision(), "err", err)
			return Change{}, false
		}
		if p == nil { // assigned elsewhere (or moved away)
			delete(v.pods, key)
			return c, had
		}
		v.pods[key] = p
		return c, true
	}
}

// decodePod returns the pod when it is assigned to this node, nil when it
// is not.
func (v *View) decodePod(b []byte) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	if p.Name == "" || p.Namespace == "" {
		return nil, errors.New("pod without namespace or name")
	}
	if p.Spec.NodeName != v.node {
		return nil, nil
	}
	return &p, nil
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			return false
		}
	}
	return true
}

// Refresh reads one pod and its namespace from config and puts them into
// the view when they are newer than what it holds (or removes a pod that
// is gone), so a decision right after a write sees that write.
func (v *View) Refresh(ctx context.Context, namespace, name string) error {
	pod, err := v.GetPod(ctx, namespace, name)
	if err != nil {
		return err
	}
	resp, err := v.client.Get(ctx, &configv1.GetRequest{Ref: &configv1.ObjectRef{Group: "core", Kind: "Namespace", Name: namespace}})
	var ns *corev1.Namespace
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return err
	default:
		ns = &corev1.Namespace{}
		if err := json.Unmarshal(resp.GetObject(), ns); err != nil {
			return fmt.Errorf("namespace %s: %w", namespace, err)
		}
	}
	key := namespace + "/" + name
	v.mu.Lock()
	defer v.mu.Unlock()
	if ns != nil && newer(ns.ResourceVersion, v.namespaces[namespace]) {
		v.namespaces[namespace] = ns
	}
	switch {
	case pod == nil || pod.Spec.NodeName != v.node:
		delete(v.pods, key)
	case newerPod(pod.ResourceVersion, v.pods[key]):
		v.pods[key] = pod
	}
	return nil
}

func newer(rv string, cur *corev1.Namespace) bool {
	return cur == nil || parseRV(rv) >= parseRV(cur.ResourceVersion)
}

func newerPod(rv string, cur *corev1.Pod) bool {
	return cur == nil || parseRV(rv) >= parseRV(cur.ResourceVersion)
}

func parseRV(rv string) int64 {
	n, _ := strconv.ParseInt(rv, 10, 64)
	return n
}
