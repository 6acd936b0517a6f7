package proxy

import (
	"sync"

	"github.com/ambitmesh/ambit/services/ztunnel/internal/authz"
)

// inboundConn is an established inbound connection whose authorization
// must be re-checked when policies change (DESIGN §5: established
// connections that are now denied are closed).
type inboundConn struct {
	// dstUID is the destination workload; its policies are re-read.
	dstUID string
	conn   authz.Conn
	close  func(reason string)
}

// tracker holds the live inbound connections.
type tracker struct {
	mu    sync.Mutex
	conns map[*inboundConn]struct{}
}

func newTracker() *tracker { return &tracker{conns: map[*inboundConn]struct{}{}} }

func (t *tracker) add(c *inboundConn) func() {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}
}

// recheck closes every connection decide now denies and returns how many.
func (t *tracker) recheck(decide func(dstUID string, c authz.Conn) (authz.Decision, bool)) int {
	t.mu.Lock()
	conns := make([]*inboundConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	n := 0
	for _, c := range conns {
		d, known := decide(c.dstUID, c.conn)
		if !known {
			continue // the workload left the view: its pod's removal ends it
		}
		if !d.Allow {
			c.close(d.String())
			n++
		}
	}
	return n
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
