package changefeed

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/devstack"
	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"
)

// pauser is a beforePublish hook that, once armed, holds the publish loop
// (as a SIGSTOP or a long GC pause would) until released.
type pauser struct {
	mu       sync.Mutex
	armed    bool
	paused   chan *changefeedv1.Envelope
	released chan struct{}
}

func newPauser() *pauser {
	return &pauser{paused: make(chan *changefeedv1.Envelope, 1), released: make(chan struct{})}
}

func (p *pauser) hook(env *changefeedv1.Envelope) {
	p.mu.Lock()
	armed := p.armed
	p.armed = false
	p.mu.Unlock()
	if !armed {
		return
	}
	p.paused <- env
	<-p.released
}

func (p *pauser) arm() {
	p.mu.Lock()
	p.armed = true
	p.mu.Unlock()
}

// TestSplitBrain: a leader paused right before a publish, whose session is
// then lost, cannot publish a single event once it resumes after a new
// leader has started: the stream's expected-last-sequence fence rejects
// it, it steps down, and consumers see one unbroken feed.
func TestSplitBrain(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	_, rev0 := etcdState(t, cli)
	h := watchHistory(t, cli, rev0+1)

	pause := newPauser()
	old := startPublisher(t, s, PublisherOptions{ID: "old", hooks: publisherHooks{beforePublish: pause.hook}})
	eventually(t, 10*time.Second, "old leads", old.IsLeader)
	c := startConsumer(t, s, ConsumerOptions{Name: "c"})
	eventually(t, 10*time.Second, "consumer synced", func() bool { return c.Status().Synced })
	for i := range 10 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("before-%d", i)), `{}`)
	}
	converge(t, cli, 10*time.Second, c)

	next := startPublisher(t, s, PublisherOptions{ID: "new"})
	pause.arm()
	stuck := ref(kindService, "default", "stuck")
	put(t, cli, stuck, `{"v":1}`)
	var held *changefeedv1.Envelope
	select {
	case held = <-pause.paused:
	case <-time.After(10 * time.Second):
		t.Fatal("old leader never reached the publish")
	}
	if held.GetKey() != stuck {
		t.Fatalf("paused on %s, want %s", held.GetKey(), stuck)
	}
	oldStatus := old.Status()

	// The paused leader's session is lost (its lease revoked, as etcd does
	// when keepalives stop arriving); the candidate takes over and
	// publishes, including the event the old leader holds.
	revokeLeader(t, cli, "old")
	eventually(t, 10*time.Second, "new leads", next.IsLeader)
	for i := range 10 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("after-%d", i)), `{}`)
	}
	converge(t, cli, 10*time.Second, c)
	if !c.rec.has(stuck, `{"v":1}`) {
		t.Fatal("new leader did not publish the held event")
	}
	newFirst := firstSeqOfEpoch(t, s, next.Status().Epoch)

	// Resume the old leader: its publish must be fenced off.
	close(pause.released)
	eventually(t, 10*time.Second, "old leader fenced", func() bool { return old.Status().Fenced > 0 })
	eventually(t, 10*time.Second, "old leader stepped down", func() bool { return !old.IsLeader() })
	if got := old.Status().Published; got != oldStatus.Published {
		t.Errorf("old leader published %d messages after it was paused", got-oldStatus.Published)
	}
	put(t, cli, ref(kindService, "default", "last"), `{}`)
	last := converge(t, cli, 10*time.Second, c)
	if !next.IsLeader() {
		t.Error("new leader lost the lead")
	}

	// Every message from the new leader's first on carries its epoch.
	for seq, env := range streamEnvelopes(t, s) {
		if seq >= newFirst && env.GetLeaderEpoch() != next.Status().Epoch {
			t.Errorf("message %d (%s) has epoch %d after the new leader (epoch %d) started at %d",
				seq, env.GetKey(), env.GetLeaderEpoch(), next.Status().Epoch, newFirst)
		}
	}
	eventually(t, 10*time.Second, "history complete", func() bool { return h.seen(last) })
	checkSequence(t, c, h)
	if st := c.Status(); len(st.Relists) != 1 {
		t.Errorf("consumer re-listed: %v", st.Relists)
	}
}

// revokeLeader revokes the lease of the election key whose value is id.
func revokeLeader(t *testing.T, cli *clientv3.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, ElectionPrefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == id {
			if _, err := cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil {
				t.Fatalf("revoke %s: %v", id, err)
			}
			return
		}
	}
	t.Fatalf("no election key of %s", id)
}

// streamEnvelopes reads every message of the stream: sequence → envelope.
func streamEnvelopes(t *testing.T, s *devstack.Stack) map[uint64]*changefeedv1.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(newNATS(t, s))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]*changefeedv1.Envelope{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		env, err := decodeEnvelope(raw.Data)
		if err != nil {
			t.Fatalf("decode %d: %v", seq, err)
		}
		out[seq] = env
	}
	return out
}

func firstSeqOfEpoch(t *testing.T, s *devstack.Stack, epoch int64) uint64 {
	t.Helper()
	first := uint64(0)
	for seq, env := range streamEnvelopes(t, s) {
		if env.GetLeaderEpoch() == epoch && (first == 0 || seq < first) {
			first = seq
		}
	}
	if first == 0 {
		t.Fatalf("no message of epoch %d", epoch)
	}
	return first
}
