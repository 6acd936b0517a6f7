package store

import (
	"fmt"

	"github.com/ambitmesh/ambit/pkg/changefeed"
)

// EventType is what happened to an object.
type EventType int

const (
	Added EventType = iota + 1
	Modified
	Deleted
)

// Event is one change as the config API's Watch reports it.
type Event struct {
	Type EventType
	// Object is the new object, or the last one for Deleted.
	Object Stored
	// Revision is the revision of the change.
	Revision int64
}

// FeedEvent decodes a change-feed event the way objects are read
// everywhere else (Get, List): the stored JSON with metadata.resourceVersion
// set to the event's revision. A put is Added when it created the key (its
// create revision is its own revision, etcd's IsCreate), else Modified; a
// delete carries the key's last value, stamped with the delete's revision.
// Watch is served from the feed (one etcd watcher for all readers), so this
// is the one place that turns feed events into API objects.
func (s *Store) FeedEvent(ev changefeed.Event) (Event, error) {
	key := ev.Object.Ref.Key()
	rev := ev.Position.Revision
	var typ EventType
	switch ev.Type {
	case changefeed.EventPut:
		typ = Modified
		if ev.Object.CreateRevision == rev {
			typ = Added
		}
	case changefeed.EventDelete:
		typ = Deleted
		if ev.Object.Value == nil {
			return Event{}, fmt.Errorf("feed: delete of %s at revision %d without its previous value", key, rev)
		}
	default:
		return Event{}, fmt.Errorf("feed: event of %s at revision %d has unknown type %v", key, rev, ev.Type)
	}
	st, err := s.decode(key, ev.Object.Value, rev)
	if err != nil {
		return Event{}, err
	}
	return Event{Type: typ, Object: *st, Revision: rev}, nil
}
