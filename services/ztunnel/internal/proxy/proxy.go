// Package proxy is ztunnel's data path: what happens to a connection
// accepted on a pod's 15001 (outbound), 15006 (inbound plaintext) or 15008
// (inbound HBONE), per DESIGN §5. It decides with the mesh view, tunnels
// with the source workload's certificate, authorizes inbound connections,
// closes established ones a policy change now denies, and reports Istio's
// TCP metrics and an access-log line per connection.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/netns"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/authz"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/certs"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/conntel"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/inpod"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/mesh"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/tunnel"
)

// Pods finds a pod served by this ztunnel.
type Pods interface {
	Pod(uid string) (*inpod.Pod, bool)
}

// Options configures a Proxy.
type Options struct {
	TrustDomain spiffeid.TrustDomain
	Mesh        *mesh.Store
	Certs       *certs.Manager
	Pods        Pods
	Telemetry   *conntel.Recorder
	Logger      *slog.Logger
	// HBONEPort is where destination ztunnels listen (15008).
	HBONEPort uint16
	// ConnectTimeout bounds dialing an upstream (default 10s).
	ConnectTimeout time.Duration
}

// Proxy handles accepted connections.
type Proxy struct {
	o       Options
	log     *slog.Logger
	pool    *tunnel.Pool
	server  *tunnel.Server
	tracker *tracker
}

// New makes a proxy.
func New(o Options) *Proxy {
	if o.HBONEPort == 0 {
		o.HBONEPort = 15008
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	p := &Proxy{o: o, log: o.Logger, tracker: newTracker(), server: tunnel.NewServer(tunnel.ServerOptions{Logger: o.Logger})}
	p.pool = tunnel.NewPool(tunnel.PoolOptions{Dialer: dialer{p}})
	return p
}

// Handlers are the in-pod listeners' callbacks.
func (p *Proxy) Handlers() inpod.Handlers {
	return inpod.Handlers{Outbound: p.outbound, InboundPlaintext: p.inboundPlaintext, InboundHBONE: p.inboundHBONE}
}

// Run re-checks established inbound connections whenever the mesh view
// changes, closing those a policy now denies, until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	for {
		ch := p.o.Mesh.Changed()
		select {
		case <-ctx.Done():
			p.pool.Close()
			return nil
		case <-ch:
		}
		n := p.tracker.recheck(func(dstUID string, c authz.Conn) (authz.Decision, bool) {
			w, ok := p.o.Mesh.WorkloadByUID(dstUID)
			if !ok {
				return authz.Decision{}, false
			}
			return authz.Evaluate(p.o.Mesh.Policies(w), c), true
		})
		if n > 0 {
			p.log.Info("closed established connections a policy change denies", "count", n)
		}
	}
}

// PoolConns is how many HBONE connections the pool holds.
func (p *Proxy) PoolConns() int { return p.pool.Conns() }

// Tracked is how many inbound connections are live.
func (p *Proxy) Tracked() int { return p.tracker.len() }

func (p *Proxy) podIdentity(pod *inpod.Pod) (spiffe.Identity, error) {
	return spiffe.NewWorkload(p.o.TrustDomain, pod.Namespace(), pod.ServiceAccount())
}

