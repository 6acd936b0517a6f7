package changefeed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions sizes the AMBIT_CHANGES stream. Retention must cover the
// longest consumer outage that should be bridged by replay instead of a
// re-list; a consumer that falls further behind notices the gap and
// re-lists, so undersizing costs etcd load, never correctness.
type StreamOptions struct {
	// MaxAge drops messages older than this (default 24h).
	MaxAge time.Duration
	// MaxBytes caps the stream's size, oldest messages go first
	// (default 1 GiB; -1 unlimited).
	MaxBytes int64
	// Replicas is the JetStream replica count: 1 for a single server
	// (devstack), 3 in production (default 1).
	Replicas int
	// Duplicates is the Nats-Msg-Id deduplication window (default 2m,
	// capped at MaxAge). Fencing, not deduplication, is what keeps leaders
	// apart; the window only absorbs a client's blind retry.
	Duplicates time.Duration
}

func (o *StreamOptions) setDefaults() {
	if o.MaxAge == 0 {
		o.MaxAge = 24 * time.Hour
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Duplicates == 0 {
		o.Duplicates = 2 * time.Minute
	}
	if o.Duplicates > o.MaxAge {
		o.Duplicates = o.MaxAge
	}
}

func (o StreamOptions) validate() error {
	switch {
	case o.MaxAge < 0:
		return errors.New("changefeed: stream MaxAge is negative")
	case o.Replicas < 1 || o.Replicas > 5:
		return fmt.Errorf("changefeed: stream Replicas %d outside 1..5", o.Replicas)
	case o.Duplicates < 0:
		return errors.New("changefeed: stream Duplicates is negative")
	}
	return nil
}

// config is the stream configuration: file storage, limits retention
// (every consumer reads every message; nothing is acked away), discard old,
// direct get enabled so the last message can be read cheaply, and no
// deletes of single messages: the publisher relies on the stream holding
// every message after its first one (purging is allowed; it only causes
// re-lists).
func (o StreamOptions) config() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Ambit change feed: every change under " + ResourcePrefix + " in etcd, in revision order",
		Subjects:    []string{StreamSubjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		MaxAge:      o.MaxAge,
		MaxBytes:    o.MaxBytes,
		MaxMsgs:     -1,
		Replicas:    o.Replicas,
		Duplicates:  o.Duplicates,
		AllowDirect: true,
		DenyDelete:  true,
	}
}

// EnsureStream creates AMBIT_CHANGES or updates its limits; it is
// idempotent. The publisher calls it whenever it (re)takes the lead, so a
// NATS server that lost its store gets the stream back.
func EnsureStream(ctx context.Context, js jetstream.JetStream, opts StreamOptions) (jetstream.Stream, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, opts.config())
	if err != nil {
		return nil, fmt.Errorf("changefeed: ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}

// isNotFound reports JetStream's "no such message/stream" answers.
func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// isWrongLastSequence reports a publish rejected by its
// Nats-Expected-Last-Sequence fence.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}
