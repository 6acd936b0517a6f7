// Package keystore keeps the CA's key material in etcd, sealed, and shares
// it among replicas.
//
// Everything lives in one JSON document at /ambit/v1/_ca/state (outside the
// resource prefix, so it never reaches the change feed): the trusted
// authorities (certificate chains and AES-256-GCM–sealed PKCS#8 keys), the
// active one, the rotation in progress, the bundle version and the key that
// signs node bearer tokens. The key-encryption key (KEK) comes from a file
// or the environment and never reaches etcd; each sealed key is bound to
// its role and id through GCM's additional data, and the document records
// the KEK's id so a replica with the wrong KEK fails with a clear error.
//
// First boot: every replica that finds no document prepares one (generated
// root, or the operator's files) and tries to create it in a transaction
// guarded by "the key does not exist"; exactly one transaction succeeds and
// the others read the winner's, so replicas started together end with one
// root. Every later change is a compare-and-swap on the document's mod
// revision (Update), and every replica watches the key, so all of them
// switch authority at the same etcd revision.
package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configures Open.
type Options struct {
	Client      *clientv3.Client
	KEK         *KEK
	TrustDomain spiffeid.TrustDomain
	// Initial returns the authority to store when etcd holds none. It may
	// run on several replicas at once; only one result is kept.
	Initial func() (*Material, error)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Store is the replica's view of the shared state.
type Store struct {
	o       Options
	log     *slog.Logger
	current atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{}
}

// ErrConflict is returned by an Update function to ask for a retry; Update
// also retries on its own when another replica wrote in between.
var ErrConflict = errors.New("keystore: concurrent update")

// Open loads the state, creating it on first boot.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Client == nil || o.KEK == nil || o.TrustDomain.IsZero() || o.Initial == nil {
		return nil, errors.New("keystore: Client, KEK, TrustDomain and Initial are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{o: o, log: o.Logger, changed: make(chan struct{})}
	resp, err := o.Client.Get(ctx, StateKey)
	if err != nil {
		return nil, fmt.Errorf("keystore: read state: %w", err)
	}
	if len(resp.Kvs) == 0 {
		if err := s.create(ctx); err != nil {
			return nil, err
		}
		if resp, err = o.Client.Get(ctx, StateKey); err != nil {
			return nil, fmt.Errorf("keystore: read state: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil, errors.New("keystore: state vanished right after creation")
		}
	}
	snap, err := decode(o.KEK, o.TrustDomain, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return nil, err
	}
	s.current.Store(snap)
	return s, nil
}

// create stores a first state unless one appeared meanwhile.
func (s *Store) create(ctx context.Context) error {
	m, err := s.o.Initial()
	if err != nil {
		return fmt.Errorf("keystore: initial authority: %w", err)
	}
	st, err := NewState(s.o.KEK, s.o.TrustDomain, m, s.o.Now())
	if err != nil {
		return err
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	resp, err := s.o.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(StateKey), "=", 0)).
		Then(clientv3.OpPut(StateKey, string(raw))).
		Commit()
	if err != nil {
		return fmt.Errorf("keystore: create state: %w", err)
	}
	if resp.Succeeded {
		s.log.Info("stored the CA's first authority", "authority", st.Active, "origin", m.Origin,
			"root_not_after", m.Root().NotAfter)
	} else {
		s.log.Info("another replica stored the first authority; using it")
	}
	return nil
}

// Current is the latest state this replica knows.
func (s *Store) Current() *Snapshot { return s.current.Load() }

// Changed returns a channel closed at the next state change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// install makes snap current if it is newer.
func (s *Store) install(snap *Snapshot) bool {
	for {
		old := s.current.Load()
		if old != nil && old.Revision >= snap.Revision {
			return false
		}
		if s.current.CompareAndSwap(old, snap) {
			break
		}
	}
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return true
}

// Refresh reads the state from etcd (linearizable) and installs it.
func (s *Store) Refresh(ctx context.Context) (*Snapshot, error) {
	resp, err := s.o.Client.Get(ctx, StateKey)
	if err != nil {
		return nil, fmt.Errorf("keystore: read state: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errors.New("keystore: state was deleted")
	}
	snap, err := decode(s.o.KEK, s.o.TrustDomain, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return nil, err
	}
	s.install(snap)
	return s.Current(), nil
}

// Update applies fn to a copy of the latest state and stores the result if
// nobody wrote in between, retrying otherwise. fn may return ErrSkip to
// leave the state unchanged. It returns the state now current.
func (s *Store) Update(ctx context.Context, fn func(st *State) error) (*Snapshot, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if _, err := s.Refresh(ctx); err != nil {
				return nil, err
			}
		}
		cur := s.Current()
		st := cloneState(cur.State)
		if err := fn(&st); err != nil {
			if errors.Is(err, ErrSkip) {
				return cur, nil
			}
			if errors.Is(err, ErrConflict) && attempt < 20 {
				continue
			}
			return nil, err
		}
		raw, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		// Decode before writing: never store what cannot be read back.
		if _, err := decode(s.o.KEK, s.o.TrustDomain, raw, cur.Revision+1); err != nil {
			return nil, fmt.Errorf("keystore: refusing to store an unreadable state: %w", err)
		}
		resp, err := s.o.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(StateKey), "=", cur.Revision)).
			Then(clientv3.OpPut(StateKey, string(raw))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("keystore: update state: %w", err)
		}
		if !resp.Succeeded {
			if attempt >= 20 {
				return nil, fmt.Errorf("keystore: update state: %w after %d attempts", ErrConflict, attempt+1)
			}
			continue
		}
		snap, err := decode(s.o.KEK, s.o.TrustDomain, raw, resp.Header.Revision)
		if err != nil {
			return nil, err
		}
		s.install(snap)
		return s.Current(), nil
	}
}

// ErrSkip, returned by an Update function, leaves the state as it is.
var ErrSkip = errors.New("keystore: nothing to change")

func cloneState(st State) State {
	raw, _ := json.Marshal(st)
	var out State
	_ = json.Unmarshal(raw, &out)
	return out
}

// Run watches the state key and installs every change until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		rev := s.Current().Revision
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.o.Client.Watch(wctx, StateKey, clientv3.WithRev(rev+1))
		err := s.consume(ctx, wch)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("state watch interrupted; re-reading", "error", err)
		if _, err := s.Refresh(ctx); err != nil {
			s.log.Warn("re-reading state failed", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

func (s *Store) consume(ctx context.Context, wch clientv3.WatchChan) error {
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				s.log.Error("the CA state was deleted from etcd; keeping the last known state")
				continue
			}
			snap, err := decode(s.o.KEK, s.o.TrustDomain, ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				s.log.Error("ignoring an unreadable CA state", "revision", ev.Kv.ModRevision, "error", err)
				continue
			}
			if s.install(snap) {
				s.log.Info("CA state changed", "revision", snap.Revision, "active", snap.State.Active,
					"bundle_version", snap.State.BundleVersion, "phase", snap.State.Rotation.Phase)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}