// peerOf names a workload (or a bare identity) for telemetry.
func (p *Proxy) peerOf(w *mesh.Workload, id spiffe.Identity) conntel.Peer {
	peer := conntel.Peer{}
	if !id.IsZero() {
		peer.Principal = id.String()
		peer.Namespace = id.Namespace()
	}
	if w != nil {
		peer.Workload, peer.Namespace, peer.App, peer.Version, peer.Cluster = w.WorkloadName, w.Namespace, w.App, w.Version, w.ClusterID
		if peer.Workload == "" {
			peer.Workload = w.Name
		}
	}
	return peer
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// outbound: a connection of a local pod to anywhere, captured on 15001.
func (p *Proxy) outbound(pod *inpod.Pod, c *net.TCPConn) {
	defer c.Close()
	ctx := context.Background()
	orig, err := netns.OriginalDst(c)
	if err != nil {
		p.log.Warn("outbound without an original destination", "pod", pod.String(), "err", err)
		return
	}
	srcID, err := p.podIdentity(pod)
	if err != nil {
		p.log.Warn("pod without a workload identity", "pod", pod.String(), "err", err)
		return
	}
	src := addrPortOf(c.RemoteAddr())
	p.log.Debug("outbound", "pod", pod.String(), "src", src, "dst", orig)
	srcW, _ := p.o.Mesh.WorkloadByIP(src.Addr())
	info := conntel.Info{Reporter: conntel.ReporterSource, Direction: "outbound", Src: p.peerOf(srcW, srcID), SrcAddr: src, DstAddr: orig}

	target := orig
	var dstW *mesh.Workload
	if svc, ok := p.o.Mesh.ServiceByVIP(orig.Addr()); ok {
		info.DstService, info.DstServiceNamespace, info.DstServiceName = svc.Hostname, svc.Namespace, svc.Name
		eps := p.o.Mesh.Endpoints(svc, orig.Port())
		if len(eps) == 0 {
			tc := p.o.Telemetry.Open(ctx, info)
			tc.Close(ctx, "no healthy endpoint", fmt.Errorf("service %s port %d has no healthy endpoint", svc.Key, orig.Port()))
			return
		}
		ep := eps[rand.N(len(eps))]
		dstW = ep.Workload
		if len(dstW.Addrs) > 0 {
			target = netip.AddrPortFrom(dstW.Addrs[0], ep.Port)
		}
	} else if w, ok := p.o.Mesh.WorkloadByIP(orig.Addr()); ok {
		dstW = w
	}

	// A destination (service, else workload) that uses a waypoint is
	// reached through it: the tunnel goes to the waypoint, carrying the
	// original destination, unless the source is that waypoint.
	hbonePort := p.o.HBONEPort
	var wp *mesh.Gateway
	if svc, ok := p.o.Mesh.ServiceByVIP(orig.Addr()); ok && svc.Waypoint != nil {
		wp = svc.Waypoint
	} else if !ok && dstW != nil && dstW.Waypoint != nil {
		wp = dstW.Waypoint
	}
	if wp != nil {
		wpW, wpPort, err := p.resolveGateway(wp)
		if err != nil {
			p.o.Telemetry.Open(ctx, info).Close(ctx, "no waypoint", err)
			return
		}
		if srcW == nil || srcW.UID != wpW.UID {
			dstW, target, hbonePort = wpW, orig, wpPort
			info.DstAddr = orig
		}
	}

	var up net.Conn
	dctx, cancel := context.WithTimeout(ctx, p.o.ConnectTimeout)
	defer cancel()
	if dstW != nil && dstW.HBONE {
		dstID, err := spiffe.Parse(dstW.Identity())
		if err != nil {
			p.log.Warn("destination without a valid identity", "workload", dstW.UID, "err", err)
			return
		}
		info.Dst, info.Security, info.DstAddr = p.peerOf(dstW, dstID), conntel.MutualTLS, target
		hboneAddr := target.Addr()
		if len(dstW.Addrs) > 0 {
			hboneAddr = dstW.Addrs[0] // the waypoint's own address when tunnelling through it
		}
		key := tunnel.Key{SrcPod: pod.UID(), SrcIP: src.Addr(), SrcID: srcID.String(), DstID: dstID.String(),
			DstAddr: netip.AddrPortFrom(hboneAddr, hbonePort)}
		up, err = p.pool.Dial(dctx, key, target, tunnel.Headers{Source: src})
		if err != nil {
			tc := p.o.Telemetry.Open(ctx, info)
			tc.Close(ctx, resultOf(err), err)
			return
		}
	} else {
		info.Dst, info.Security, info.DstAddr = p.peerOf(dstW, spiffe.Identity{}), conntel.Plaintext, target
		up, err = pod.Dial(dctx, "tcp", target.String())
		if err != nil {
			tc := p.o.Telemetry.Open(ctx, info)
			tc.Close(ctx, "upstream connect failure", err)
			return
		}
	}
	defer up.Close()
	tc := p.o.Telemetry.Open(ctx, info)
	sent, recv, err := tunnel.Splice(c, up)
	tc.AddSent(sent)
	tc.AddReceived(recv)
	tc.Close(ctx, "ok", err)
}

// resolveGateway finds the workload of a waypoint given by address or by
// service name (one of the service's healthy endpoints).
func (p *Proxy) resolveGateway(g *mesh.Gateway) (*mesh.Workload, uint16, error) {
	if g.Addr.IsValid() {
		w, ok := p.o.Mesh.WorkloadByIP(g.Addr)
		if !ok {
			return nil, 0, fmt.Errorf("waypoint %s is unknown", g.Addr)
		}
		return w, g.HBONEPort, nil
	}
	svc, ok := p.o.Mesh.Service(g.Service)
	if !ok {
		return nil, 0, fmt.Errorf("waypoint service %s is unknown", g.Service)
	}
	eps := p.o.Mesh.Endpoints(svc, g.HBONEPort)
	if len(eps) == 0 {
		return nil, 0, fmt.Errorf("waypoint service %s has no healthy endpoint on %d", g.Service, g.HBONEPort)
	}
	ep := eps[rand.N(len(eps))]
	return ep.Workload, ep.Port, nil
}

func resultOf(err error) string {
	var se *tunnel.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusUnauthorized:
			return "denied by destination policy"
		case http.StatusServiceUnavailable:
			return "upstream connect failure"
		}
		return fmt.Sprintf("refused %d", se.Status)
	}
	return "tunnel failure"
}

