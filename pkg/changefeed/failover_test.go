package changefeed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// history records etcd's own account of every resource event from a
// revision on, with positions computed independently of the publisher.
type history struct {
	mu     sync.Mutex
	events []applied
	rev    int64
	r      *runner
}

func watchHistory(t *testing.T, cli *clientv3.Client, from int64) *history {
	t.Helper()
	h := &history{}
	h.r = run(func(ctx context.Context) error {
		for resp := range cli.Watch(ctx, ResourcePrefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV()) {
			if err := resp.Err(); err != nil {
				return fmt.Errorf("history watch: %w", err)
			}
			h.mu.Lock()
			idx := map[int64]int32{}
			for _, ev := range resp.Events {
				if _, err := ParseKey(string(ev.Kv.Key)); err != nil {
					continue
				}
				a := applied{Pos: Position{Revision: ev.Kv.ModRevision, Index: idx[ev.Kv.ModRevision]}, Key: string(ev.Kv.Key)}
				idx[ev.Kv.ModRevision]++
				if ev.Type == mvccpb.DELETE {
					a.Type = EventDelete
					if ev.PrevKv != nil {
						a.Value = string(ev.PrevKv.Value)
					}
				} else {
					a.Type, a.Value = EventPut, string(ev.Kv.Value)
				}
				h.events = append(h.events, a)
			}
			h.rev = max(h.rev, resp.Header.Revision)
			h.mu.Unlock()
		}
		return nil
	})
	t.Cleanup(func() { _ = h.r.stop(t) })
	return h
}

// after returns the recorded events after revision rev of the given kinds
// (all when none given).
func (h *history) after(rev int64, kinds ...GroupKind) []applied {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []applied
	for _, e := range h.events {
		if e.Pos.Revision <= rev {
			continue
		}
		if len(kinds) > 0 {
			r, _ := ParseKey(e.Key)
			if !slices.Contains(kinds, r.GroupKind()) {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

func (h *history) seen(rev int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events) > 0 && h.events[len(h.events)-1].Pos.Revision >= rev
}

// writeLoad writes random puts, deletes and three-key transactions over
// kinds until n events have been caused, from several goroutines, at most
// rate operations per second (0: unlimited).
func writeLoad(ctx context.Context, cli *clientv3.Client, n int64, workers, rate int, kinds []GroupKind, count *atomic.Int64) error {
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Second / time.Duration(rate))
		defer tk.Stop()
		tick = tk.C
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			key := func() string {
				gk := kinds[rng.IntN(len(kinds))]
				return ref(gk, fmt.Sprintf("ns%d", rng.IntN(2)), fmt.Sprintf("obj-%d", rng.IntN(100)))
			}
			for i := 0; count.Load() < n; i++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				val := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				var err error
				switch op := rng.IntN(100); {
				case op < 70:
					_, err = cli.Put(ctx, key(), val)
					if err == nil {
						count.Add(1)
					}
				case op < 85:
					var resp *clientv3.DeleteResponse
					resp, err = cli.Delete(ctx, key())
					if err == nil {
						count.Add(resp.Deleted)
					}
				default:
					keys := map[string]bool{}
					for len(keys) < 3 {
						keys[key()] = true
					}
					var ops []clientv3.Op
					for k := range keys {
						ops = append(ops, clientv3.OpPut(k, val))
					}
					_, err = cli.Txn(ctx).Then(ops...).Commit()
					if err == nil {
						count.Add(int64(len(ops)))
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// checkSequence asserts a consumer applied exactly etcd's events after its
// listing, in order.
func checkSequence(t *testing.T, c *testConsumer, h *history) {
	t.Helper()
	got := c.rec.appliedEvents()
	want := h.after(c.Status().ListRevision, c.opts.Kinds...)
	if len(got) > len(want) {
		want = want[:len(want):len(want)]
	}
	n := min(len(got), len(want))
	for i := range n {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d = %v %q, want %v %q", c.opts.Name, i, got[i], got[i].Value, want[i], want[i].Value)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: applied %d events, etcd has %d", c.opts.Name, len(got), len(want))
	}
}

// TestFailover: 10,000 writes reach two consumers (one of all kinds, one
// limited to the written kinds) exactly once and in etcd's order while the
// leader is killed twice mid-stream; each failover completes within
// 2 × SessionTTL and no consumer has to re-list.
func TestFailover(t *testing.T) {
	const (
		ttl    = 2 * time.Second
		writes = 10000
	)
	s := startStack(t)
	cli := newEtcd(t, s)
	_, rev0 := etcdState(t, cli)
	h := watchHistory(t, cli, rev0+1)

	var pubs []*testPublisher
	for i := range 3 {
		pubs = append(pubs, startPublisher(t, s, PublisherOptions{ID: fmt.Sprintf("p%d", i), SessionTTL: ttl}))
	}
	kinds := []GroupKind{kindService, kindPod, kindServiceEntry}
	all := startConsumer(t, s, ConsumerOptions{Name: "all"})
	some := startConsumer(t, s, ConsumerOptions{Name: "kinds", Kinds: kinds})
	leader := func() *testPublisher {
		var l *testPublisher
		for _, p := range pubs {
			if p.IsLeader() {
				if l != nil {
					return nil
				}
				l = p
			}
		}
		return l
	}
	eventually(t, 20*time.Second, "a leader and synced consumers", func() bool {
		return leader() != nil && all.Status().Synced && some.Status().Synced
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var count atomic.Int64
	werr := make(chan error, 1)
	go func() { werr <- writeLoad(ctx, cli, writes, 4, 1000, kinds, &count) }()

	for _, at := range []int64{writes / 3, 2 * writes / 3} {
		eventually(t, time.Minute, fmt.Sprintf("%d writes", at), func() bool { return count.Load() >= at })
		old := leader()
		if old == nil {
			t.Fatal("no single leader")
		}
		published := map[*testPublisher]uint64{}
		for _, p := range pubs {
			published[p] = p.Status().Published
		}
		killedAt, killed := count.Load(), time.Now()
		old.kill(t)
		var next *testPublisher
		eventually(t, 4*ttl, "a new leader publishing", func() bool {
			for _, p := range pubs {
				if p != old && p.IsLeader() && p.Status().Published > published[p] {
					next = p
					return true
				}
			}
			return false
		})
		took := time.Since(killed)
		t.Logf("killed %s at %d writes; %s leads and published after %s (epoch %d → %d)",
			old.opts.ID, killedAt, next.opts.ID, took.Round(time.Millisecond), old.Status().Epoch, next.Status().Epoch)
		if took > 2*ttl {
			t.Errorf("failover took %s, more than 2 × TTL (%s)", took, 2*ttl)
		}
		if next.Status().Epoch <= old.Status().Epoch {
			t.Errorf("epoch did not increase: %d → %d", old.Status().Epoch, next.Status().Epoch)
		}
		pubs = slices.DeleteFunc(pubs, func(p *testPublisher) bool { return p == old })
	}
	if err := <-werr; err != nil {
		t.Fatalf("writes: %v", err)
	}
	t.Logf("%d events written", count.Load())
	last := converge(t, cli, time.Minute, all, some)
	eventually(t, 10*time.Second, "history complete", func() bool { return h.seen(last) })
	for _, c := range []*testConsumer{all, some} {
		checkSequence(t, c, h)
		if st := c.Status(); len(st.Relists) != 1 {
			t.Errorf("%s re-listed: %v", c.opts.Name, st.Relists)
		}
	}
	if n := len(h.after(rev0)); n < writes {
		t.Errorf("history holds %d events, want ≥ %d", n, writes)
	}
}
