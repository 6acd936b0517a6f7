package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/localproc"
)

// configReplicas is how many ambit-config processes the tour runs.
const configReplicas = 2

func (e *Env) etcdClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: e.Stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
}

func (e *Env) startConfig(ctx context.Context) ([]string, error) {
	if e.Stack == nil {
		return nil, errors.New("no state servers")
	}
	bin := filepath.Join(e.BinDir, "ambit-config")
	var ev []string
	for i := range configReplicas {
		id := fmt.Sprintf("config-%d", i)
		p, err := localproc.Start(ctx, id, bin, []string{
			"--insecure-loopback", "--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--replica-id=" + id, "--election-ttl=2s",
			"--etcd-endpoints=" + strings.Join(e.Stack.EtcdEndpoints(), ","), "--nats-url=" + e.Stack.NATSURL(),
		}, e.LogDir, 30*time.Second)
		if err != nil {
			return ev, err
		}
		e.Config = append(e.Config, p)
		ev = append(ev, fmt.Sprintf("%s: pid %d, config API on %s, log %s", id, p.Pid(), p.Addr("grpc"), p.LogPath))
	}
	leader, err := e.waitLeader(ctx, "")
	if err != nil {
		return ev, err
	}
	return append(ev, "change-feed leader (elected through etcd): "+leader), nil
}

// waitLeader waits until the change-feed election has a leader other than
// not, and returns it.
func (e *Env) waitLeader(ctx context.Context, not string) (string, error) {
	c, err := e.etcdClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(ctx, "/ambit/election/changefeed", clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
		if err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) != not {
			return string(resp.Kvs[0].Value), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return "", errors.New("no change-feed leader elected within 20s")
}

// ambitctl runs the real ambitctl binary against the demo's config replicas.
func (e *Env) ambitctl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var servers []string
	for _, p := range e.Config {
		if !p.Exited() {
			servers = append(servers, p.Addr("grpc"))
		}
	}
	full := append([]string{"--insecure-loopback", "--server=" + strings.Join(servers, ",")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "ambitctl"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, "$ "+l)
		}
	}
	return out
}

func (e *Env) applyDemo(ctx context.Context) ([]string, error) {
	out, errOut, err := e.ambitctl(ctx, "apply", "-f", e.Manifests)
	ev := append([]string{"ambitctl apply -f " + e.Manifests}, lines(out)...)
	if err != nil {
		return append(ev, lines(errOut)...), fmt.Errorf("ambitctl apply: %w", err)
	}
	if !strings.Contains(out, "authorizationpolicy.security.istio.io/echo-allow-frontend created") {
		return ev, errors.New("the AuthorizationPolicy was not created")
	}
	get, _, err := e.ambitctl(ctx, "get", "svc", "-A")
	ev = append(append(ev, "ambitctl get svc -A"), lines(get)...)
	return ev, err
}

func (e *Env) reapply(ctx context.Context) ([]string, error) {
	out, errOut, err := e.ambitctl(ctx, "apply", "-f", e.Manifests)
	ev := append([]string{"ambitctl apply -f " + e.Manifests + "   (again)"}, lines(out)...)
	if err != nil {
		return append(ev, lines(errOut)...), err
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(l, " unchanged") {
			return ev, fmt.Errorf("%q: a second apply changed something", l)
		}
	}
	return ev, nil
}

func (e *Env) rejectInvalid(ctx context.Context) ([]string, error) {
	bad := filepath.Join(filepath.Dir(e.Manifests), "invalid-policy.yaml")
	_, errOut, err := e.ambitctl(ctx, "apply", "-f", bad)
	ev := append([]string{"ambitctl apply -f " + bad}, lines(errOut)...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		return ev, fmt.Errorf("ambitctl apply of an invalid policy: %v, want exit code 1", err)
	}
	if !strings.Contains(errOut, `spec.rules[0].from[0].source.ipBlocks[1]`) || !strings.Contains(errOut, `"10.0.0.0/33"`) {
		return ev, errors.New("the error does not name the field path and value")
	}
	_, getErr, err := e.ambitctl(ctx, "get", "authorizationpolicy", "broken", "-n", "shop")
	ev = append(append(ev, "ambitctl get authorizationpolicy broken -n shop"), lines(getErr)...)
	if err == nil || !strings.Contains(getErr, "not found") {
		return ev, errors.New("the invalid policy was stored")
	}
	return ev, nil
}

