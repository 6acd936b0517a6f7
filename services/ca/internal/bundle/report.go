package bundle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// ReplicaPrefix holds one report per live replica.
const ReplicaPrefix = keystore.Prefix + "replicas/"

// Report is what a replica writes about its watchers.
type Report struct {
	Replica string `json:"replica"`
	Stats
	UpdatedAt time.Time `json:"updatedAt"`
}

// Reporter keeps this replica's report in etcd, under a lease, rewriting
// it whenever the Broadcaster's counts change.
type Reporter struct {
	Etcd    *clientv3.Client
	Replica string
	Source  *Broadcaster
	// LeaseTTL bounds how long a dead replica's report survives (default 10s).
	LeaseTTL time.Duration
	Logger   *slog.Logger
}

// Run writes reports until ctx ends, then deletes its report.
func (r *Reporter) Run(ctx context.Context) error {
	ttl := r.LeaseTTL
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := ReplicaPrefix + r.Replica
	for ctx.Err() == nil {
		err := r.session(ctx, key, ttl)
		if ctx.Err() != nil {
			break
		}
		log.Warn("replica report interrupted; retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = r.Etcd.Delete(dctx, key)
	return nil
}

func (r *Reporter) session(ctx context.Context, key string, ttl time.Duration) error {
	lease, err := r.Etcd.Grant(ctx, int64(ttl.Seconds()))
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := r.Etcd.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	for {
		rep := Report{Replica: r.Replica, Stats: r.Source.Stats(), UpdatedAt: time.Now().UTC()}
		val, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		if _, err := r.Etcd.Put(ctx, key, string(val), clientv3.WithLease(lease.ID)); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		for drained := false; !drained; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case _, ok := <-ka:
				if !ok {
					return fmt.Errorf("lease %x lost", lease.ID)
				}
			case <-r.Source.StatsChanged():
				drained = true
			}
		}
	}
}

// Distribution sums the reports of the live replicas for version v.
type Distribution struct {
	Replicas        int
	ReplicasCurrent int // serving v or later
	Watchers        int
	WatchersAcked   int // acknowledged v or later
}

// Complete reports whether every replica serves v and every watcher
// acknowledged it.
func (d Distribution) Complete() bool {
	return d.ReplicasCurrent == d.Replicas && d.WatchersAcked == d.Watchers
}

// ReadDistribution reads every live replica's report (linearizable).
func ReadDistribution(ctx context.Context, etcd *clientv3.Client, v uint64) (Distribution, error) {
	resp, err := etcd.Get(ctx, ReplicaPrefix, clientv3.WithPrefix())
	if err != nil {
		return Distribution{}, fmt.Errorf("read replica reports: %w", err)
	}
	var d Distribution
	for _, kv := range resp.Kvs {
		var rep Report
		if err := json.Unmarshal(kv.Value, &rep); err != nil {
			continue
		}
		d.Replicas++
		if rep.ServedVersion >= v {
			d.ReplicasCurrent++
		}
		d.Watchers += rep.Watchers
		d.WatchersAcked += rep.AckedAtLeast(v)
	}
	return d, nil
}