// inboundPlaintext: a connection from outside the mesh to a local pod,
// captured on 15006. It carries no identity, so STRICT denies it.
func (p *Proxy) inboundPlaintext(pod *inpod.Pod, c *net.TCPConn) {
	defer c.Close()
	ctx := context.Background()
	orig, err := netns.OriginalDst(c)
	if err != nil {
		p.log.Warn("inbound without an original destination", "pod", pod.String(), "err", err)
		return
	}
	src := addrPortOf(c.RemoteAddr())
	srcW, _ := p.o.Mesh.WorkloadByIP(src.Addr())
	dstW, _ := p.o.Mesh.WorkloadByIP(orig.Addr())
	dstID, _ := p.podIdentity(pod)
	info := conntel.Info{Reporter: conntel.ReporterDestination, Direction: "inbound", Security: conntel.Plaintext,
		Src: p.peerOf(srcW, spiffe.Identity{}), Dst: p.peerOf(dstW, dstID), SrcAddr: src, DstAddr: orig}
	ac := authz.Conn{SrcIP: src.Addr(), DstIP: orig.Addr(), DstPort: orig.Port()}
	if d, ok := p.authorize(dstW, ac); !ok {
		p.o.Telemetry.Open(ctx, info).Close(ctx, "denied", errors.New(d))
		return
	}
	dctx, cancel := context.WithTimeout(ctx, p.o.ConnectTimeout)
	up, err := pod.Dial(dctx, "tcp", orig.String())
	cancel()
	if err != nil {
		p.o.Telemetry.Open(ctx, info).Close(ctx, "upstream connect failure", err)
		return
	}
	defer up.Close()
	untrack := p.tracker.add(&inboundConn{dstUID: dstW.UID, conn: ac, close: func(string) { c.Close(); up.Close() }})
	defer untrack()
	tc := p.o.Telemetry.Open(ctx, info)
	sent, recv, err := tunnel.Splice(c, up)
	tc.AddSent(sent)
	tc.AddReceived(recv)
	tc.Close(ctx, "ok", err)
}

// authorize decides about a connection to a local workload; an unknown
// workload (xds has not described it yet) is refused.
func (p *Proxy) authorize(dstW *mesh.Workload, c authz.Conn) (string, bool) {
	if dstW == nil {
		return "destination workload unknown to this ztunnel", false
	}
	d := authz.Evaluate(p.o.Mesh.Policies(dstW), c)
	return d.String(), d.Allow
}