// feedWatcher is a change-feed consumer that remembers the latest state.
type feedWatcher struct {
	mu      sync.Mutex
	objects map[string]int64 // key -> mod revision
	events  int
	changed chan struct{}
}

func (w *feedWatcher) Reset(_ context.Context, snap changefeed.Snapshot) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.objects = map[string]int64{}
	for _, o := range snap.Objects {
		w.objects[o.Ref.Key()] = o.ModRevision
	}
	w.notify()
	return nil
}

func (w *feedWatcher) Apply(_ context.Context, ev changefeed.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	if ev.Type == changefeed.EventDelete {
		delete(w.objects, ev.Object.Ref.Key())
	} else {
		w.objects[ev.Object.Ref.Key()] = ev.Object.ModRevision
	}
	w.notify()
	return nil
}

func (w *feedWatcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds on the watcher's state.
func (w *feedWatcher) waitFor(ctx context.Context, timeout time.Duration, cond func(map[string]int64) bool) error {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		ok := cond(w.objects)
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-w.changed:
		case <-deadline:
			return fmt.Errorf("not seen on the change feed within %s", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *Env) followFeed(ctx context.Context) ([]string, error) {
	etcd, err := e.etcdClient()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(e.Stack.NATSURL(), nats.MaxReconnects(-1))
	if err != nil {
		etcd.Close()
		return nil, err
	}
	w := &feedWatcher{changed: make(chan struct{}, 1)}
	cons, err := changefeed.NewConsumer(changefeed.ConsumerOptions{Etcd: etcd, NATS: nc, Handler: w, Name: "demo"})
	if err != nil {
		nc.Close()
		etcd.Close()
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(cctx) }()
	e.feed = w
	e.closers = append(e.closers, func() { cancel(); <-done; nc.Close(); etcd.Close() })

	want := "/ambit/v1/res/security.istio.io/AuthorizationPolicy/shop/echo-allow-frontend"
	if err := w.waitFor(ctx, 20*time.Second, func(m map[string]int64) bool { _, ok := m[want]; return ok }); err != nil {
		return nil, err
	}
	w.mu.Lock()
	n := len(w.objects)
	w.mu.Unlock()
	return []string{
		fmt.Sprintf("a consumer (as xds, ca and node agents use) holds %d objects after listing etcd and following JetStream", n),
		"it has " + want + fmt.Sprintf(" at revision %d (lastAppliedRevision %d)", w.objects[want], cons.LastAppliedRevision()),
	}, nil
}

func (e *Env) killLeader(ctx context.Context) ([]string, error) {
	if e.feed == nil {
		return nil, errors.New("no change-feed consumer")
	}
	old, err := e.waitLeader(ctx, "")
	if err != nil {
		return nil, err
	}
	var victim *localproc.Process
	for _, p := range e.Config {
		if p.Name == old {
			victim = p
		}
	}
	if victim == nil {
		return nil, fmt.Errorf("leader %s is not one of the demo's replicas", old)
	}
	start := time.Now()
	victim.Kill()
	ev := []string{fmt.Sprintf("kill -9 %s (pid %d), the change-feed leader", old, victim.Pid())}
	key := "/ambit/v1/res/core/Namespace/_/legacy"
	before := e.feed.snapshotRev(key)
	// Immediately label the legacy namespace through the surviving replica.
	manifest := filepath.Join(e.LogDir, "legacy-ambient.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n  labels:\n    istio.io/dataplane-mode: ambient\n"), 0o644); err != nil {
		return ev, err
	}
	out, errOut, err := e.ambitctl(ctx, "apply", "-f", manifest)
	ev = append(append(ev, "ambitctl apply (namespace legacy joins the mesh)"), lines(out+errOut)...)
	if err != nil {
		return ev, err
	}
	if err := e.feed.waitFor(ctx, 15*time.Second, func(m map[string]int64) bool { return m[key] > before }); err != nil {
		return ev, fmt.Errorf("the change after the kill: %w", err)
	}
	leader, err := e.waitLeader(ctx, old)
	if err != nil {
		return ev, err
	}
	return append(ev, fmt.Sprintf("%s took over; the change reached the consumer %s after the kill, nothing lost",
		leader, time.Since(start).Round(time.Millisecond))), nil
}

func (w *feedWatcher) snapshotRev(key string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.objects[key]
}
