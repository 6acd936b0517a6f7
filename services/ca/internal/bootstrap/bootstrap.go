// Package bootstrap manages join tokens: the one-time credential with which
// a node (or a control-plane service) obtains its first certificate.
//
// A token is "ambit-join-" followed by 32 random bytes in base64url: 256
// bits, so a fast hash is enough to store it. Only its SHA-256 is kept, at
// /ambit/v1/_ca/jointokens/<hex sha256>, with the identity it yields, its
// expiry and who created it, under an etcd lease that outlives the expiry
// by an hour so etcd garbage-collects it.
//
// Redemption is two steps so that a bad CSR does not burn the token:
// Lookup reads the record (unknown, used and expired tokens are refused
// with distinct reasons), the caller checks the CSR, and Consume marks the
// record used in a transaction guarded by the record's mod revision. Of
// two concurrent redemptions exactly one transaction succeeds. The record
// stays, marked used, until its lease ends, so a replayed token is told
// "already used" rather than "unknown".
package bootstrap

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// Prefix holds the token records.
const Prefix = keystore.Prefix + "jointokens/"

// TokenPrefix starts every join token, so one is recognizable in a config
// file or a leaked log (and can be scanned for).
const TokenPrefix = "ambit-join-"

// Lifetimes.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 24 * time.Hour
	// keepUsed is how long a record outlives its expiry.
	keepUsed = time.Hour
)

// Denial reasons.
const (
	ReasonMalformed = "join_token_malformed"
	ReasonUnknown   = "join_token_unknown"
	ReasonUsed      = "join_token_used"
	ReasonExpired   = "join_token_expired"
)

// Record is a stored token.
type Record struct {
	Identity  string    `json:"identity"`
	ExpiresAt time.Time `json:"expiresAt"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"`
	UsedAt    time.Time `json:"usedAt,omitzero"`
}

// Store creates and redeems tokens.
type Store struct {
	client *clientv3.Client
	now    func() time.Time
}

// NewStore returns a store; now may be nil (time.Now).
func NewStore(client *clientv3.Client, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{client: client, now: now}
}

// Create makes a token for id valid for ttl (0: DefaultTTL).
func (s *Store) Create(ctx context.Context, id spiffe.Identity, ttl time.Duration, createdBy string) (string, time.Time, error) {
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < time.Second || ttl > MaxTTL:
		return "", time.Time{}, fault.New(fault.InvalidArgument, "join_token_ttl", "join token ttl %s outside 1s..%s", ttl, MaxTTL)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, err
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := s.now().UTC()
	rec := Record{Identity: id.String(), ExpiresAt: now.Add(ttl), CreatedAt: now, CreatedBy: createdBy}
	val, err := json.Marshal(rec)
	if err != nil {
		return "", time.Time{}, err
	}
	lease, err := s.client.Grant(ctx, int64((ttl + keepUsed).Seconds()))
	if err != nil {
		return "", time.Time{}, fault.Wrap(fault.Unavailable, "etcd", err, "store join token")
	}
	key := Prefix + hashToken(token)
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Commit()
	if err != nil {
		return "", time.Time{}, fault.Wrap(fault.Unavailable, "etcd", err, "store join token")
	}
	if !resp.Succeeded {
		return "", time.Time{}, fmt.Errorf("bootstrap: token hash collision")
	}
	return token, rec.ExpiresAt, nil
}

// Pending is a token found valid and not yet consumed.
type Pending struct {
	Record   Record
	Identity spiffe.Identity
	key      string
	rev      int64
}

// Lookup finds a valid, unused token without consuming it.
func (s *Store) Lookup(ctx context.Context, token string) (*Pending, error) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return nil, fault.New(fault.PermissionDenied, ReasonMalformed, "join token is malformed (want %s...)", TokenPrefix)
	}
	if b, err := base64.RawURLEncoding.DecodeString(rest); err != nil || len(b) != 32 {
		return nil, fault.New(fault.PermissionDenied, ReasonMalformed, "join token is malformed")
	}
	key := Prefix + hashToken(token)
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, "etcd", err, "read join token")
	}
	if len(resp.Kvs) == 0 {
		return nil, fault.New(fault.PermissionDenied, ReasonUnknown, "join token is unknown (never issued, or expired and removed)")
	}
	var rec Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("bootstrap: decode token record: %w", err)
	}
	if !rec.UsedAt.IsZero() {
		return nil, fault.New(fault.PermissionDenied, ReasonUsed, "join token was already used at %s", rec.UsedAt.Format(time.RFC3339))
	}
	if !s.now().Before(rec.ExpiresAt) {
		return nil, fault.New(fault.PermissionDenied, ReasonExpired, "join token expired at %s", rec.ExpiresAt.Format(time.RFC3339))
	}
	id, err := spiffe.Parse(rec.Identity)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: stored identity: %w", err)
	}
	return &Pending{Record: rec, Identity: id, key: key, rev: resp.Kvs[0].ModRevision}, nil
}

// Consume marks the token used; it fails if anyone consumed it since Lookup.
func (s *Store) Consume(ctx context.Context, p *Pending) error {
	rec := p.Record
	rec.UsedAt = s.now().UTC()
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(p.key), "=", p.rev)).
		Then(clientv3.OpPut(p.key, string(val), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return fault.Wrap(fault.Unavailable, "etcd", err, "consume join token")
	}
	if !resp.Succeeded {
		return fault.New(fault.PermissionDenied, ReasonUsed, "join token was already used")
	}
	return nil
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
