// Package rotation drives root rotation as a state machine persisted in
// the CA's state document (keystore), so every replica follows the same
// phase and any replica can advance it (DESIGN §4):
//
//		IDLE ──Start──▶ ROOT_ADDED ──Advance──▶ SIGNING_NEW ──Advance/auto──▶ IDLE
//
//	  - Start adds the new authority (generated, or the operator's) to the
//	    trusted set and bumps the bundle version; the old one still signs.
//	  - ROOT_ADDED → SIGNING_NEW needs every connected trust-bundle watcher,
//	    on every live replica, to have acknowledged a bundle holding the new
//	    root (bundle.ReadDistribution). Then the new authority signs, and
//	    every replica reissues its own serving certificate from it.
//	  - SIGNING_NEW → IDLE needs the old root's certificates to have expired:
//	    the drop time is the switch plus the longest lifetime the old
//	    authority ever issued (recorded durably before such a certificate is
//	    returned, see RecordIssuedTTL) plus a safety margin for replicas that
//	    saw the switch late. Every replica arms a timer for it and the first
//	    to fire drops the old root; the bundle version is bumped again.
//
// Each transition is a compare-and-swap on the state; Advance names the
// phase the caller expects, so two operators cannot skip a step together.
// force skips the waiting conditions (not the order) for emergencies.
package rotation

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// Phase is a rotation phase.
type Phase string

// Phases, as stored.
const (
	Idle       Phase = keystore.PhaseIdle
	RootAdded  Phase = keystore.PhaseRootAdded
	SigningNew Phase = keystore.PhaseSigningNew
)

func (p Phase) String() string {
	if p == Idle {
		return "idle"
	}
	return string(p)
}

// DefaultDropMargin is added to the drop time.
const DefaultDropMargin = 5 * time.Minute

