// Package agent is the CNI node agent's core: it learns pod sandboxes from
// the ambit-cni plugin (or its spool), follows Namespace and Pod labels
// through config, and keeps every sandbox on its node in the state its
// labels ask for — redirection installed in the pod's netns and the pod
// handed to ztunnel over ZDS, or neither — without restarting pods. It
// also reports each pod's addresses and phase to config, the part of a
// kubelet this runtime needs.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	corev1 "k8s.io/api/core/v1"

	"github.com/ambitmesh/ambit/pkg/netns"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
	"github.com/ambitmesh/ambit/services/cni/internal/redirect"
)

// ZTunnels is the ZDS side: the set of enrolled pods ztunnel is told about.
type ZTunnels interface {
	// Add records the pod and, when a ztunnel is connected, hands it over
	// and returns ztunnel's verdict.
	Add(ctx context.Context, uid string, info *zdspb.WorkloadInfo, ns *netns.Handle) error
	// Del forgets the pod and tells every connected ztunnel.
	Del(ctx context.Context, uid string) error
}

// Options configures an Agent.
type Options struct {
	// Node is this node's name; only pods assigned to it are handled.
	Node string
	// StateDir keeps one file per known sandbox (per node).
	StateDir string
	// Spool is where the plugin leaves events while the agent is away.
	Spool cnievent.Spool
	// SpoolInterval is how often the spool is checked while running
	// (default 2s), catching events spooled during a restart window.
	SpoolInterval time.Duration
	// Config reads pods and namespaces and writes pod status.
	Config configv1.ConfigServiceClient
	// Redirect installs redirection in pod netns.
	Redirect redirect.Redirector
	// ZDS hands enrolled pods to ztunnel.
	ZDS ZTunnels
	// ResyncInterval is how often every sandbox is reconciled even
	// without a change (default 1m).
	ResyncInterval time.Duration
	// Workers is how many pods are reconciled in parallel (default 4).
	Workers int
	// RequestTimeout bounds each call to config (default 5s).
	RequestTimeout time.Duration
	// RetryMax caps the backoff of a pod whose reconciliation failed
	// (default 10s).
	RetryMax time.Duration
	Logger   *slog.Logger
	Tracer   trace.Tracer
	Metrics  *Metrics
}

// Agent keeps the node's sandboxes in their wanted state.
type Agent struct {
	opts  Options
	log   *slog.Logger
	store sandboxStore
	view  *View
	queue *keyQueue

	mu        sync.Mutex
	sandboxes map[string]*sandboxState // by container id
	restored  chan struct{}
}

// sandboxState is a sandbox with what this process did to it.
type sandboxState struct {
	*Sandbox
	ns *netns.Handle
	// applied: redirection and ZDS were set up by this process for the
	// current Enrolled state; a restarted agent re-applies once.
	applied bool
	// reported: status (IPs, Running) reached config.
	reported bool
	// verify: the next reconciliation checks installed redirection
	// against the wanted state even if nothing changed.
	verify bool
	// deleted: a DEL arrived; the next reconciliation removes it.
	deleted    bool
	failures   int
	enrollFrom time.Time // when the wish to enroll was first seen
}

// New makes an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	switch {
	case opts.Node == "":
		return nil, errors.New("agent: Node is required")
	case opts.StateDir == "":
		return nil, errors.New("agent: StateDir is required")
	case opts.Config == nil || opts.Redirect == nil || opts.ZDS == nil:
		return nil, errors.New("agent: Config, Redirect and ZDS are required")
	}
	if opts.SpoolInterval <= 0 {
		opts.SpoolInterval = 2 * time.Second
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = time.Minute
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Tracer == nil {
		opts.Tracer = tracenoop.NewTracerProvider().Tracer("")
	}
	if opts.Metrics == nil {
		opts.Metrics = noopMetrics()
	}
	a := &Agent{
		opts: opts, log: opts.Logger, store: sandboxStore{dir: opts.StateDir},
		queue: newKeyQueue(), sandboxes: map[string]*sandboxState{}, restored: make(chan struct{}),
	}
	a.view = NewView(opts.Config, opts.Node, opts.Logger, func(c Change) { a.changed(c) })
	opts.Metrics.observeEnrolled(a.enrolledCount)
	return a, nil
}

