// Package store keeps resources in etcd exactly as DESIGN §3 lays out:
// /ambit/v1/res/<group>/<kind>/<namespace>/<name> holding the object's JSON,
// every write one transaction guarded by the object's mod revision, the
// namespace's existence and any address allocation compared in the same
// transaction, and the writer's trace context recorded beside it
// (changefeed.WithTrace) so the change feed continues the caller's trace.
//
// metadata.resourceVersion is the etcd mod revision of the key. It is not
// part of the stored value — the revision is only known once the
// transaction commits — and is filled in whenever an object is read, as the
// Kubernetes API server does. metadata.uid is assigned on create and
// metadata.generation bumps on spec changes only.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// Options configure a Store.
type Options struct {
	Etcd  *clientv3.Client
	Kinds *resource.KindTable
	// ServiceCIDRs are the pools of Service cluster IPs (one per family).
	ServiceCIDRs []netip.Prefix
	// ServiceEntryCIDRs are the pools of automatic ServiceEntry VIPs.
	ServiceEntryCIDRs []netip.Prefix
	// RequestTimeout bounds each etcd round trip (default 5s); a slow or
	// absent etcd turns into ErrUnavailable instead of a hung caller.
	RequestTimeout time.Duration
	// MaxAttempts bounds retries of a write that lost a race (default 16).
	MaxAttempts    int
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	Logger         *slog.Logger
	// Now and NewUID are seams for deterministic tests.
	Now    func() time.Time
	NewUID func() string
}

// DefaultServiceCIDR and DefaultServiceEntryCIDR are the pools used when
// none are configured (Kubernetes' and Istio's customary ranges).
var (
	DefaultServiceCIDR      = netip.MustParsePrefix("10.96.0.0/16")
	DefaultServiceEntryCIDR = netip.MustParsePrefix("240.240.0.0/16")
)

// Store reads and writes resources in etcd.
type Store struct {
	etcd     *clientv3.Client
	kinds    *resource.KindTable
	pools    map[string]*pool
	timeout  time.Duration
	attempts int
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	log      *slog.Logger
	now      func() time.Time
	newUID   func() string
}

// New returns a Store.
func New(opts Options) (*Store, error) {
	if opts.Etcd == nil {
		return nil, errors.New("store: etcd client required")
	}
	if opts.Kinds == nil {
		opts.Kinds = resource.Kinds()
	}
	if len(opts.ServiceCIDRs) == 0 {
		opts.ServiceCIDRs = []netip.Prefix{DefaultServiceCIDR}
	}
	if len(opts.ServiceEntryCIDRs) == 0 {
		opts.ServiceEntryCIDRs = []netip.Prefix{DefaultServiceEntryCIDR}
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 16
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	if opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewUID == nil {
		opts.NewUID = newUUID
	}
	return &Store{
		etcd:  opts.Etcd,
		kinds: opts.Kinds,
		pools: map[string]*pool{
			poolServiceIP:    {name: poolServiceIP, prefixes: opts.ServiceCIDRs},
			poolServiceEntry: {name: poolServiceEntry, prefixes: opts.ServiceEntryCIDRs},
		},
		timeout:  opts.RequestTimeout,
		attempts: opts.MaxAttempts,
		tracer:   opts.TracerProvider.Tracer("github.com/ambitmesh/ambit/services/config/internal/store"),
		prop:     opts.Propagator,
		log:      opts.Logger,
		now:      opts.Now,
		newUID:   opts.NewUID,
	}, nil
}

// Kinds is the kind table the store decodes with.
func (s *Store) Kinds() *resource.KindTable { return s.kinds }

// Stored is an object as read from or written to etcd.
type Stored struct {
	Object *resource.Object
	// Revision is the key's mod revision (= metadata.resourceVersion).
	Revision int64
}

// JSON renders the object with its resourceVersion.
func (st Stored) JSON() ([]byte, error) { return st.Object.MarshalJSON() }

// current is what a key holds now.
type current struct {
	stored *Stored // nil when absent
	raw    []byte
}

// etcdErr turns an etcd client error into ErrUnavailable: whatever failed,
// the transaction either committed whole or not at all.
func etcdErr(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

// decode reads a stored value and stamps its resourceVersion.
func (s *Store) decode(key string, kv []byte, modRev int64) (*Stored, error) {
	obj, err := s.kinds.DecodeOne(kv)
	if err != nil {
		return nil, fmt.Errorf("stored object %s does not decode: %w", key, err)
	}
	obj.Metadata.ResourceVersion = strconv.FormatInt(modRev, 10)
	return &Stored{Object: obj, Revision: modRev}, nil
}

// encode renders the stored value: the object without resourceVersion.
func encode(obj *resource.Object) ([]byte, error) {
	c := obj.DeepCopy()
	c.Metadata.ResourceVersion = ""
	return c.MarshalJSON()
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
}
