package netns

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// Netlink returns a netlink handle whose sockets live inside the namespace,
// usable from any goroutine; close it when done. families defaults to the
// library's set (route, xfrm, netfilter). Request only families you open
// here: for any other family the library silently opens a socket in the
// calling thread's namespace, i.e. the host.
func (h *Handle) Netlink(families ...int) (*netlink.Handle, error) {
	var nh *netlink.Handle
	err := h.Do(func() error {
		var err error
		nh, err = netlink.NewHandle(families...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink handle: %w", h.label, err)
	}
	return nh, nil
}