// Restored is closed once the sandboxes of an earlier run are back in the
// state they were left in: only then may ZDS serve ztunnel, whose first
// snapshot must hold every enrolled pod.
func (a *Agent) Restored() <-chan struct{} { return a.restored }

// Run restores, then follows config and the spool until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.restore(ctx); err != nil {
		return err
	}
	close(a.restored)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer a.queue.close()
	for range a.opts.Workers {
		wg.Go(func() { a.work(ctx) })
	}
	wg.Go(func() {
		select {
		case <-a.view.Synced():
			a.log.Info("config view synced; reconciling every sandbox")
			a.enqueueAll()
		case <-ctx.Done():
		}
	})
	wg.Go(func() { _ = a.view.Run(ctx) })
	a.replaySpool(ctx)
	t := time.NewTicker(a.opts.SpoolInterval)
	defer t.Stop()
	resync := time.NewTicker(a.opts.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.replaySpool(ctx)
		case <-resync.C:
			// Catches sandboxes whose netns vanished without a DEL, and
			// redirection someone changed by hand.
			a.mu.Lock()
			for _, st := range a.sandboxes {
				st.verify = true
			}
			a.mu.Unlock()
			a.enqueueAll()
		}
	}
}

// restore loads the sandboxes of an earlier run and puts each back the way
// it was recorded — enrolled ones re-enrolled (which also replaces stale
// rules), others cleaned — before config is consulted, so a restart with
// the control plane down changes nothing for running pods.
func (a *Agent) restore(ctx context.Context) error {
	sbs, bad, err := a.store.load()
	if err != nil {
		return fmt.Errorf("agent: state dir %s: %w", a.opts.StateDir, err)
	}
	for name, err := range bad {
		a.log.Warn("dropping unreadable sandbox record", "file", name, "err", err)
		_ = a.store.remove(name[:len(name)-len(sandboxExt)])
	}
	for _, sb := range sbs {
		h, err := netns.Open(sb.Netns)
		if err != nil {
			a.log.Info("sandbox gone while the agent was away", "container", sb.ContainerID, "pod", sb.PodKey(), "err", err)
			_ = a.store.remove(sb.ContainerID)
			continue
		}
		st := &sandboxState{Sandbox: sb, ns: h}
		a.mu.Lock()
		a.sandboxes[sb.ContainerID] = st
		a.mu.Unlock()
		if sb.Enrolled && sb.Workload != nil {
			err = a.enroll(ctx, st)
		} else {
			err = a.opts.Redirect.Unenroll(ctx, a.redirectPod(st))
		}
		if err != nil {
			a.log.Error("restoring sandbox", "container", sb.ContainerID, "pod", sb.PodKey(), "err", err)
			continue
		}
		st.applied = true
	}
	a.log.Info("restored sandboxes", "count", len(sbs), "enrolled", a.enrolledCount())
	return nil
}

// HandleEvent takes one plugin event. ADD returns once the sandbox is in
// its wanted state (so the app's first packet is already captured), DEL
// once it is cleaned up.
func (a *Agent) HandleEvent(ctx context.Context, ev *cnievent.Event) (cnievent.Reply, error) {
	ctx, span := a.opts.Tracer.Start(ctx, "cni."+string(ev.Command), trace.WithAttributes(
		attribute.String("k8s.pod.name", ev.PodName), attribute.String("k8s.namespace.name", ev.PodNamespace),
		attribute.String("container.id", ev.ContainerID)))
	defer span.End()
	reply, err := a.handle(ctx, ev)
	a.opts.Metrics.event(ctx, ev.Command, err)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return reply, err
}

func (a *Agent) handle(ctx context.Context, ev *cnievent.Event) (cnievent.Reply, error) {
	switch ev.Command {
	case cnievent.Add:
		return a.add(ctx, ev)
	case cnievent.Del:
		return cnievent.Reply{}, a.del(ctx, ev.ContainerID)
	case cnievent.Check:
		return a.check(ctx, ev)
	}
	return cnievent.Reply{}, fmt.Errorf("unknown command %q", ev.Command)
}

