package server

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// StreamAggregatedResources serves one state-of-the-world ADS stream, for
// clients that do not speak delta. Every response of a type carries all
// of the client's resources of that type, so it costs what the protocol
// costs; the stream keeps the subscribed names and the last nonce per type.
func (s *Server) StreamAggregatedResources(stream grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]) error {
	return toStatus(s.serveSotW(stream))
}

var apiSotW = metric.WithAttributes(attribute.String("api", "sotw"))

func (s *Server) serveSotW(stream grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]) error {
	ctx := stream.Context()
	principal, err := s.authenticatePrincipal(ctx)
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	proxy, err := s.authorizeNode(ctx, principal, req.GetNode())
	if err != nil {
		return err
	}
	ss := &sotwStream{
		srv: s, id: s.nextID.Add(1), proxy: proxy, principal: principal, since: s.opts.Now(),
		wake: make(chan struct{}, 1), types: map[string]*sotwType{},
	}
	s.addStream(ss)
	s.m.streams.Add(ctx, 1, apiSotW)
	defer func() {
		ss.close()
		s.removeStream(ss)
		s.m.streams.Add(context.WithoutCancel(ctx), -1, apiSotW)
	}()
	if err := ss.handle(req); err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err == nil {
				err = ss.handle(req)
			}
			if err != nil {
				recvErr <- err
				return
			}
		}
	}()
	if err := s.awaitReady(ctx, recvErr); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-recvErr:
			return err
		case <-ss.wake:
		}
		if err := ss.cycle(stream.Send); err != nil {
			return err
		}
	}
}

type sotwStream struct {
	srv       *Server
	id        uint64
	proxy     proxyInfo
	principal Principal
	since     time.Time
	wake      chan struct{}

	mu       sync.Mutex
	types    map[string]*sotwType
	pending  []*push
	nonceSeq uint64
}

type sotwType struct {
	url      string
	wildcard bool
	names    []string // sorted, replaced (never modified) on change
	dirty    bool
	started  bool
	sending  bool
	view     snapshot.TypeSnapshot // last sent (for wildcard change detection)

	lastNonce string
	lastGen   uint64
	lastRev   int64
	lastFl    *flight
	answered  bool

	acked ackState
	nack  *nackState
}

func (t *sotwType) caughtUp() bool {
	return t.started && !t.sending && !t.dirty && t.answered && t.nack == nil && t.acked.gen == t.lastGen
}

func (ss *sotwStream) handle(req *discovery.DiscoveryRequest) error {
	url := req.GetTypeUrl()
	if url == "" {
		return coded(codes.InvalidArgument, "type_url is required")
	}
	now := ss.srv.opts.Now()
	names := slices.Clone(req.GetResourceNames())
	slices.Sort(names)
	names = slices.Compact(names)
	wildcard := len(names) == 0 || slices.Contains(names, "*")
	if wildcard {
		names = slices.DeleteFunc(names, func(n string) bool { return n == "*" })
	}
	if len(names) > ss.srv.opts.MaxSubscriptions {
		return coded(codes.ResourceExhausted, "more than %d resource names for %s", ss.srv.opts.MaxSubscriptions, url)
	}

	ss.mu.Lock()
	t := ss.types[url]
	if t == nil && len(ss.types) >= maxTypesPerStream {
		ss.mu.Unlock()
		return coded(codes.ResourceExhausted, "a stream may subscribe to at most %d types", maxTypesPerStream)
	}
	first := t == nil
	var oldNames []string
	oldWildcard := false
	if !first {
		// A request naming an older response is stale: the client has not
		// seen the newest one yet, and will answer it.
		if req.GetResponseNonce() != t.lastNonce {
			ss.mu.Unlock()
			return nil
		}
		if t.lastNonce != "" && !t.answered {
			t.answered = true
			if d := req.GetErrorDetail(); d != nil {
				msg := truncate(d.GetMessage(), maxNackErrorBytes)
				ss.srv.log.Warn("proxy rejected a response", "proxy", ss.proxy.ID, "type", url, "revision", t.lastRev, "error", msg)
				t.nack = &nackState{gen: t.lastGen, rev: t.lastRev, err: msg, at: now}
				ss.srv.m.nacks.Add(context.Background(), 1, typeAttr(url))
				t.lastFl.settle(false, now, ss.srv.m)
			} else {
				t.acked = ackState{gen: t.lastGen, rev: t.lastRev, at: now}
				t.nack = nil
				t.lastFl.settle(true, now, ss.srv.m)
			}
			t.lastFl = nil
		}
		oldNames, oldWildcard = t.names, t.wildcard
	}
	changed := first || wildcard != oldWildcard || !slices.Equal(names, oldNames)
	ss.mu.Unlock()
	if !changed {
		return nil
	}

	added, removed := setDiff(oldNames, names)
	if wildcard && !oldWildcard {
		ss.srv.reg.setWildcard(url, ss, true)
	}
	ss.srv.reg.addKeys(url, ss, added)
	ss.mu.Lock()
	if first {
		t = &sotwType{url: url}
		ss.types[url] = t
	}
	t.names, t.wildcard, t.dirty = names, wildcard, true
	ss.mu.Unlock()
	if !wildcard && oldWildcard {
		ss.srv.reg.setWildcard(url, ss, false)
	}
	ss.srv.reg.removeKeys(url, ss, removed)
	signal(ss.wake)
	return nil
}

