package rotation_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/catest"
	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/rotation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, catest.LeakOptions()...) }

// TestAutoDrop: the old root leaves the bundle by itself at the drop
// time, which a late long-lived certificate of the old root pushes out.
func TestAutoDrop(t *testing.T) {
	cli := catest.Etcd(t)
	ctx := context.Background()
	td := spiffe.DefaultTrustDomain()
	kek, _ := keystore.ParseKEK([]byte(keystore.NewKEK()))
	store, err := keystore.Open(ctx, keystore.Options{Client: cli, KEK: kek, TrustDomain: td,
		Initial: func() (*keystore.Material, error) { return keystore.GenerateRoot(td, time.Hour, time.Now()) }})
	if err != nil {
		t.Fatal(err)
	}
	m := &rotation.Manager{Store: store, Etcd: cli, KEK: kek, TrustDomain: td, RootValidity: time.Hour, DropMargin: 100 * time.Millisecond}
	old := store.Current().State.Active

	if _, err := m.Advance(ctx, rotation.Idle, false, "test"); fault.KindOf(err) != fault.FailedPrecondition {
		t.Fatalf("advance while idle: %v", err)
	}
	snap, err := m.Start(ctx, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	if snap.State.BundleVersion != 2 || len(snap.Ordered) != 2 || snap.State.Active != old {
		t.Fatalf("after start: version %d, %d authorities, active %s", snap.State.BundleVersion, len(snap.Ordered), snap.State.Active)
	}
	newID := snap.State.Rotation.New
	// No replica reports watchers here, so distribution is complete.
	if snap, err = m.Advance(ctx, rotation.RootAdded, false, "test"); err != nil {
		t.Fatal(err)
	}
	if snap.State.Active != newID {
		t.Fatal("the new authority is not active")
	}
	drop := snap.State.Rotation.DropAt
	// A certificate of the old authority issued late, for 400ms.
	if err := m.RecordIssuedTTL(ctx, old, 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if pushed := store.Current().State.Rotation.DropAt; !pushed.After(drop) {
		t.Fatalf("drop time %s not pushed out beyond %s", pushed, drop)
	}
	if _, err := m.Advance(ctx, rotation.SigningNew, false, "test"); fault.KindOf(err) != fault.FailedPrecondition {
		t.Fatalf("early drop: %v", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	deadline := time.After(10 * time.Second)
	for rotation.Phase(store.Current().State.Rotation.Phase) != rotation.Idle {
		select {
		case <-store.Changed():
		case <-deadline:
			t.Fatal("the old root was not dropped at its time")
		}
	}
	st := store.Current().State
	if len(st.Authorities) != 1 || st.Authorities[0].ID != newID || st.BundleVersion != 3 {
		t.Fatalf("after drop: %d authorities, version %d", len(st.Authorities), st.BundleVersion)
	}
}
