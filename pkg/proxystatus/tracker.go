// Package proxystatus carries distribution status (DESIGN §3): which proxy
// acknowledged or rejected which change-feed revision. xds replicas publish
// batches of ProxyReports on ambit.status.proxies.<replica>; config replicas
// aggregate them with a Tracker to answer "has revision R reached every
// proxy" for `ambitctl status` and `ambitctl wait --for=converged`.
//
// Core NATS (not JetStream) is enough: every replica re-sends its full set
// periodically, so a config replica that starts late or misses a batch is
// whole again after one full interval, and a replica that stops sending is
// forgotten after ExpireAfter.
package proxystatus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
)

// SubjectPrefix is where replicas publish; Subject names one replica's.
const SubjectPrefix = "ambit.status.proxies."

// Subject is the subject of one xds replica's batches.
func Subject(replica string) string { return SubjectPrefix + changefeed.EscapeToken(replica) }

// Proxy is what a Tracker knows of one proxy.
type Proxy struct {
	ID             string
	Replica        string
	Component      string
	Version        string
	AckedRevision  int64
	NackedRevision int64
	NackError      string
}

// Distribution is how far one revision has spread.
type Distribution struct {
	Revision  int64
	Total     int
	Converged int
	// Pending have not acknowledged the revision yet; Rejected reported an
	// error for it (or a later revision) and have not acknowledged since.
	Pending  []Proxy
	Rejected []Proxy
}

// Done reports whether every known proxy has the revision.
func (d Distribution) Done() bool { return len(d.Pending) == 0 && len(d.Rejected) == 0 }

// Tracker aggregates the batches of every replica.
type Tracker struct {
	expireAfter time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu       sync.Mutex
	replicas map[string]*replicaState
}

type replicaState struct {
	lastSeen time.Time
	sequence uint64
	proxies  map[string]*statusv1.ProxyReport
}

// TrackerOptions configure a Tracker.
type TrackerOptions struct {
	// ExpireAfter forgets a replica that sent nothing for this long
	// (default 30s: three of the default full-batch intervals).
	ExpireAfter time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// NewTracker returns an empty Tracker.
func NewTracker(o TrackerOptions) *Tracker {
	if o.ExpireAfter <= 0 {
		o.ExpireAfter = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{expireAfter: o.ExpireAfter, now: o.Now, log: o.Logger, replicas: map[string]*replicaState{}}
}

// Ingest applies one batch.
func (t *Tracker) Ingest(b *statusv1.ProxyReportBatch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.replicas[b.GetReplica()]
	switch {
	case rs == nil:
		rs = &replicaState{proxies: map[string]*statusv1.ProxyReport{}}
		t.replicas[b.GetReplica()] = rs
	case b.GetFull() || b.GetSequence() < rs.sequence:
		// A full batch replaces the replica's set; a smaller sequence means
		// the replica restarted, and what it had before is gone.
		rs.proxies = map[string]*statusv1.ProxyReport{}
	}
	rs.lastSeen = t.now()
	rs.sequence = b.GetSequence()
	for _, r := range b.GetReports() {
		if r.GetDisconnected() {
			delete(rs.proxies, r.GetProxyId())
			continue
		}
		rs.proxies[r.GetProxyId()] = r
	}
}

// Proxies lists every live proxy, sorted by id.
func (t *Tracker) Proxies() []Proxy {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Proxy
	cutoff := t.now().Add(-t.expireAfter)
	for name, rs := range t.replicas {
		if rs.lastSeen.Before(cutoff) {
			delete(t.replicas, name)
			continue
		}
		for _, r := range rs.proxies {
			out = append(out, Proxy{
				ID: r.GetProxyId(), Replica: name, Component: r.GetComponent(), Version: r.GetVersion(),
				AckedRevision: r.GetAckedRevision(), NackedRevision: r.GetNackedRevision(), NackError: r.GetNackError(),
			})
		}
	}
	slices.SortFunc(out, func(a, b Proxy) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Status reports how far revision rev has spread.
func (t *Tracker) Status(rev int64) Distribution {
	d := Distribution{Revision: rev}
	for _, p := range t.Proxies() {
		d.Total++
		switch {
		case p.AckedRevision >= rev:
			d.Converged++
		case p.NackedRevision >= rev || (p.NackError != "" && p.NackedRevision > p.AckedRevision):
			d.Rejected = append(d.Rejected, p)
		default:
			d.Pending = append(d.Pending, p)
		}
	}
	return d
}

// Run subscribes to every replica's batches and feeds them to the tracker
// until ctx ends.
func (t *Tracker) Run(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.Subscribe(SubjectPrefix+"*", func(m *nats.Msg) {
		var b statusv1.ProxyReportBatch
		if err := proto.Unmarshal(m.Data, &b); err != nil {
			t.log.Warn("dropping undecodable proxy status batch", "subject", m.Subject, "error", err)
			return
		}
		t.Ingest(&b)
	})
	if err != nil {
		return fmt.Errorf("proxystatus: subscribe: %w", err)
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}