// inboundHBONE: mTLS from another ztunnel to a local pod on 15008.
func (p *Proxy) inboundHBONE(pod *inpod.Pod, c *net.TCPConn) {
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := p.podIdentity(pod)
	if err != nil {
		return
	}
	hctx, hcancel := context.WithTimeout(ctx, p.o.ConnectTimeout)
	src, err := p.o.Certs.Get(hctx, id)
	if err != nil {
		hcancel()
		p.log.Warn("no certificate to terminate HBONE", "pod", pod.String(), "err", err)
		return
	}
	tc := tls.Server(c, tunnel.ServerTLS(src, p.o.TrustDomain))
	err = tc.HandshakeContext(hctx)
	hcancel()
	if err != nil {
		p.log.Info("HBONE handshake refused", "pod", pod.String(), "peer", c.RemoteAddr().String(), "err", err)
		return
	}
	peer, err := spiffe.PeerIdentity(tc.ConnectionState())
	if err != nil {
		return
	}
	srcIP := addrPortOf(c.RemoteAddr()).Addr()
	p.server.ServeConn(ctx, tc, func(sctx context.Context, req tunnel.Request) (net.Conn, int, error) {
		return p.openInbound(sctx, pod, peer, srcIP, req)
	}, nil)
}

// openInbound authorizes one tunnel and connects it to the app.
func (p *Proxy) openInbound(ctx context.Context, pod *inpod.Pod, peer spiffe.Identity, srcIP netip.Addr, req tunnel.Request) (net.Conn, int, error) {
	ownIP := false
	for _, ip := range pod.IPs() {
		ownIP = ownIP || ip == req.Target.Addr()
	}
	if !ownIP {
		return nil, http.StatusBadRequest, fmt.Errorf("target %s is not an address of pod %s", req.Target, pod.String())
	}
	srcAddr := req.Forwarded
	if !srcAddr.IsValid() {
		srcAddr = netip.AddrPortFrom(srcIP, 0)
	}
	srcW, _ := p.o.Mesh.WorkloadByIP(srcIP)
	dstW, _ := p.o.Mesh.WorkloadByIP(req.Target.Addr())
	dstID, _ := p.podIdentity(pod)
	info := conntel.Info{Reporter: conntel.ReporterDestination, Direction: "inbound", Security: conntel.MutualTLS,
		Src: p.peerOf(srcW, peer), Dst: p.peerOf(dstW, dstID), SrcAddr: srcAddr, DstAddr: req.Target}
	ac := authz.Conn{SrcIdentity: peer, SrcIP: srcIP, DstIP: req.Target.Addr(), DstPort: req.Target.Port()}
	if d, ok := p.authorize(dstW, ac); !ok {
		p.o.Telemetry.Open(ctx, info).Close(ctx, "denied", errors.New(d))
		return nil, http.StatusUnauthorized, errors.New(d)
	}
	dctx, cancel := context.WithTimeout(ctx, p.o.ConnectTimeout)
	up, err := pod.Dial(dctx, "tcp", req.Target.String())
	cancel()
	if err != nil {
		p.o.Telemetry.Open(ctx, info).Close(ctx, "upstream connect failure", err)
		return nil, http.StatusServiceUnavailable, err
	}
	tc := p.o.Telemetry.Open(ctx, info)
	ic := &inboundConn{dstUID: dstW.UID, conn: ac}
	cc := &countedConn{Conn: up, tc: tc}
	ic.close = func(reason string) { cc.reason.Store(&reason); _ = up.Close() }
	cc.untrack = p.tracker.add(ic)
	return cc, 0, nil
}

// dialer opens pooled HBONE connections from the source pod's netns with
// the source workload's certificate.
type dialer struct{ p *Proxy }

func (d dialer) DialTCP(ctx context.Context, k tunnel.Key) (net.Conn, error) {
	pod, ok := d.p.o.Pods.Pod(k.SrcPod)
	if !ok {
		return nil, fmt.Errorf("source pod %s is gone", k.SrcPod)
	}
	return pod.Dial(ctx, "tcp", k.DstAddr.String())
}

func (d dialer) TLSConfig(ctx context.Context, k tunnel.Key) (*tls.Config, error) {
	srcID, err := spiffe.Parse(k.SrcID)
	if err != nil {
		return nil, err
	}
	dstID, err := spiffe.Parse(k.DstID)
	if err != nil {
		return nil, err
	}
	src, err := d.p.o.Certs.Get(ctx, srcID)
	if err != nil {
		return nil, err
	}
	return tunnel.ClientTLS(src, dstID), nil
}
