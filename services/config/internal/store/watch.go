package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/changefeed"
)

// EventType is what happened to an object.
type EventType int

const (
	Added EventType = iota + 1
	Modified
	Deleted
)

// Event is one change seen by Watch.
type Event struct {
	Type EventType
	// Object is the new object, or the last one for Deleted.
	Object Stored
	// Revision is the revision of the change.
	Revision int64
}

// Watch streams changes under prefix (see WatchPrefix) after revision
// afterRev (0: from now) to fn, one etcd response at a time, until ctx ends,
// fn fails or etcd cannot serve the history (ErrExpired when compacted).
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64, fn func([]Event) error) error {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if afterRev > 0 {
		opts = append(opts, clientv3.WithRev(afterRev+1))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.etcd.Watch(wctx, prefix, opts...) {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("%w: revision %d was compacted (oldest is %d); list and watch again", ErrExpired, afterRev, resp.CompactRevision)
			}
			return etcdErr("watch "+prefix, err)
		}
		events := make([]Event, 0, len(resp.Events))
		for _, ev := range resp.Events {
			e, err := s.event(ev)
			if err != nil {
				return err
			}
			events = append(events, e)
		}
		if len(events) > 0 {
			if err := fn(events); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: watch of %s ended", ErrUnavailable, prefix)
}

func (s *Store) event(ev *clientv3.Event) (Event, error) {
	key := string(ev.Kv.Key)
	if ev.Type == mvccpb.DELETE {
		if ev.PrevKv == nil {
			return Event{}, fmt.Errorf("watch: delete of %s without its previous value", key)
		}
		st, err := s.decode(key, ev.PrevKv.Value, ev.Kv.ModRevision)
		if err != nil {
			return Event{}, err
		}
		return Event{Type: Deleted, Object: *st, Revision: ev.Kv.ModRevision}, nil
	}
	st, err := s.decode(key, ev.Kv.Value, ev.Kv.ModRevision)
	if err != nil {
		return Event{}, err
	}
	t := Modified
	if ev.IsCreate() {
		t = Added
	}
	return Event{Type: t, Object: *st, Revision: ev.Kv.ModRevision}, nil
}

// WatchPrefix is the key prefix of a kind (optionally in one namespace), or
// of every resource when group and kind are empty.
func WatchPrefix(group, kind, namespace string) string {
	if kind == "" {
		return changefeed.ResourcePrefix
	}
	return kindPrefix(group, kind, namespace)
}
