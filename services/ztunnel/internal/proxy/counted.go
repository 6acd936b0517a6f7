package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ambitmesh/ambit/services/ztunnel/internal/conntel"
)

// countedConn is an inbound tunnel's connection to the app: it counts the
// bytes for telemetry and, on close, records the connection and stops
// tracking it for policy re-checks.
type countedConn struct {
	net.Conn
	tc      *conntel.Conn
	untrack func()
	reason  atomic.Pointer[string]
	once    sync.Once
}

// Towards the app is what the source sent; from the app what it received.
func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.tc.AddSent(int64(n))
	return n, err
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.tc.AddReceived(int64(n))
	return n, err
}

// CloseWrite passes the peer's end of stream to the app.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.untrack()
		result := "ok"
		if r := c.reason.Load(); r != nil {
			result = "closed by policy change: " + *r
		}
		c.tc.Close(context.Background(), result, nil)
	})
	return err
}