// setDiff returns what b adds to a and what it drops (both sorted).
func setDiff(a, b []string) (added, removed []string) {
	for _, n := range b {
		if _, ok := slices.BinarySearch(a, n); !ok {
			added = append(added, n)
		}
	}
	for _, n := range a {
		if _, ok := slices.BinarySearch(b, n); !ok {
			removed = append(removed, n)
		}
	}
	return added, removed
}

func (ss *sotwStream) notify(url, key string, p *push) bool {
	ss.mu.Lock()
	t := ss.types[url]
	if t == nil || (key == "" && !t.wildcard) {
		ss.mu.Unlock()
		return false
	}
	if key != "" {
		if _, ok := slices.BinarySearch(t.names, key); !ok {
			ss.mu.Unlock()
			return false
		}
	}
	t.dirty = true
	fresh := false
	if n := len(ss.pending); n == 0 || ss.pending[n-1] != p {
		p.attach()
		if len(ss.pending) >= maxPendingPushes {
			ss.pending[0].done()
			ss.pending = slices.Delete(ss.pending, 0, 1)
		}
		ss.pending = append(ss.pending, p)
		fresh = true
	}
	ss.mu.Unlock()
	signal(ss.wake)
	return fresh
}

type sotwJob struct {
	t        *sotwType
	to       snapshot.TypeSnapshot
	gen      uint64
	rev      int64
	wildcard bool
	names    []string
}

func (ss *sotwStream) cycle(send func(*discovery.DiscoveryResponse) error) error {
	now := ss.srv.opts.Now()
	ss.mu.Lock()
	target := ss.srv.target.Load()
	fl := &flight{pushes: ss.pending, outstanding: 1, sentAt: now}
	ss.pending = nil
	var jobs []*sotwJob
	for url, t := range ss.types {
		if t.dirty || (t.wildcard && t.started && !t.view.Same(target.Type(url))) {
			t.dirty, t.sending = false, true
			jobs = append(jobs, &sotwJob{t: t, to: target.Type(url), gen: target.Generation(), rev: target.Revision(), wildcard: t.wildcard, names: t.names})
		}
	}
	ss.mu.Unlock()
	slices.SortFunc(jobs, func(a, b *sotwJob) int { return compareStrings(a.t.url, b.t.url) })

	var err error
	for _, j := range jobs {
		var bodies []*anypb.Any
		if j.wildcard {
			bodies = make([]*anypb.Any, 0, j.to.Len())
			j.to.Range(func(r *snapshot.Resource) bool { bodies = append(bodies, r.Body); return true })
		} else {
			seen := map[string]bool{}
			for _, n := range j.names {
				if r := j.to.Resolve(n); r != nil && !seen[r.Name] {
					seen[r.Name] = true
					bodies = append(bodies, r.Body)
				}
			}
		}
		resp := &discovery.DiscoveryResponse{
			VersionInfo:  strconv.FormatInt(j.rev, 10),
			Resources:    bodies,
			TypeUrl:      j.t.url,
			ControlPlane: ss.srv.cp,
		}
		ss.mu.Lock()
		ss.nonceSeq++
		resp.Nonce = strconv.FormatUint(ss.nonceSeq, 10)
		if j.t.lastFl != nil {
			// Superseded before it was answered.
			j.t.lastFl.settle(false, now, ss.srv.m)
		}
		fl.outstanding++
		j.t.lastNonce, j.t.lastGen, j.t.lastRev, j.t.lastFl, j.t.answered = resp.Nonce, j.gen, j.rev, fl, false
		ss.mu.Unlock()
		ss.srv.m.pushes.Add(context.Background(), 1, typeAttr(j.t.url))
		ss.srv.m.pushed.Add(context.Background(), int64(len(bodies)), typeAttr(j.t.url))
		if err = send(resp); err != nil {
			break
		}
	}
	if len(jobs) > 0 {
		for _, p := range fl.pushes {
			if !p.at.IsZero() {
				ss.srv.m.pushLatency.Record(context.Background(), now.Sub(p.at).Seconds())
			}
		}
	}
	ss.mu.Lock()
	for _, j := range jobs {
		j.t.sending, j.t.started, j.t.view = false, true, j.to
	}
	fl.release(now, ss.srv.m)
	ss.mu.Unlock()
	return err
}

func (ss *sotwStream) close() {
	now := ss.srv.opts.Now()
	ss.mu.Lock()
	type reg struct {
		url      string
		wildcard bool
		names    []string
	}
	var regs []reg
	for url, t := range ss.types {
		if t.lastFl != nil {
			t.lastFl.settle(false, now, ss.srv.m)
			t.lastFl = nil
		}
		regs = append(regs, reg{url, t.wildcard, t.names})
	}
	for _, p := range ss.pending {
		p.done()
	}
	ss.pending = nil
	ss.mu.Unlock()
	for _, r := range regs {
		if r.wildcard {
			ss.srv.reg.setWildcard(r.url, ss, false)
		}
		ss.srv.reg.removeKeys(r.url, ss, r.names)
	}
}
