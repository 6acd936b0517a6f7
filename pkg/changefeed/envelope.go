package changefeed

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"
)

// Position identifies one event in etcd's history: the revision of its
// transaction and its index among that transaction's resource events.
type Position struct {
	Revision int64
	Index    int32
}

// Compare orders positions by revision, then index: -1, 0 or +1.
func (p Position) Compare(q Position) int {
	switch {
	case p.Revision < q.Revision:
		return -1
	case p.Revision > q.Revision:
		return 1
	case p.Index < q.Index:
		return -1
	case p.Index > q.Index:
		return 1
	}
	return 0
}

// IsZero reports whether p is unset.
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string { return fmt.Sprintf("%d.%d", p.Revision, p.Index) }

func positionFromProto(p *changefeedv1.Position) Position {
	if p == nil {
		return Position{}
	}
	return Position{Revision: p.GetRevision(), Index: p.GetIndex()}
}

func (p Position) proto() *changefeedv1.Position {
	if p.IsZero() {
		return nil
	}
	return &changefeedv1.Position{Revision: p.Revision, Index: p.Index}
}

// msgID is the Nats-Msg-Id of an event: revision and key, unique per event
// because a transaction cannot touch a key twice. Markers use their
// revision and a name no key can have.
func msgID(rev int64, key string) string {
	return strconv.FormatInt(rev, 10) + " " + key
}

func resyncMsgID(rev int64) string { return msgID(rev, "resync") }

// decodeEnvelope decodes leniently: unknown fields (from a newer publisher)
// are kept in the message and otherwise ignored.
func decodeEnvelope(b []byte) (*changefeedv1.Envelope, error) {
	env := &changefeedv1.Envelope{}
	if err := (proto.UnmarshalOptions{}).Unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("changefeed: decode envelope: %w", err)
	}
	return env, nil
}
