// Package server is the gRPC face of the config service: it authenticates
// the caller, decodes and validates manifests with package resource,
// authorizes the write, and hands it to package store. Errors become gRPC
// statuses in one place (errors.go).
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	corev1 "k8s.io/api/core/v1"

	"github.com/ambitmesh/ambit/pkg/proxystatus"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// Options configure a Server.
type Options struct {
	Store *store.Store
	// Watch serves Watch; nil makes Watch fail with Unavailable.
	Watch *watchhub.Hub
	// Distribution answers Status; nil reports no proxies.
	Distribution *proxystatus.Tracker
	// InsecureLoopback treats every loopback caller as an admin; for
	// development only, never with a non-loopback listener.
	InsecureLoopback bool
	MaxObjectBytes   int
	Logger           *slog.Logger
	MeterProvider    metric.MeterProvider
}

// Server implements configv1.ConfigServiceServer.
type Server struct {
	configv1.UnimplementedConfigServiceServer
	store    *store.Store
	kinds    *resource.KindTable
	dist     *proxystatus.Tracker
	insecure bool
	validate resource.ValidateOptions
	log      *slog.Logger
	applies  metric.Int64Counter
	rejected metric.Int64Counter

	hub       *watchhub.Hub
	watchSent metric.Int64Counter
}

// New returns a Server.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = noop.NewMeterProvider()
	}
	m := o.MeterProvider.Meter("github.com/ambitmesh/ambit/services/config/internal/server")
	applies, err := m.Int64Counter("ambit_config_applies_total", metric.WithDescription("Objects applied, by kind and result."))
	if err != nil {
		return nil, err
	}
	rejected, err := m.Int64Counter("ambit_config_rejections_total", metric.WithDescription("Requests rejected, by method and reason (gRPC code)."))
	if err != nil {
		return nil, err
	}
	watchSent, err := m.Int64Counter("ambit_config_watch_events_sent_total", metric.WithDescription("Events sent to Watch streams."))
	if err != nil {
		return nil, err
	}
	return &Server{
		hub:       o.Watch,
		watchSent: watchSent,
		store:     o.Store,
		kinds:     o.Store.Kinds(),
		dist:      o.Distribution,
		insecure:  o.InsecureLoopback,
		validate:  resource.ValidateOptions{MaxObjectBytes: o.MaxObjectBytes},
		log:       o.Logger,
		applies:   applies,
		rejected:  rejected,
	}, nil
}

// finish maps err to a status, counts and logs rejections.
func (s *Server) finish(ctx context.Context, method string, caller Caller, err error) error {
	if err == nil {
		return nil
	}
	st := toStatus(err)
	code := statusCode(st)
	s.rejected.Add(ctx, 1, metric.WithAttributes(attrMethod(method), attrReason(code)))
	s.log.InfoContext(ctx, "request rejected", "method", method, "caller", caller.String(), "code", code, "error", err.Error())
	return st
}

func (s *Server) Apply(ctx context.Context, req *configv1.ApplyRequest) (*configv1.ApplyResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "Apply", caller, err)
	}
	resp, err := s.apply(ctx, caller, req)
	return resp, s.finish(ctx, "Apply", caller, err)
}

func (s *Server) apply(ctx context.Context, caller Caller, req *configv1.ApplyRequest) (*configv1.ApplyResponse, error) {
	if !caller.mayApply() {
		return nil, fmt.Errorf("%w: %s may not apply configuration", errPermission, caller)
	}
	objs, err := s.kinds.DecodeWith(req.GetManifest(), resource.DecodeOptions{DefaultNamespace: req.GetDefaultNamespace()})
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%w: a manifest must hold exactly one object, this one holds %d", store.ErrInvalid, len(objs))
	}
	obj := objs[0]
	if err := authorizeApply(caller, obj); err != nil {
		return nil, err
	}
	if err := s.validate.Validate(obj); err != nil {
		return nil, err
	}
	st, res, err := s.store.Apply(ctx, obj, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	if !req.GetDryRun() {
		s.applies.Add(ctx, 1, metric.WithAttributes(attrKind(obj.Kind), attrResult(res.String())))
	}
	out, err := st.JSON()
	if err != nil {
		return nil, err
	}
	return &configv1.ApplyResponse{Object: out, Result: applyResult(res)}, nil
}