func (a *Agent) add(ctx context.Context, ev *cnievent.Event) (cnievent.Reply, error) {
	if err := a.register(ev); err != nil {
		return cnievent.Reply{}, err
	}
	// The pod may have been written a moment before the sandbox: read it
	// from config directly rather than trusting the view's lag.
	if err := a.refresh(ctx, ev.PodNamespace, ev.PodName); err != nil {
		return cnievent.Reply{}, fmt.Errorf("cannot decide enrollment of %s: %w", ev.PodKey(), err)
	}
	done := make(chan error, 1)
	a.queue.add(ev.PodKey(), done)
	select {
	case err := <-done:
		if err != nil {
			return cnievent.Reply{}, err
		}
	case <-ctx.Done():
		return cnievent.Reply{}, ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.sandboxes[ev.ContainerID]
	return cnievent.Reply{Enrolled: st != nil && st.Enrolled}, nil
}

// register records the sandbox durably before anything else happens to
// it, so a crash right after leaves it known to the next run.
func (a *Agent) register(ev *cnievent.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.sandboxes[ev.ContainerID]; old != nil && old.Netns == ev.Netns {
		return nil // a repeated ADD (runtime retry or spool replay)
	}
	h, err := netns.Open(ev.Netns)
	if err != nil {
		return fmt.Errorf("sandbox %s: netns %s: %w", ev.ContainerID, ev.Netns, err)
	}
	sb := sandboxFromEvent(ev)
	if err := a.store.save(sb); err != nil {
		_ = h.Close()
		return err
	}
	if old := a.sandboxes[ev.ContainerID]; old != nil {
		_ = old.ns.Close()
	}
	a.sandboxes[ev.ContainerID] = &sandboxState{Sandbox: sb, ns: h}
	return nil
}

// refresh puts the current pod and namespace from config into the view.
// When config cannot be reached, a synced view is good enough; an
// unsynced one is not, and the ADD fails so the runtime retries.
func (a *Agent) refresh(ctx context.Context, namespace, name string) error {
	rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	err := a.view.Refresh(rctx, namespace, name)
	if err == nil {
		return nil
	}
	select {
	case <-a.view.Synced():
		a.log.Warn("config unreachable; deciding from the last known state", "pod", namespace+"/"+name, "err", err)
		return nil
	default:
		return err
	}
}

func (a *Agent) del(ctx context.Context, containerID string) error {
	a.mu.Lock()
	st := a.sandboxes[containerID]
	a.mu.Unlock()
	if st == nil {
		return a.store.remove(containerID) // unknown or already gone: nothing to undo
	}
	done := make(chan error, 1)
	a.markDeleted(containerID)
	a.queue.add(st.PodKey(), done)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// markDeleted flags a sandbox for removal by its next reconciliation.
func (a *Agent) markDeleted(containerID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.sandboxes[containerID]; st != nil {
		st.deleted = true
	}
}

func (a *Agent) check(ctx context.Context, ev *cnievent.Event) (cnievent.Reply, error) {
	a.mu.Lock()
	st := a.sandboxes[ev.ContainerID]
	a.mu.Unlock()
	if st == nil {
		return cnievent.Reply{}, fmt.Errorf("sandbox %s of %s is unknown to the agent", ev.ContainerID, ev.PodKey())
	}
	ok, err := a.opts.Redirect.Check(ctx, a.redirectPod(st))
	if err != nil {
		return cnievent.Reply{}, err
	}
	if ok != st.Enrolled {
		return cnievent.Reply{}, fmt.Errorf("sandbox %s of %s: enrolled=%t but redirection installed=%t", ev.ContainerID, ev.PodKey(), st.Enrolled, ok)
	}
	return cnievent.Reply{Enrolled: st.Enrolled}, nil
}

// changed is the view's callback. Before the view has listed both kinds
// a change means little (the pod may be listed, its namespace not yet);
// everything is reconciled once it is synced.
func (a *Agent) changed(c Change) {
	if !a.viewSynced() {
		return
	}
	if c.Pod != "" {
		a.queue.add(c.Namespace+"/"+c.Pod, nil)
		return
	}
	a.mu.Lock()
	var keys []string
	for _, st := range a.sandboxes {
		if st.PodNamespace == c.Namespace {
			keys = append(keys, st.PodKey())
		}
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.queue.add(k, nil)
	}
}

func (a *Agent) viewSynced() bool {
	select {
	case <-a.view.Synced():
		return true
	default:
		return false
	}
}

func (a *Agent) enqueueAll() {
	a.mu.Lock()
	var keys []string
	for _, st := range a.sandboxes {
		keys = append(keys, st.PodKey())
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.queue.add(k, nil)
	}
}

func (a *Agent) work(ctx context.Context) {
	for {
		key, waiters, ok := a.queue.get()
		if !ok {
			return
		}
		err := a.reconcile(ctx, key)
		a.queue.done(key, waiters, err)
		if err != nil && ctx.Err() == nil {
			a.retryLater(ctx, key)
		}
	}
}

// retryLater re-queues a failed pod with a capped exponential backoff.
func (a *Agent) retryLater(ctx context.Context, key string) {
	a.mu.Lock()
	n := 0
	for _, st := range a.sandboxes {
		if st.PodKey() == key {
			st.failures++
			n = max(n, st.failures)
		}
	}
	a.mu.Unlock()
	d := min(a.opts.RetryMax, 100*time.Millisecond<<min(n, 10))
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			a.queue.add(key, nil)
		}
	})
}

