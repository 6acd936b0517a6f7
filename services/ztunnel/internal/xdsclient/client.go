// Package xdsclient follows xds over delta ADS (Istio's workload API:
// Address and Authorization, both wildcard) into a mesh.Store. It keeps
// the last good state whenever xds is unreachable, reconnects with
// jittered backoff, and on every reconnect tells xds what it holds
// (initial_resource_versions) so a replica restart re-sends next to
// nothing. A response that does not decode is NACKed with the resource
// and field in error_detail, and the previous state stays.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ambitmesh/ambit/pkg/backoff"
	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/mesh"
)

// Type URLs of Istio's workload API.
const (
	TypeAddress       = "type.googleapis.com/istio.workload.Address"
	TypeAuthorization = "type.googleapis.com/istio.security.Authorization"
)

// Options configures a Client.
type Options struct {
	Conn    grpc.ClientConnInterface
	Store   *mesh.Store
	Node    string
	Version string
	Logger  *slog.Logger
	// RetryMin, RetryMax bound the reconnect backoff (100ms, 5s).
	RetryMin, RetryMax time.Duration
}

// Client is the delta ADS client.
type Client struct {
	o        Options
	synced   chan struct{}
	syncOnce sync.Once
	seen     [2]atomic.Bool
	conn     atomic.Bool
	lastErr  atomic.Pointer[string]
	acks     atomic.Int64
	nacks    atomic.Int64
}

// New makes a client.
func New(o Options) *Client {
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{o: o, synced: make(chan struct{})}
}

// Synced is closed once both types were received once.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Status is the client's state for readiness and the admin endpoint.
type Status struct {
	Connected bool   `json:"connected"`
	LastError string `json:"lastError,omitempty"`
	ACKs      int64  `json:"acks"`
	NACKs     int64  `json:"nacks"`
}

// Status returns the current status.
func (c *Client) Status() Status {
	s := Status{Connected: c.conn.Load(), ACKs: c.acks.Load(), NACKs: c.nacks.Load()}
	if e := c.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Run follows xds until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	bo := backoff.Backoff{Min: c.o.RetryMin, Max: c.o.RetryMax}
	for ctx.Err() == nil {
		got, err := c.stream(ctx)
		c.conn.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		msg := err.Error()
		c.lastErr.Store(&msg)
		if got {
			bo.Reset()
		}
		d := bo.Next()
		c.o.Logger.Warn("xds stream ended; keeping the last state", "err", err, "retry", d)
		if backoff.Sleep(ctx, d) != nil {
			return nil
		}
	}
	return nil
}

func (c *Client) node() *corev3.Node {
	return &corev3.Node{
		Id: "ztunnel~" + c.o.Node,
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"NODE_NAME": structpb.NewStringValue(c.o.Node),
			"COMPONENT": structpb.NewStringValue("ztunnel"),
			"VERSION":   structpb.NewStringValue(c.o.Version),
		}},
		UserAgentName: "ambit-ztunnel",
	}
}

// stream runs one ADS stream; got tells whether any response arrived.
func (c *Client) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.o.Conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	for i, typ := range []string{TypeAddress, TypeAuthorization} {
		req := &discoveryv3.DeltaDiscoveryRequest{
			TypeUrl:                 typ,
			ResourceNamesSubscribe:  []string{"*"},
			InitialResourceVersions: c.o.Store.Versions(i == 0),
		}
		if i == 0 {
			req.Node = c.node()
		}
		if err := st.Send(req); err != nil {
			return false, err
		}
	}
	c.conn.Store(true)
	c.o.Logger.Info("xds stream open")
	for {
		resp, err := st.Recv()
		if err != nil {
			return got, err
		}
		got = true
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := c.apply(resp); err != nil {
			c.nacks.Add(1)
			c.o.Logger.Warn("NACK", "type", resp.GetTypeUrl(), "nonce", resp.GetNonce(), "err", err)
			ack.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			c.acks.Add(1)
			c.o.Logger.Debug("ACK", "type", resp.GetTypeUrl(), "resources", len(resp.GetResources()), "removed", len(resp.GetRemovedResources()))
		}
		if err := st.Send(ack); err != nil {
			return got, err
		}
	}
}

func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	var err error
	switch resp.GetTypeUrl() {
	case TypeAddress:
		var ups []mesh.Resource[*workloadpb.Address]
		ups, err = decode(resp, func() *workloadpb.Address { return &workloadpb.Address{} })
		if err == nil {
			err = c.o.Store.ApplyAddresses(ups, resp.GetRemovedResources())
		}
		if err == nil {
			c.markSeen(0)
		}
	case TypeAuthorization:
		var ups []mesh.Resource[*securitypb.Authorization]
		ups, err = decode(resp, func() *securitypb.Authorization { return &securitypb.Authorization{} })
		if err == nil {
			err = c.o.Store.ApplyAuthorizations(ups, resp.GetRemovedResources())
		}
		if err == nil {
			c.markSeen(1)
		}
	default:
		err = fmt.Errorf("unexpected type %q", resp.GetTypeUrl())
	}
	return err
}

func (c *Client) markSeen(i int) {
	c.seen[i].Store(true)
	if c.seen[0].Load() && c.seen[1].Load() {
		c.syncOnce.Do(func() { close(c.synced) })
	}
}

func decode[T proto.Message](resp *discoveryv3.DeltaDiscoveryResponse, mk func() T) ([]mesh.Resource[T], error) {
	out := make([]mesh.Resource[T], 0, len(resp.GetResources()))
	var errs []error
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			errs = append(errs, fmt.Errorf("resource %q: no body", r.GetName()))
			continue
		}
		if r.GetResource().GetTypeUrl() != resp.GetTypeUrl() {
			errs = append(errs, fmt.Errorf("resource %q: type %q in a %q response", r.GetName(), r.GetResource().GetTypeUrl(), resp.GetTypeUrl()))
			continue
		}
		v := mk()
		if err := proto.Unmarshal(r.GetResource().GetValue(), v); err != nil {
			errs = append(errs, fmt.Errorf("resource %q: %w", r.GetName(), err))
			continue
		}
		out = append(out, mesh.Resource[T]{Name: r.GetName(), Version: r.GetVersion(), Value: v})
	}
	return out, errors.Join(errs...)
}