func applyResult(r store.Result) configv1.ApplyResult {
	switch r {
	case store.Created:
		return configv1.ApplyResult_APPLY_RESULT_CREATED
	case store.Configured:
		return configv1.ApplyResult_APPLY_RESULT_CONFIGURED
	case store.Unchanged:
		return configv1.ApplyResult_APPLY_RESULT_UNCHANGED
	}
	return configv1.ApplyResult_APPLY_RESULT_UNSPECIFIED
}

func (s *Server) UpdateStatus(ctx context.Context, req *configv1.UpdateStatusRequest) (*configv1.UpdateStatusResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "UpdateStatus", caller, err)
	}
	resp, err := s.updateStatus(ctx, caller, req)
	return resp, s.finish(ctx, "UpdateStatus", caller, err)
}

func (s *Server) updateStatus(ctx context.Context, caller Caller, req *configv1.UpdateStatusRequest) (*configv1.UpdateStatusResponse, error) {
	kind, key, err := s.resolve(req.GetRef(), true)
	if err != nil {
		return nil, err
	}
	rv, err := parseResourceVersion(req.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	// The check runs on the object as read inside the store's write loop, so
	// it judges exactly the object the write is conditioned on.
	check := func(next *resource.Object) error {
		if err := authorizeStatus(caller, kind, next); err != nil {
			return err
		}
		return s.validate.Validate(next)
	}
	st, err := s.store.UpdateStatus(ctx, key, json.RawMessage(req.GetStatus()), rv, check)
	if err != nil {
		return nil, err
	}
	out, err := st.JSON()
	if err != nil {
		return nil, err
	}
	return &configv1.UpdateStatusResponse{Object: out}, nil
}

// authorizeStatus: admins and control-plane services may write any status;
// a node only the status of a Pod assigned to it (DESIGN §4).
func authorizeStatus(caller Caller, kind *resource.Kind, obj *resource.Object) error {
	if caller.isAdmin() || caller.Identity.Kind() == kindControlPlane {
		return nil
	}
	if caller.Identity.Kind() == kindNode && kind.Group() == resource.GroupCore && kind.Name() == "Pod" {
		spec, _ := obj.Spec.(*corev1.PodSpec)
		if spec != nil && spec.NodeName == caller.Identity.Node() {
			return nil
		}
		node := ""
		if spec != nil {
			node = spec.NodeName
		}
		return fmt.Errorf("%w: node %q may not update pod %s/%s assigned to node %q", errPermission, caller.Identity.Node(), obj.Metadata.Namespace, obj.Metadata.Name, node)
	}
	return fmt.Errorf("%w: %s may not update the status of %s", errPermission, caller, kind.Name())
}

func (s *Server) Get(ctx context.Context, req *configv1.GetRequest) (*configv1.GetResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "Get", caller, err)
	}
	resp, err := func() (*configv1.GetResponse, error) {
		if !caller.canRead() {
			return nil, fmt.Errorf("%w: %s may not read configuration", errPermission, caller)
		}
		_, key, err := s.resolve(req.GetRef(), true)
		if err != nil {
			return nil, err
		}
		st, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		out, err := st.JSON()
		return &configv1.GetResponse{Object: out}, err
	}()
	return resp, s.finish(ctx, "Get", caller, err)
}