// reconcile brings every sandbox of one pod to its wanted state. The
// newest sandbox of a pod is the live one; older ones (a runtime that
// recreated the sandbox without a DEL) are treated as deleted.
func (a *Agent) reconcile(ctx context.Context, key string) error {
	a.mu.Lock()
	var sts []*sandboxState
	for _, st := range a.sandboxes {
		if st.PodKey() == key {
			sts = append(sts, st)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(sts, func(x, y *sandboxState) int { return y.AddedAt.Compare(x.AddedAt) })
	var errs []error
	for i, st := range sts {
		if st.deleted || i > 0 || netnsGone(st.Netns) {
			errs = append(errs, a.remove(ctx, st))
			continue
		}
		errs = append(errs, a.reconcileLive(ctx, st))
	}
	return errors.Join(errs...)
}

func (a *Agent) reconcileLive(ctx context.Context, st *sandboxState) error {
	pod := a.view.Pod(st.PodNamespace, st.PodName)
	nsLabels, nsKnown := a.view.Namespace(st.PodNamespace)
	if (pod == nil || !nsKnown) && !a.viewSynced() {
		// Missing from a view that has not listed everything yet is not
		// "gone": deciding now could unenroll a running pod.
		return fmt.Errorf("pod %s: waiting for the first listing of pods and namespaces", st.PodKey())
	}
	d := decide(a.opts.Node, st.Sandbox, pod, nsLabels, nsKnown)
	var errs []error
	if pod != nil && pod.Spec.NodeName == a.opts.Node && (st.PodUID == "" || st.PodUID == string(pod.UID)) {
		if err := a.reportStatus(ctx, st, pod); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Enroll {
		if st.enrollFrom.IsZero() {
			st.enrollFrom = time.Now()
		}
		want := workloadIdent(pod)
		if st.Enrolled && st.applied && st.Workload != nil && *st.Workload == *want && !a.drifted(ctx, st) {
			return errors.Join(errs...)
		}
		a.mu.Lock()
		st.Workload, st.Enrolled = want, true
		a.mu.Unlock()
		if err := a.store.save(st.Sandbox); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := a.enroll(ctx, st); err != nil {
			st.applied = false
			return errors.Join(append(errs, err)...)
		}
		a.mu.Lock()
		st.applied, st.failures = true, 0
		a.mu.Unlock()
		a.opts.Metrics.enrolled(ctx, time.Since(st.enrollFrom))
		st.enrollFrom = time.Time{}
		a.log.Info("pod enrolled", "pod", st.PodKey(), "container", st.ContainerID, "reason", d.Reason, "mode", a.opts.Redirect.Mode())
		return errors.Join(errs...)
	}
	st.enrollFrom = time.Time{}
	if !st.Enrolled && st.applied {
		return errors.Join(errs...)
	}
	if err := a.unenroll(ctx, st); err != nil {
		return errors.Join(append(errs, err)...)
	}
	wasEnrolled := st.Enrolled
	a.mu.Lock()
	st.Enrolled, st.applied, st.failures = false, true, 0
	a.mu.Unlock()
	if err := a.store.save(st.Sandbox); err != nil {
		errs = append(errs, err)
	}
	if wasEnrolled {
		a.log.Info("pod unenrolled", "pod", st.PodKey(), "container", st.ContainerID, "reason", d.Reason)
	}
	return errors.Join(errs...)
}

// enroll installs redirection first, then hands the pod to ztunnel: in
// between, the pod's traffic goes to ports nobody listens on yet and
// fails closed instead of leaving the mesh.
func (a *Agent) enroll(ctx context.Context, st *sandboxState) error {
	ctx, span := a.opts.Tracer.Start(ctx, "cni.enroll", trace.WithAttributes(attribute.String("k8s.pod", st.PodKey()), attribute.String("mode", a.opts.Redirect.Mode())))
	defer span.End()
	if err := a.opts.Redirect.Enroll(ctx, a.redirectPod(st)); err != nil {
		a.opts.Metrics.failure(ctx, "redirect")
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("enroll %s: %w", st.PodKey(), err)
	}
	w := st.Workload
	if err := a.opts.ZDS.Add(ctx, w.UID, &zdspb.WorkloadInfo{Name: w.Name, Namespace: w.Namespace, ServiceAccount: w.ServiceAccount}, st.ns); err != nil {
		a.opts.Metrics.failure(ctx, "ztunnel")
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("enroll %s: ztunnel: %w", st.PodKey(), err)
	}
	return nil
}

// unenroll removes redirection first, so no new connection reaches
// ztunnel, then tells ztunnel to let the pod go.
func (a *Agent) unenroll(ctx context.Context, st *sandboxState) error {
	if err := a.opts.Redirect.Unenroll(ctx, a.redirectPod(st)); err != nil {
		a.opts.Metrics.failure(ctx, "redirect")
		return fmt.Errorf("unenroll %s: %w", st.PodKey(), err)
	}
	if st.Workload != nil {
		if err := a.opts.ZDS.Del(ctx, st.Workload.UID); err != nil {
			a.opts.Metrics.failure(ctx, "ztunnel")
			return fmt.Errorf("unenroll %s: ztunnel: %w", st.PodKey(), err)
		}
	}
	return nil
}

// remove undoes everything for a sandbox that is deleted (or superseded)
// and forgets it.
func (a *Agent) remove(ctx context.Context, st *sandboxState) error {
	if err := a.unenroll(ctx, st); err != nil {
		// A netns that is already gone has no rules left to remove.
		if _, serr := st.ns.Inode(); serr == nil {
			return err
		}
		if st.Workload != nil {
			if err := a.opts.ZDS.Del(ctx, st.Workload.UID); err != nil {
				return err
			}
		}
	}
	if st.reported {
		a.clearStatus(ctx, st)
	}
	a.mu.Lock()
	if a.sandboxes[st.ContainerID] == st {
		delete(a.sandboxes, st.ContainerID)
	}
	a.mu.Unlock()
	_ = st.ns.Close()
	if err := a.store.remove(st.ContainerID); err != nil {
		return err
	}
	a.log.Info("sandbox removed", "pod", st.PodKey(), "container", st.ContainerID, "wasEnrolled", st.Enrolled)
	return nil
}

// drifted reports, when a resync asked for it, whether the pod's
// redirection differs from what Enroll installs.
func (a *Agent) drifted(ctx context.Context, st *sandboxState) bool {
	a.mu.Lock()
	verify := st.verify
	st.verify = false
	a.mu.Unlock()
	if !verify {
		return false
	}
	ok, err := a.opts.Redirect.Check(ctx, a.redirectPod(st))
	if err == nil && ok {
		return false
	}
	a.log.Warn("redirection drifted; installing it again", "pod", st.PodKey(), "err", err)
	return true
}

// netnsGone: the runtime removed the sandbox's netns without a DEL (our
// open handle keeps the namespace itself alive, so its path is the sign).
func netnsGone(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

func (a *Agent) redirectPod(st *sandboxState) redirect.Pod {
	p := redirect.Pod{UID: st.ContainerID, Netns: st.ns}
	if st.Workload != nil {
		p.UID = st.Workload.UID
	}
	for _, ip := range st.IPs {
		if ip.Gateway.IsValid() && !slices.Contains(p.NodeAddrs, ip.Gateway) {
			p.NodeAddrs = append(p.NodeAddrs, ip.Gateway)
		}
	}
	return p
}

func workloadIdent(p *corev1.Pod) *WorkloadIdent {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return &WorkloadIdent{UID: string(p.UID), Namespace: p.Namespace, Name: p.Name, ServiceAccount: sa}
}

// reportStatus writes the sandbox's addresses and phase Running when the
// pod's status says otherwise. The agent may write only the status of
// pods on its own node; config enforces that.
func (a *Agent) reportStatus(ctx context.Context, st *sandboxState, pod *corev1.Pod) error {
	want := podStatus(pod, st.IPs, corev1.PodRunning)
	if statusEqual(pod.Status, want) {
		st.reported = true
		return nil
	}
	if err := a.writeStatus(ctx, pod.Namespace, pod.Name, want); err != nil {
		a.opts.Metrics.failure(ctx, "status")
		return fmt.Errorf("status of %s: %w", st.PodKey(), err)
	}
	st.reported = true
	return nil
}

// clearStatus marks a pod whose sandbox went away as having no address,
// so xds stops sending traffic to it. Best effort: the pod may be gone.
func (a *Agent) clearStatus(ctx context.Context, st *sandboxState) {
	pod := a.view.Pod(st.PodNamespace, st.PodName)
	if pod == nil || (st.PodUID != "" && string(pod.UID) != st.PodUID) {
		return
	}
	if err := a.writeStatus(ctx, pod.Namespace, pod.Name, podStatus(pod, nil, corev1.PodPending)); err != nil {
		a.log.Info("clearing status of a removed sandbox", "pod", st.PodKey(), "err", err)
	}
}

func (a *Agent) writeStatus(ctx context.Context, namespace, name string, s corev1.PodStatus) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	_, err = a.opts.Config.UpdateStatus(ctx, &configv1.UpdateStatusRequest{
		Ref:    &configv1.ObjectRef{Group: "core", Kind: "Pod", Namespace: namespace, Name: name},
		Status: b,
	})
	return err
}

// podStatus is the pod's status with the sandbox's addresses and phase;
// conditions and anything else another writer set are kept.
func podStatus(pod *corev1.Pod, ips []cnievent.IP, phase corev1.PodPhase) corev1.PodStatus {
	s := *pod.Status.DeepCopy()
	s.Phase = phase
	s.PodIP, s.PodIPs = "", nil
	for _, ip := range ips {
		addr := ip.Address.Addr().String()
		if s.PodIP == "" {
			s.PodIP = addr
		}
		s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: addr})
	}
	return s
}

func statusEqual(a, b corev1.PodStatus) bool {
	return a.Phase == b.Phase && a.PodIP == b.PodIP && slices.Equal(a.PodIPs, b.PodIPs)
}

// replaySpool takes over the events the plugin spooled while the agent
// was away, in order. An ADD only registers the sandbox here; its
// enrollment follows from reconciliation like any other.
func (a *Agent) replaySpool(ctx context.Context) {
	entries, err := a.opts.Spool.List()
	if err != nil {
		a.log.Warn("reading spool", "dir", a.opts.Spool.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		if e.Err != nil {
			a.log.Warn("dropping unreadable spooled event", "file", e.Name, "err", e.Err)
			_ = a.opts.Spool.Remove(e.Name)
			continue
		}
		ev := e.Event
		var err error
		switch ev.Command {
		case cnievent.Add:
			err = a.register(ev)
			if err == nil {
				a.queue.add(ev.PodKey(), nil)
			}
		case cnievent.Del:
			a.markDeleted(ev.ContainerID)
			a.queue.add(ev.PodKey(), nil)
		}
		if err != nil {
			// A sandbox whose netns is gone by now needs nothing.
			a.log.Warn("spooled event", "file", e.Name, "pod", ev.PodKey(), "err", err)
		} else {
			a.log.Info("took over spooled event", "command", ev.Command, "pod", ev.PodKey(), "container", ev.ContainerID)
		}
		_ = a.opts.Spool.Remove(e.Name)
	}
}

func (a *Agent) enrolledCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, st := range a.sandboxes {
		if st.Enrolled {
			n++
		}
	}
	return n
}

// Sandboxes lists what the agent knows, for the admin endpoint and tests.
func (a *Agent) Sandboxes() []Sandbox {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Sandbox, 0, len(a.sandboxes))
	for _, st := range a.sandboxes {
		out = append(out, *st.Sandbox)
	}
	slices.SortFunc(out, func(x, y Sandbox) int { return x.AddedAt.Compare(y.AddedAt) })
	return out
}
