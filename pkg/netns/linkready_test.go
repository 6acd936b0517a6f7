package netns

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// readLinkState must see what the kernel reports, or waitLinksReady would
// wait for nothing (or forever).
func TestLinkStateFollowsKernel(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	a, b := createNetns(t, "lsa"), createNetns(t, "lsb")
	var undo undoStack
	defer func() {
		if err := undo.run(); err != nil {
			t.Error(err)
		}
	}()
	if err := addVeth(&undo, a, "port", b, "peer"); err != nil {
		t.Fatal(err)
	}
	err := withRoute(a, func(nh *netlink.Handle) error {
		return nh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br"}})
	})
	if err != nil {
		t.Fatal(err)
	}

	state := func(ns *Handle, name string) linkState {
		t.Helper()
		var st linkState
		if err := ns.Do(func() error {
			var err error
			st, err = readLinkState(name)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := state(a, "port"); st.ready() || st.operUp || st.bridgePort {
		t.Errorf("down, unattached port: %s", st)
	}
	if err := attachUp(a, "port", "br"); err != nil {
		t.Fatal(err)
	}
	if st := state(a, "port"); !st.bridgePort {
		t.Errorf("attached port not seen as a bridge port: %s", st)
	}
	if st := state(a, "port"); st.ready() {
		t.Errorf("port ready while its peer is down: %s", st)
	}
	if err := setLinksUp(b, "peer"); err != nil {
		t.Fatal(err)
	}
	// A port of a bridge that is down never forwards.
	if err := setLinksUp(a, "br"); err != nil {
		t.Fatal(err)
	}
	if err := waitLinksReady(ctx, a, "port"); err != nil {
		t.Fatal(err)
	}
	if err := waitLinksReady(ctx, b, "peer"); err != nil {
		t.Fatal(err)
	}
	if st := state(a, "port"); !st.forwarding || st.qdisc != "noqueue" {
		t.Errorf("ready port: %s", st)
	}
	if err := a.Do(func() error { _, err := readLinkState("missing"); return err }); err == nil {
		t.Error("state of a missing link: no error")
	}
}