func (s *Server) List(ctx context.Context, req *configv1.ListRequest) (*configv1.ListResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "List", caller, err)
	}
	resp, err := func() (*configv1.ListResponse, error) {
		if !caller.canRead() {
			return nil, fmt.Errorf("%w: %s may not read configuration", errPermission, caller)
		}
		kind, _, err := s.resolve(req.GetRef(), false)
		if err != nil {
			return nil, err
		}
		page, err := s.store.List(ctx, kind.KeyGroup(), kind.Name(), store.ListOptions{
			Namespace: req.GetRef().GetNamespace(), Selector: req.GetLabelSelector(),
			Limit: req.GetLimit(), Continue: req.GetContinue(),
		})
		if err != nil {
			return nil, err
		}
		out := &configv1.ListResponse{Revision: page.Revision, Continue: page.Continue}
		for _, it := range page.Items {
			b, err := it.JSON()
			if err != nil {
				return nil, err
			}
			out.Objects = append(out.Objects, b)
		}
		return out, nil
	}()
	return resp, s.finish(ctx, "List", caller, err)
}

func (s *Server) Delete(ctx context.Context, req *configv1.DeleteRequest) (*configv1.DeleteResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "Delete", caller, err)
	}
	resp, err := func() (*configv1.DeleteResponse, error) {
		if !caller.isAdmin() {
			return nil, fmt.Errorf("%w: %s may not delete configuration", errPermission, caller)
		}
		_, key, err := s.resolve(req.GetRef(), true)
		if err != nil {
			return nil, err
		}
		rv, err := parseResourceVersion(req.GetResourceVersion())
		if err != nil {
			return nil, err
		}
		st, err := s.store.Delete(ctx, key, rv)
		if err != nil {
			return nil, err
		}
		out, err := st.JSON()
		return &configv1.DeleteResponse{Object: out}, err
	}()
	return resp, s.finish(ctx, "Delete", caller, err)
}

// watchBatchBytes bounds the objects of one WatchResponse well below
// gRPC's default 4 MiB receive limit; a larger single object still goes
// alone (objects are capped below 1 MiB).
const watchBatchBytes = 1 << 20

// Watch is served from the replica's watch cache (package watchhub), fed by
// the change feed: etcd sees one watcher however many clients watch. A
// revision the cache no longer covers, a cache reset and a client too slow
// to keep up all end the watch with OutOfRange: list again, then watch
// from the list's revision.
func (s *Server) Watch(req *configv1.WatchRequest, stream configv1.ConfigService_WatchServer) error {
	ctx := stream.Context()
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return s.finish(ctx, "Watch", caller, err)
	}
	err = func() error {
		if !caller.canRead() {
			return fmt.Errorf("%w: %s may not read configuration", errPermission, caller)
		}
		if req.GetAfterRevision() < 0 {
			return fmt.Errorf("%w: after_revision: %d is negative", store.ErrInvalid, req.GetAfterRevision())
		}
		var filter watchhub.Filter
		if req.GetRef().GetKind() != "" {
			kind, _, err := s.resolve(req.GetRef(), false)
			if err != nil {
				return err
			}
			filter = watchhub.Filter{Group: kind.KeyGroup(), Kind: kind.Name(), Namespace: req.GetRef().GetNamespace()}
		}
		if s.hub == nil {
			return fmt.Errorf("%w: this server has no watch cache", store.ErrUnavailable)
		}
		w, err := s.hub.Watch(ctx, filter, req.GetAfterRevision())
		if err != nil {
			return err
		}
		defer w.Close()
		for {
			evs, err := w.Next(ctx, watchBatchBytes)
			if err != nil {
				return err
			}
			resp := &configv1.WatchResponse{Events: make([]*configv1.WatchEvent, 0, len(evs))}
			for _, e := range evs {
				resp.Events = append(resp.Events, &configv1.WatchEvent{Type: watchType(e.Type), Object: e.Object, Revision: e.Revision})
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			s.watchSent.Add(ctx, int64(len(evs)))
		}
	}()
	if ctx.Err() != nil {
		return nil
	}
	return s.finish(ctx, "Watch", caller, err)
}

func watchType(t store.EventType) configv1.WatchEventType {
	switch t {
	case store.Added:
		return configv1.WatchEventType_WATCH_EVENT_TYPE_ADDED
	case store.Modified:
		return configv1.WatchEventType_WATCH_EVENT_TYPE_MODIFIED
	case store.Deleted:
		return configv1.WatchEventType_WATCH_EVENT_TYPE_DELETED
	}
	return configv1.WatchEventType_WATCH_EVENT_TYPE_UNSPECIFIED
}

