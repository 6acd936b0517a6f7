package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

// binary returns the ambit-config binary: $AMBIT_BIN/ambit-config when the
// Makefile built it, else a fresh build.
func binary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("AMBIT_BIN"); dir != "" {
		if p := filepath.Join(dir, "ambit-config"); fileExists(p) {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "ambit-config")
	cmd := exec.Command("go", "build", "-o", out, "../../cmd/ambit-config")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ambit-config: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// proc is one running replica.
type proc struct {
	id    string
	cmd   *exec.Cmd
	addr  string
	admin string
	done  chan struct{}
}

func startReplica(t *testing.T, bin, id string, stack *devstack.Stack) *proc {
	t.Helper()
	cmd := exec.Command(bin,
		"--insecure-loopback", "--listen-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--replica-id="+id, "--election-ttl=2s", "--log-level=info",
		"--etcd-endpoints="+strings.Join(stack.EtcdEndpoints(), ","), "--nats-url="+stack.NATSURL())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{id: id, cmd: cmd, done: make(chan struct{})}
	addrCh := make(chan [2]string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct {
				Msg   string `json:"msg"`
				GRPC  string `json:"grpc"`
				Admin string `json:"admin"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				addrCh <- [2]string{line.GRPC, line.Admin}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	})
	select {
	case a := <-addrCh:
		p.addr, p.admin = a[0], a[1]
	case <-p.done:
		t.Fatalf("replica %s exited before serving", id)
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not start serving", id)
	}
	return p
}

// waitReady polls /readyz until the replica is ready: connected, and its
// watch cache synced with the change feed.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s not ready: %v", p.id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func dial(t *testing.T, addr string) configv1.ConfigServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return configv1.NewConfigServiceClient(conn)
}

// leader reads the changefeed election: the oldest candidate key leads.
func leader(ctx context.Context, etcd *clientv3.Client) (string, error) {
	resp, err := etcd.Get(ctx, "/ambit/election/changefeed", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", errors.New("no leader")
	}
	return string(resp.Kvs[0].Value), nil
}

// TestHAApplyWhileLeaderKilled runs three replicas from the built binary,
// spreads 1,000 applies over them, kill -9s the change-feed leader midway,
// and checks that every object is in etcd and on the feed exactly once, in
// revision order, with distinct cluster IPs, and that a Watch on a
// surviving replica saw each exactly once.
func TestHAApplyWhileLeaderKilled(t *testing.T) {
	const total = 1000
	if testing.Short() {
		t.Skip("spawns three config replicas")
	}
	ctx := context.Background()
	stack, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Stop() })
	etcd, err := clientv3.New(clientv3.Config{Endpoints: stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()

	bin := binary(t)
	replicas := map[string]*proc{}
	var clients []configv1.ConfigServiceClient
	var ids []string
	for i := range 3 {
		id := fmt.Sprintf("config-%d", i)
		p := startReplica(t, bin, id, stack)
		replicas[id] = p
		ids = append(ids, id)
		clients = append(clients, dial(t, p.addr))
	}
	var leaderID string
	deadline := time.Now().Add(20 * time.Second)
	for leaderID == "" {
		if leaderID, _ = leader(ctx, etcd); leaderID == "" && time.Now().After(deadline) {
			t.Fatal("no change-feed leader elected")
		}
	}
	t.Logf("leader: %s", leaderID)

	// A client of a replica that keeps running lists, then watches from the
	// list's revision; Watch is served from that replica's own change-feed
	// consumer, so the leader's death must not disturb it.
	var watchClient configv1.ConfigServiceClient
	for i, id := range ids {
		if id != leaderID {
			// Ready: its cache synced before the namespace was created, so
			// it covers the listing's revision.
			replicas[id].waitReady(t)
			watchClient = clients[i]
			break
		}
	}
	if _, err := clients[0].Apply(ctx, &configv1.ApplyRequest{Manifest: []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: ha}\n")}); err != nil {
		t.Fatal(err)
	}

	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	stream := listAndWatch(t, wctx, watchClient, clients[0])
	watched := make(chan []*configv1.WatchEvent, 1)
	watchErr := make(chan error, 1)
	go func() {
		var evs []*configv1.WatchEvent
		for len(evs) < total {
			resp, err := stream.Recv()
			if err != nil {
				watchErr <- fmt.Errorf("after %d events: %w", len(evs), err)
				return
			}
			evs = append(evs, resp.GetEvents()...)
		}
		watched <- evs
	}()

	var next, applied atomic.Int64
	var killed atomic.Bool
	var killedAt atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				manifest := fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: ha}\nspec: {ports: [{port: 80}]}\n", i)
				// Spread over the replicas; a dead one is skipped.
				var err error
				for attempt := range 3 * len(clients) {
					c := (int(i) + w + attempt) % len(clients)
					if killed.Load() && ids[c] == leaderID {
						continue
					}
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err = clients[c].Apply(rctx, &configv1.ApplyRequest{Manifest: []byte(manifest)})
					cancel()
					if err == nil || status.Code(err) != codes.Unavailable {
						break
					}
				}
				if err != nil {
					errs <- fmt.Errorf("svc-%d: %w", i, err)
					return
				}
				if applied.Add(1) == total/3 {
					replicas[leaderID].kill()
					killedAt.Store(time.Now().UnixNano())
					killed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !killed.Load() {
		t.Fatal("the leader was never killed")
	}
	// A new leader takes over within two session TTLs of the kill.
	var newLeader string
	for newLeader == "" || newLeader == leaderID {
		newLeader, _ = leader(ctx, etcd)
		if since := time.Since(time.Unix(0, killedAt.Load())); since > 4*time.Second && (newLeader == "" || newLeader == leaderID) {
			t.Fatalf("no new leader %s after killing %s", since, leaderID)
		}
	}
	t.Logf("applied %d services; leader %s killed, %s leads within %s", total, leaderID, newLeader, time.Since(time.Unix(0, killedAt.Load())).Round(time.Millisecond))

	// etcd holds every object once.
	resp, err := etcd.Get(ctx, changefeed.ResourcePrefix+"core/Service/ha/svc-", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != total {
		t.Fatalf("etcd holds %d services, want %d", len(resp.Kvs), total)
	}
	// The feed must reach the newest resource revision (etcd's own revision
	// may be higher: election keys are not resources).
	var etcdRev int64
	ips := map[string]string{}
	for _, kv := range resp.Kvs {
		etcdRev = max(etcdRev, kv.ModRevision)
		var o struct {
			Spec struct {
				ClusterIP string `json:"clusterIP"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			t.Fatal(err)
		}
		if other, dup := ips[o.Spec.ClusterIP]; dup || o.Spec.ClusterIP == "" {
			t.Fatalf("%s has cluster IP %q (also %s)", kv.Key, o.Spec.ClusterIP, other)
		}
		ips[o.Spec.ClusterIP] = string(kv.Key)
	}

	// The feed holds every change exactly once, in order.
	nc, err := nats.Connect(stack.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var seen map[string]int
	var last changefeed.Position
	deadline = time.Now().Add(30 * time.Second)
	for {
		seen, last = readFeed(t, js)
		if last.Revision >= etcdRev || time.Now().After(deadline) {
			break
		}
	}
	if last.Revision < etcdRev {
		t.Fatalf("feed reached revision %d, etcd is at %d", last.Revision, etcdRev)
	}
	for _, kv := range resp.Kvs {
		if n := seen[string(kv.Key)]; n != 1 {
			t.Fatalf("%s is on the feed %d times, want once", kv.Key, n)
		}
	}

	// The watch saw every service created exactly once, in order.
	var evs []*configv1.WatchEvent
	select {
	case evs = <-watched:
	case err := <-watchErr:
		t.Fatalf("watch: %v", err)
	}
	names := map[string]bool{}
	for i, e := range evs {
		var o struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(e.GetObject(), &o); err != nil {
			t.Fatal(err)
		}
		if e.GetType() != configv1.WatchEventType_WATCH_EVENT_TYPE_ADDED || names[o.Metadata.Name] {
			t.Fatalf("watch event %d: %v %s (seen before: %v)", i, e.GetType(), o.Metadata.Name, names[o.Metadata.Name])
		}
		if i > 0 && e.GetRevision() <= evs[i-1].GetRevision() {
			t.Fatalf("watch event %d at %d does not follow %d", i, e.GetRevision(), evs[i-1].GetRevision())
		}
		names[o.Metadata.Name] = true
	}
}

// listAndWatch lists the services of namespace ha, watches from the list's
// revision and proves the watch live with a probe object, re-listing on
// OutOfRange as a client must: a replica's watch cache may still reset once
// right after the very first leader's start marker.
func listAndWatch(t *testing.T, ctx context.Context, c, writer configv1.ConfigServiceClient) configv1.ConfigService_WatchClient {
	t.Helper()
	ref := &configv1.ObjectRef{Kind: "Service", Namespace: "ha"}
	for attempt := range 5 {
		list, err := c.List(ctx, &configv1.ListRequest{Ref: ref})
		if err != nil {
			t.Fatal(err)
		}
		stream, err := c.Watch(ctx, &configv1.WatchRequest{Ref: ref, AfterRevision: list.GetRevision()})
		if err != nil {
			t.Fatal(err)
		}
		probe := fmt.Sprintf("probe-%d", attempt)
		if _, err := writer.Apply(ctx, &configv1.ApplyRequest{Manifest: []byte("apiVersion: v1\nkind: Service\nmetadata: {name: " + probe + ", namespace: ha}\nspec: {ports: [{port: 80}]}\n")}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if status.Code(err) == codes.OutOfRange {
			t.Logf("watch must re-list: %v", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if evs := resp.GetEvents(); len(evs) != 1 || !strings.Contains(string(evs[0].GetObject()), `"name":"`+probe+`"`) {
			t.Fatalf("first watch response: %v", resp)
		}
		return stream
	}
	t.Fatal("the watch kept asking to re-list")
	return nil
}

// readFeed reads the whole stream, checking order, and counts puts per key.
func readFeed(t *testing.T, js jetstream.JetStream) (map[string]int, changefeed.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "AMBIT_CHANGES")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var last changefeed.Position
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		var env changefeedv1.Envelope
		if err := proto.Unmarshal(msg.Data, &env); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		pos := changefeed.Position{Revision: env.GetPosition().GetRevision(), Index: env.GetPosition().GetIndex()}
		if pos.Compare(last) <= 0 {
			t.Fatalf("message %d at %v does not follow %v", seq, pos, last)
		}
		last = pos
		if env.GetType() == changefeedv1.EventType_EVENT_TYPE_PUT {
			seen[env.GetKey()]++
		}
	}
	return seen, last
}