// Manager runs rotations.
type Manager struct {
	Store       *keystore.Store
	Etcd        *clientv3.Client
	KEK         *keystore.KEK
	TrustDomain spiffeid.TrustDomain
	// RootValidity is the lifetime of generated roots.
	RootValidity time.Duration
	// DropMargin is added to the drop time (default DefaultDropMargin).
	DropMargin time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (m *Manager) margin() time.Duration {
	if m.DropMargin > 0 {
		return m.DropMargin
	}
	return DefaultDropMargin
}

// Start begins a rotation to material (nil: a generated root).
func (m *Manager) Start(ctx context.Context, material *keystore.Material, by string) (*keystore.Snapshot, error) {
	now := m.now()
	if material == nil {
		var err error
		if material, err = keystore.GenerateRoot(m.TrustDomain, m.RootValidity, now); err != nil {
			return nil, err
		}
	}
	rec, err := keystore.SealAuthority(m.KEK, material, now)
	if err != nil {
		return nil, err
	}
	snap, err := m.Store.Update(ctx, func(st *keystore.State) error {
		if Phase(st.Rotation.Phase) != Idle {
			return fault.New(fault.FailedPrecondition, "rotation_in_progress",
				"a rotation is already in progress (phase %s)", Phase(st.Rotation.Phase))
		}
		for _, a := range st.Authorities {
			if a.ID == rec.ID {
				return fault.New(fault.FailedPrecondition, "authority_exists", "authority %s is already trusted", rec.ID)
			}
		}
		st.Authorities = append(st.Authorities, rec)
		st.BundleVersion++
		st.Rotation = keystore.RotationRecord{
			Phase: string(RootAdded), Old: st.Active, New: rec.ID,
			RequiredVersion: st.BundleVersion, StartedAt: now.UTC(),
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.log().InfoContext(ctx, "root rotation started", "by", by, "old", snap.State.Rotation.Old, "new", rec.ID,
		"origin", material.Origin, "bundle_version", snap.State.BundleVersion)
	return snap, nil
}

// Status is the rotation's state plus distribution.
type Status struct {
	Snapshot     *keystore.Snapshot
	Phase        Phase
	Required     uint64
	Distribution bundle.Distribution
	Ready        bool
	WaitingFor   string
}

// Status reads the latest state and the distribution of its bundle.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	snap, err := m.Store.Refresh(ctx)
	if err != nil {
		return Status{}, fault.Wrap(fault.Unavailable, "etcd", err, "read CA state")
	}
	st := Status{Snapshot: snap, Phase: Phase(snap.State.Rotation.Phase), Required: snap.State.BundleVersion}
	if st.Phase == RootAdded {
		st.Required = snap.State.Rotation.RequiredVersion
	}
	st.Distribution, err = bundle.ReadDistribution(ctx, m.Etcd, st.Required)
	if err != nil {
		return Status{}, fault.Wrap(fault.Unavailable, "etcd", err, "read distribution")
	}
	d := st.Distribution
	switch st.Phase {
	case Idle:
		st.WaitingFor = "no rotation in progress"
	case RootAdded:
		st.Ready = d.Complete()
		if !st.Ready {
			st.WaitingFor = fmt.Sprintf("bundle version %d: %d of %d watchers acknowledged it, %d of %d replicas serve it",
				st.Required, d.WatchersAcked, d.Watchers, d.ReplicasCurrent, d.Replicas)
		}
	case SigningNew:
		drop := snap.State.Rotation.DropAt
		st.Ready = !m.now().Before(drop)
		if !st.Ready {
			st.WaitingFor = fmt.Sprintf("certificates of the old root to expire: it is dropped at %s", drop.UTC().Format(time.RFC3339))
		}
	}
	return st, nil
}

// Advance moves from expected to the next phase.
func (m *Manager) Advance(ctx context.Context, expected Phase, force bool, by string) (*keystore.Snapshot, error) {
	cur, err := m.Status(ctx)
	if err != nil {
		return nil, err
	}
	if cur.Phase != expected {
		return nil, fault.New(fault.Aborted, "phase_mismatch", "rotation is in phase %s, not %s", cur.Phase, expected)
	}
	switch {
	case cur.Phase == Idle:
		return nil, fault.New(fault.FailedPrecondition, "no_rotation", "no rotation in progress; start one first")
	case !cur.Ready && !force:
		return nil, fault.New(fault.FailedPrecondition, "not_ready", "cannot advance from %s yet: waiting for %s", cur.Phase, cur.WaitingFor)
	}
	now := m.now()
	rot := cur.Snapshot.State.Rotation
	snap, err := m.Store.Update(ctx, func(st *keystore.State) error {
		if Phase(st.Rotation.Phase) != expected || st.Rotation.New != rot.New {
			return fault.New(fault.Aborted, "phase_mismatch", "rotation changed concurrently (now %s)", Phase(st.Rotation.Phase))
		}
		switch expected {
		case RootAdded:
			old := findAuthority(st, st.Rotation.Old)
			drop := now.Add(time.Duration(old.MaxIssuedTTL)*time.Second + m.margin())
			st.Active = st.Rotation.New
			st.Rotation.Phase = string(SigningNew)
			st.Rotation.SwitchedAt = now.UTC()
			st.Rotation.DropAt = drop.UTC()
		case SigningNew:
			st.Authorities = slices.DeleteFunc(st.Authorities, func(a keystore.AuthorityRecord) bool { return a.ID == st.Rotation.Old })
			st.BundleVersion++
			st.Rotation = keystore.RotationRecord{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.log().InfoContext(ctx, "root rotation advanced", "by", by, "from", expected, "to", Phase(snap.State.Rotation.Phase),
		"forced", force && !cur.Ready, "active", snap.State.Active, "bundle_version", snap.State.BundleVersion)
	return snap, nil
}

func findAuthority(st *keystore.State, id string) keystore.AuthorityRecord {
	for _, a := range st.Authorities {
		if a.ID == id {
			return a
		}
	}
	return keystore.AuthorityRecord{}
}

// RecordIssuedTTL makes sure the state records that authority id issued a
// certificate living ttl, before that certificate is handed out. It writes
// only when ttl exceeds what is recorded, which after the first few
// certificates is never. During SIGNING_NEW a late certificate of the old
// authority pushes the drop time out.
func (m *Manager) RecordIssuedTTL(ctx context.Context, id string, ttl time.Duration) error {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if a := m.Store.Current().ByID[id]; a != nil && a.Record.MaxIssuedTTL >= secs {
		st := m.Store.Current().State.Rotation
		if Phase(st.Phase) != SigningNew || st.Old != id || !m.now().Add(ttl+m.margin()).After(st.DropAt) {
			return nil
		}
	}
	now := m.now()
	_, err := m.Store.Update(ctx, func(st *keystore.State) error {
		changed := false
		for i := range st.Authorities {
			if st.Authorities[i].ID == id && st.Authorities[i].MaxIssuedTTL < secs {
				st.Authorities[i].MaxIssuedTTL = secs
				changed = true
			}
		}
		if Phase(st.Rotation.Phase) == SigningNew && st.Rotation.Old == id {
			if drop := now.Add(ttl + m.margin()); drop.After(st.Rotation.DropAt) {
				st.Rotation.DropAt = drop.UTC()
				changed = true
			}
		}
		if !changed {
			return keystore.ErrSkip
		}
		return nil
	})
	if err != nil {
		return fault.Wrap(fault.Unavailable, "etcd", err, "record issued lifetime")
	}
	return nil
}

// Run drops the old root when its time comes, on whichever replica gets
// there first, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	for {
		changed := m.Store.Changed()
		snap := m.Store.Current()
		var t *time.Timer
		var timer <-chan time.Time
		if Phase(snap.State.Rotation.Phase) == SigningNew {
			t = time.NewTimer(max(snap.State.Rotation.DropAt.Sub(m.now()), 0))
			timer = t.C
		}
		fired := false
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer:
			fired = true
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
		if !fired {
			continue
		}
		if _, err := m.Advance(ctx, SigningNew, false, "ca (drop time reached)"); err != nil {
			if k := fault.KindOf(err); k != fault.Aborted && k != fault.FailedPrecondition {
				m.log().WarnContext(ctx, "dropping the old root failed; retrying", "error", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-time.After(5 * time.Second):
			}
		}
	}
}