func (s *Server) Status(ctx context.Context, req *configv1.StatusRequest) (*configv1.StatusResponse, error) {
	caller, err := callerFrom(ctx, s.insecure)
	if err != nil {
		return nil, s.finish(ctx, "Status", caller, err)
	}
	resp, err := func() (*configv1.StatusResponse, error) {
		if !caller.canRead() {
			return nil, fmt.Errorf("%w: %s may not read configuration", errPermission, caller)
		}
		_, key, err := s.resolve(req.GetRef(), true)
		if err != nil {
			return nil, err
		}
		st, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		return statusResponse(s.dist, st.Revision), nil
	}()
	return resp, s.finish(ctx, "Status", caller, err)
}

// resolve finds the kind of a reference and, with named, its storage key.
func (s *Server) resolve(ref *configv1.ObjectRef, named bool) (*resource.Kind, resource.Key, error) {
	if ref.GetKind() == "" {
		return nil, resource.Key{}, fmt.Errorf("%w: ref.kind is required", store.ErrInvalid)
	}
	kind, err := s.lookupKind(ref)
	if err != nil {
		return nil, resource.Key{}, err
	}
	if !named {
		return kind, resource.Key{}, nil
	}
	if ref.GetName() == "" {
		return nil, resource.Key{}, fmt.Errorf("%w: ref.name is required", store.ErrInvalid)
	}
	ns := ref.GetNamespace()
	switch {
	case kind.Namespaced() && ns == "":
		return nil, resource.Key{}, fmt.Errorf("%w: ref.namespace is required for %s", store.ErrInvalid, kind.Name())
	case !kind.Namespaced():
		ns = resource.ClusterScopeSegment
	}
	return kind, resource.Key{Group: kind.KeyGroup(), Kind: kind.Name(), Namespace: ns, Name: ref.GetName()}, nil
}

func (s *Server) lookupKind(ref *configv1.ObjectRef) (*resource.Kind, error) {
	if ref.GetApiVersion() != "" {
		if k, ok := s.kinds.ByAPIVersionKind(ref.GetApiVersion(), ref.GetKind()); ok {
			return k, nil
		}
		return nil, fmt.Errorf("%w: unknown kind %s %s", store.ErrInvalid, ref.GetApiVersion(), ref.GetKind())
	}
	if ref.GetGroup() != "" {
		if k, ok := s.kinds.ByGroupKind(ref.GetGroup(), ref.GetKind()); ok {
			return k, nil
		}
		return nil, fmt.Errorf("%w: unknown kind %s in group %s", store.ErrInvalid, ref.GetKind(), ref.GetGroup())
	}
	var found []*resource.Kind
	for _, k := range s.kinds.All() {
		if strings.EqualFold(k.Name(), ref.GetKind()) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("%w: unknown kind %q", store.ErrInvalid, ref.GetKind())
	}
	return nil, fmt.Errorf("%w: kind %q is ambiguous; give its group", store.ErrInvalid, ref.GetKind())
}

func parseResourceVersion(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: resource_version: invalid value %q", store.ErrInvalid, s)
	}
	return v, nil
}

// statusResponse renders the distribution of revision rev; without a
// tracker no proxy is known.
func statusResponse(t *proxystatus.Tracker, rev int64) *configv1.StatusResponse {
	out := &configv1.StatusResponse{Revision: rev}
	if t == nil {
		return out
	}
	d := t.Status(rev)
	out.ProxiesTotal, out.ProxiesConverged = int32(d.Total), int32(d.Converged)
	for _, p := range d.Pending {
		out.Pending = append(out.Pending, proxyState(p))
	}
	for _, p := range d.Rejected {
		out.Rejected = append(out.Rejected, proxyState(p))
	}
	return out
}

func proxyState(p proxystatus.Proxy) *configv1.ProxyState {
	return &configv1.ProxyState{
		ProxyId: p.ID, Replica: p.Replica, AckedRevision: p.AckedRevision,
		NackedRevision: p.NackedRevision, NackError: p.NackError,
	}
}
