package netns

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const (
	ifOperUp          = 6 // IF_OPER_UP
	brStateForwarding = 3 // BR_STATE_FORWARDING
	readyPollInterval = 2 * time.Millisecond
)

// linkState is what decides whether a link carries traffic yet.
type linkState struct {
	operUp     bool
	qdisc      string // "noop" until the kernel activates the device
	bridgePort bool
	forwarding bool
}

func (s linkState) ready() bool {
	return s.operUp && s.qdisc != "" && s.qdisc != "noop" && (!s.bridgePort || s.forwarding)
}

func (s linkState) String() string {
	return fmt.Sprintf("oper-up=%v qdisc=%q bridge-port=%v forwarding=%v", s.operUp, s.qdisc, s.bridgePort, s.forwarding)
}

// waitLinksReady polls until every named link in ns carries traffic. Setting
// a link up is not enough: carrier, qdisc activation and bridge port state
// follow asynchronously (linkwatch), and packets sent before are dropped.
func waitLinksReady(ctx context.Context, ns *Handle, names ...string) error {
	return ns.Do(func() error {
		tick := time.NewTicker(readyPollInterval)
		defer tick.Stop()
		for _, name := range names {
			for {
				st, err := readLinkState(name)
				if err != nil {
					return err
				}
				if st.ready() {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("link %s not ready (%s): %w", name, st, ctx.Err())
				case <-tick.C:
				}
			}
		}
		return nil
	})
}

// readLinkState asks the kernel about one link in the calling thread's
// namespace. The netlink library does not expose qdisc or bridge port state,
// hence the raw request.
func readLinkState(name string) (linkState, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return linkState{}, fmt.Errorf("get link %s: %w", name, err)
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return linkState{}, fmt.Errorf("get link %s: unexpected reply", name)
	}
	attrs, err := nl.ParseRouteAttr(msgs[0][unix.SizeofIfInfomsg:])
	if err != nil {
		return linkState{}, fmt.Errorf("get link %s: %w", name, err)
	}
	var st linkState
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.IFLA_OPERSTATE:
			st.operUp = len(a.Value) == 1 && a.Value[0] == ifOperUp
		case unix.IFLA_QDISC:
			st.qdisc = strings.TrimRight(string(a.Value), "\x00")
		case unix.IFLA_LINKINFO:
			if err := parseSlaveInfo(a.Value, &st); err != nil {
				return linkState{}, fmt.Errorf("get link %s: %w", name, err)
			}
		}
	}
	return st, nil
}

func parseSlaveInfo(b []byte, st *linkState) error {
	info, err := nl.ParseRouteAttr(b)
	if err != nil {
		return err
	}
	var data []byte
	for _, a := range info {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.IFLA_INFO_SLAVE_KIND:
			st.bridgePort = strings.TrimRight(string(a.Value), "\x00") == "bridge"
		case unix.IFLA_INFO_SLAVE_DATA:
			data = a.Value
		}
	}
	if !st.bridgePort || data == nil {
		return nil
	}
	port, err := nl.ParseRouteAttr(data)
	if err != nil {
		return err
	}
	for _, a := range port {
		if a.Attr.Type&nl.NLA_TYPE_MASK == unix.IFLA_BRPORT_STATE && len(a.Value) == 1 {
			st.forwarding = a.Value[0] == brStateForwarding
		}
	}
	return nil
}
