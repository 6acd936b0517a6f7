package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Member is one replica found on the bus.
type Member struct {
	Component string `json:"component"`
	Replica   string `json:"replica"`
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Address   string `json:"address,omitempty"`
	Node      string `json:"node,omitempty"`
	// Stats is what the replica reported on its status endpoint (load,
	// feed lag, ...), or nil when it did not answer in time.
	Stats json.RawMessage `json:"stats,omitempty"`
}

// Discover asks every Ambit micro service on nc for its info ($SRV.INFO),
// collecting the answers that arrive within wait, then asks each replica
// for its status. Members come sorted by component and replica.
func Discover(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]Member, error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(micro.APIPrefix+".INFO", inbox, nil); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	deadline := time.Now().Add(wait)
	var members []Member
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		msg, err := sub.NextMsg(left)
		if err != nil {
			break // timeout: everyone who answers in time has answered
		}
		var info micro.Info
		if json.Unmarshal(msg.Data, &info) != nil || !strings.HasPrefix(info.Name, "ambit-") {
			continue
		}
		members = append(members, Member{
			Component: strings.TrimPrefix(info.Name, "ambit-"),
			Replica:   info.Metadata[MetaReplica],
			Version:   info.Metadata[MetaVersion],
			Commit:    info.Metadata[MetaCommit],
			Address:   info.Metadata[MetaAddress],
			Node:      info.Metadata[MetaNode],
		})
	}
	for i := range members {
		members[i].Stats = status(ctx, nc, members[i], wait)
	}
	slices.SortFunc(members, func(a, b Member) int {
		if c := strings.Compare(a.Component, b.Component); c != 0 {
			return c
		}
		return strings.Compare(a.Replica, b.Replica)
	})
	return members, nil
}

// status asks one replica for its stats; nil when it does not answer.
func status(ctx context.Context, nc *nats.Conn, m Member, wait time.Duration) json.RawMessage {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, StatusSubject(m.Component, m.Replica), nil)
	if err != nil || !json.Valid(msg.Data) {
		return nil
	}
	return msg.Data
}
