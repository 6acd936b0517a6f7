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
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// DeltaAggregatedResources serves one incremental ADS stream.
func (s *Server) DeltaAggregatedResources(stream grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]) error {
	return toStatus(s.serveDelta(stream))
}

func (s *Server) serveDelta(stream grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]) error {
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
	ds := &deltaStream{
		srv: s, id: s.nextID.Add(1), proxy: proxy, principal: principal, since: s.opts.Now(),
		wake: make(chan struct{}, 1), types: map[string]*deltaType{},
	}
	s.addStream(ds)
	s.m.streams.Add(ctx, 1, apiDelta)
	s.log.Debug("delta stream opened", "proxy", proxy.ID, "identity", principal.Identity.String())
	defer func() {
		ds.close()
		s.removeStream(ds)
		s.m.streams.Add(context.WithoutCancel(ctx), -1, apiDelta)
		s.log.Debug("delta stream closed", "proxy", proxy.ID)
	}()

	if err := ds.handle(req); err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		// Requests are folded into the stream's state and never wait for
		// the sender, so a client that keeps sending while it does not
		// read cannot deadlock the stream, however many types it uses.
		for {
			req, err := stream.Recv()
			if err == nil {
				err = ds.handle(req)
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
		case <-ds.wake:
		}
		if err := ds.cycle(stream.Send); err != nil {
			return err
		}
	}
}

var apiDelta = metric.WithAttributes(attribute.String("api", "delta"))

// deltaStream is one incremental ADS stream. The gRPC handler goroutine is
// its only sender; a second goroutine receives requests and folds them into
// the per-type state under mu, waking the sender through a one-slot
// channel. Per type it keeps no per-resource state for wildcard
// subscriptions (only the TypeSnapshot last sent), and for explicit
// subscriptions one entry per subscribed key.
type deltaStream struct {
	srv       *Server
	id        uint64
	proxy     proxyInfo
	principal Principal
	since     time.Time
	wake      chan struct{}

	mu       sync.Mutex
	types    map[string]*deltaType
	pending  []*push // pushes notified, not yet covered by a send cycle
	nonceSeq uint64
}

// sentKey is what the client was last given for one subscription key.
type sentKey struct {
	name     string // the resource's name; "" when reported absent
	version  string
	answered bool
}

// deltaType is the state of one type URL on one delta stream.
type deltaType struct {
	url      string
	wildcard bool
	// subs are the explicitly subscribed names and aliases.
	subs map[string]sentKey
	// dirtyKeys are subscriptions to re-evaluate: new ones and those the
	// dispatcher reported changed; allDirty replaces a set grown too large.
	dirtyKeys map[string]struct{}
	allDirty  bool
	// initial is the request's initial_resource_versions, until the first
	// send cycle consumed it.
	initial map[string]string
	// view is, for a wildcard subscription, the content the client was
	// sent; it pins only this type's index.
	view      snapshot.TypeSnapshot
	viewDirty bool
	// resync asks for a full comparison after the subscription turned
	// wildcard.
	resync  bool
	started bool
	sending bool
	sentGen uint64

	inflight []nonceRec
	acked    ackState
	nack     *nackState
}

type nonceRec struct {
	nonce string
	gen   uint64
	rev   int64
	final bool // the last response of its send cycle for this type
	fl    *flight
}

type ackState struct {
	gen uint64
	rev int64
	at  time.Time
}

type nackState struct {
	gen uint64
	rev int64
	err string
	at  time.Time
}

func (t *deltaType) hasWork() bool {
	return !t.started || t.initial != nil || len(t.dirtyKeys) > 0 || t.allDirty ||
		(t.wildcard && (t.viewDirty || t.resync))
}

// caughtUp reports whether the client has accepted everything it was sent
// for this type and nothing is left to send. The dispatcher marks a stream
// before publishing a snapshot as settled, so a caught-up type has the
// content of the settled snapshot even though it was never woken for it.
func (t *deltaType) caughtUp() bool {
	return t.started && !t.sending && !t.hasWork() && len(t.inflight) == 0 && t.nack == nil
}

// handle folds one request into the stream's state.
func (ds *deltaStream) handle(req *discovery.DeltaDiscoveryRequest) error {
	url := req.GetTypeUrl()
	if url == "" {
		return coded(codes.InvalidArgument, "type_url is required")
	}
	now := ds.srv.opts.Now()

	// Decide what changes and take the ACK/NACK.
	ds.mu.Lock()
	t := ds.types[url]
	if t == nil && len(ds.types) >= maxTypesPerStream {
		ds.mu.Unlock()
		return coded(codes.ResourceExhausted, "a stream may subscribe to at most %d types", maxTypesPerStream)
	}
	first := t == nil
	wasWildcard := t != nil && t.wildcard
	wildcard := wasWildcard
	if first {
		// No names in the first request is the legacy wildcard; "*" is the
		// explicit one.
		wildcard = len(req.GetResourceNamesSubscribe()) == 0
	}
	var add, drop []string
	for _, k := range req.GetResourceNamesSubscribe() {
		if k == "*" {
			wildcard = true
			continue
		}
		add = append(add, k)
	}
	for _, k := range req.GetResourceNamesUnsubscribe() {
		if k == "*" {
			wildcard = false
			continue
		}
		drop = append(drop, k)
	}
	held := 0
	if t != nil {
		held = len(t.subs)
		if nonce := req.GetResponseNonce(); nonce != "" {
			ds.ackLocked(t, nonce, req.GetErrorDetail(), now)
		}
	}
	ds.mu.Unlock()
	if held+len(add) > ds.srv.opts.MaxSubscriptions {
		return coded(codes.ResourceExhausted, "more than %d subscriptions to %s", ds.srv.opts.MaxSubscriptions, url)
	}

	// Register before the state changes: a dispatch after the sender reads
	// its target must find this stream.
	if wildcard && !wasWildcard {
		ds.srv.reg.setWildcard(url, ds, true)
	}
	ds.srv.reg.addKeys(url, ds, add)

	ds.mu.Lock()
	if first {
		t = &deltaType{url: url, wildcard: wildcard, initial: req.GetInitialResourceVersions()}
		if t.initial == nil {
			t.initial = map[string]string{}
		}
		ds.types[url] = t
	} else if wildcard != t.wildcard {
		t.wildcard = wildcard
		if wildcard {
			t.resync = true
		} else {
			// The client keeps what it has; remember it per subscription
			// and let go of the view.
			for k := range t.subs {
				t.subs[k] = keyState(t.view.Resolve(k))
			}
			t.view, t.viewDirty = snapshot.TypeSnapshot{}, false
		}
	}
	for _, k := range add {
		if t.subs == nil {
			t.subs = map[string]sentKey{}
		}
		// A subscription, even a repeated one, is always answered.
		t.subs[k] = sentKey{}
		t.markDirty(k)
	}
	for _, k := range drop {
		delete(t.subs, k)
		delete(t.dirtyKeys, k)
	}
	work := first || len(add) > 0 || (wildcard && !wasWildcard)
	ds.mu.Unlock()

	if !wildcard && wasWildcard {
		ds.srv.reg.setWildcard(url, ds, false)
	}
	ds.srv.reg.removeKeys(url, ds, drop)
	if work {
		signal(ds.wake)
	}
	return nil
}

func keyState(r *snapshot.Resource) sentKey {
	if r == nil {
		return sentKey{answered: true}
	}
	return sentKey{name: r.Name, version: r.Version, answered: true}
}

func (t *deltaType) markDirty(key string) {
	if t.allDirty {
		return
	}
	if len(t.dirtyKeys) >= maxDirtyKeys {
		t.allDirty, t.dirtyKeys = true, nil
		return
	}
	if t.dirtyKeys == nil {
		t.dirtyKeys = map[string]struct{}{}
	}
	t.dirtyKeys[key] = struct{}{}
}

// ackLocked applies an ACK or NACK. Unknown nonces (stale, or forgotten
// past maxInflight) are ignored. A NACK is recorded and nothing is resent:
// the next push comes with the next change of the type.
func (ds *deltaStream) ackLocked(t *deltaType, nonce string, detail *rpcstatus.Status, now time.Time) {
	i := slices.IndexFunc(t.inflight, func(r nonceRec) bool { return r.nonce == nonce })
	if i < 0 {
		return
	}
	rec := t.inflight[i]
	t.inflight = slices.Delete(t.inflight, i, i+1)
	if detail != nil {
		msg := truncate(detail.GetMessage(), maxNackErrorBytes)
		if msg == "" {
			msg = "rejected with code " + codes.Code(detail.GetCode()).String()
		}
		if t.nack == nil || t.nack.gen != rec.gen || t.nack.err != msg {
			ds.srv.log.Warn("proxy rejected a response", "proxy", ds.proxy.ID, "type", t.url,
				"revision", rec.rev, "generation", rec.gen, "error", msg)
		}
		t.nack = &nackState{gen: rec.gen, rev: rec.rev, err: msg, at: now}
		ds.srv.m.nacks.Add(context.Background(), 1, typeAttr(t.url))
		rec.fl.settle(false, now, ds.srv.m)
		return
	}
	if rec.final && rec.gen >= t.acked.gen {
		t.acked = ackState{gen: rec.gen, rev: rec.rev, at: now}
	}
	if t.nack != nil && rec.gen >= t.nack.gen {
		t.nack = nil
	}
	rec.fl.settle(true, now, ds.srv.m)
}

// notify implements watcher.
func (ds *deltaStream) notify(url, key string, p *push) bool {
	ds.mu.Lock()
	t := ds.types[url]
	switch {
	case t == nil:
		ds.mu.Unlock()
		return false
	case key == "":
		if !t.wildcard {
			ds.mu.Unlock()
			return false
		}
		t.viewDirty = true
	default:
		if _, ok := t.subs[key]; !ok {
			ds.mu.Unlock()
			return false
		}
		t.markDirty(key)
	}
	fresh := ds.addPendingLocked(p)
	ds.mu.Unlock()
	signal(ds.wake)
	return fresh
}

// addPendingLocked remembers p until a send cycle covers it; the stream
// then counts among those the push waits for. A stream that cannot keep up
// holds at most maxPendingPushes; older ones stop waiting for it.
func (ds *deltaStream) addPendingLocked(p *push) bool {
	if n := len(ds.pending); n > 0 && ds.pending[n-1] == p {
		return false
	}
	p.attach()
	if len(ds.pending) >= maxPendingPushes {
		ds.pending[0].done()
		ds.pending = slices.Delete(ds.pending, 0, 1)
	}
	ds.pending = append(ds.pending, p)
	return true
}

// deltaJob is what one send cycle does for one type.
type deltaJob struct {
	t    *deltaType
	to   snapshot.TypeSnapshot
	gen  uint64
	rev  int64
	must bool // a response is due even if empty (first one, new subscriptions)

	wildcard bool
	full     bool              // compare everything, against initial
	initial  map[string]string // names and versions the client has
	delta    bool              // send what changed from `from` to `to`
	from     snapshot.TypeSnapshot

	resources []*discovery.Resource // explicit subscriptions' part
	removed   []string
	sent      int
}

// cycle brings every type with work up to the current target: plan under
// the lock (cheap), send without it, then commit.
func (ds *deltaStream) cycle(send func(*discovery.DeltaDiscoveryResponse) error) error {
	now := ds.srv.opts.Now()
	ds.mu.Lock()
	// Read the target under the lock: the dispatcher stores it before it
	// takes this lock to mark the stream, so either this cycle sees the new
	// target or the marks land after it and wake the next one.
	target := ds.srv.target.Load()
	fl := &flight{pushes: ds.pending, outstanding: 1, sentAt: now}
	ds.pending = nil
	urls := make([]string, 0, len(ds.types))
	for url, t := range ds.types {
		if t.hasWork() || (t.wildcard && !t.view.Same(target.Type(url))) {
			urls = append(urls, url)
		}
	}
	slices.Sort(urls)
	jobs := make([]*deltaJob, 0, len(urls))
	for _, url := range urls {
		jobs = append(jobs, ds.planLocked(ds.types[url], target))
	}
	ds.mu.Unlock()

	var err error
	sent := 0
	for _, j := range jobs {
		if err = ds.run(j, fl, send); err != nil {
			break
		}
		sent += j.sent
	}
	if sent > 0 {
		for _, p := range fl.pushes {
			if !p.at.IsZero() {
				ds.srv.m.pushLatency.Record(context.Background(), now.Sub(p.at).Seconds())
			}
		}
	}
	ds.mu.Lock()
	for _, j := range jobs {
		ds.commitLocked(j, now)
	}
	fl.release(now, ds.srv.m) // the cycle's own hold
	ds.mu.Unlock()
	return err
}

// planLocked decides one type's work. Explicit subscriptions are resolved
// here, under the lock, since they are few; the wildcard part is left to
// run, which may iterate a whole type.
func (ds *deltaStream) planLocked(t *deltaType, target *snapshot.Snapshot) *deltaJob {
	to := target.Type(t.url)
	j := &deltaJob{t: t, to: to, gen: target.Generation(), rev: target.Revision(), must: !t.started}
	t.sending = true
	if t.wildcard {
		j.wildcard = true
		switch {
		case !t.started:
			j.full, j.initial = true, t.initial
		case t.resync:
			j.full, j.initial = true, heldVersions(t)
		case !t.view.Same(to):
			j.delta, j.from = true, t.view
		}
		t.viewDirty, t.resync = false, false
	}

	var keys []string
	if t.allDirty {
		keys = make([]string, 0, len(t.subs))
		for k := range t.subs {
			keys = append(keys, k)
		}
	} else {
		keys = make([]string, 0, len(t.dirtyKeys))
		for k := range t.dirtyKeys {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	t.dirtyKeys, t.allDirty = nil, false

	byName := map[string]*discovery.Resource{}
	var moved []string // names clients held for keys that now resolve elsewhere
	for _, k := range keys {
		sk, ok := t.subs[k]
		if !ok {
			continue
		}
		if !sk.answered {
			j.must = true
		}
		r := to.Resolve(k)
		if t.wildcard {
			// The wildcard part delivers every resource; an explicit key
			// only needs an answer when nothing answers to it.
			if r == nil && (!sk.answered || sk.name != "") {
				j.removed = append(j.removed, k)
			}
			t.subs[k] = keyState(r)
			continue
		}
		if r == nil {
			if !sk.answered || sk.name != "" {
				j.removed = append(j.removed, k)
			}
			if sk.name != "" && sk.name != k {
				moved = append(moved, sk.name)
			}
			t.subs[k] = keyState(nil)
			continue
		}
		if sk.name != "" && sk.name != r.Name {
			moved = append(moved, sk.name)
		}
		unchanged := sk.answered && sk.name == r.Name && sk.version == r.Version
		v, listed := t.initial[r.Name]
		clientHas := !t.started && listed && v == r.Version
		t.subs[k] = keyState(r)
		if unchanged || clientHas {
			continue
		}
		wr := byName[r.Name]
		if wr == nil {
			wr = wireResource(r)
			byName[r.Name] = wr
		}
		if k != r.Name {
			wr.Aliases = append(wr.Aliases, k)
		}
	}
	if !t.wildcard && (len(moved) > 0 || (!t.started && len(t.initial) > 0)) {
		held := map[string]bool{}
		for _, sk := range t.subs {
			if sk.name != "" {
				held[sk.name] = true
			}
		}
		for _, n := range moved {
			if !held[n] {
				j.removed = append(j.removed, n)
			}
		}
		if !t.started {
			// The client's initial resources no subscription holds.
			for n := range t.initial {
				if !held[n] {
					j.removed = append(j.removed, n)
				}
			}
		}
	}
	t.initial = nil // a wildcard job keeps it in j.initial
	for _, wr := range byName {
		j.resources = append(j.resources, wr)
	}
	slices.SortFunc(j.resources, func(a, b *discovery.Resource) int { return compareStrings(a.Name, b.Name) })
	slices.Sort(j.removed)
	j.removed = slices.DeleteFunc(slices.Compact(j.removed), func(n string) bool { return byName[n] != nil })
	return j
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// heldVersions is what an on-demand client holds, as initial versions for
// the full comparison when it turns wildcard.
func heldVersions(t *deltaType) map[string]string {
	m := make(map[string]string, len(t.subs))
	for _, sk := range t.subs {
		if sk.name != "" {
			m[sk.name] = sk.version
		}
	}
	return m
}

// wireResource is the Resource message of a snapshot resource. The body is
// shared by every stream (marshalling only reads it).
func wireResource(r *snapshot.Resource) *discovery.Resource {
	return &discovery.Resource{Name: r.Name, Version: r.Version, Resource: r.Body}
}

func wireSize(r *discovery.Resource) int {
	n := len(r.Name) + len(r.Version) + 16
	if r.Resource != nil {
		n += len(r.Resource.GetTypeUrl()) + len(r.Resource.GetValue())
	}
	for _, a := range r.Aliases {
		n += len(a) + 2
	}
	return n
}

// run sends one type's responses, splitting them at MaxResponseBytes.
func (ds *deltaStream) run(j *deltaJob, fl *flight, send func(*discovery.DeltaDiscoveryResponse) error) error {
	b := &responder{ds: ds, j: j, fl: fl, send: send, max: ds.srv.opts.MaxResponseBytes}
	for _, r := range j.resources {
		if err := b.add(r); err != nil {
			return err
		}
	}
	for _, n := range j.removed {
		if err := b.remove(n); err != nil {
			return err
		}
	}
	var err error
	switch {
	case j.full:
		if len(j.initial) > 0 {
			gone := make([]string, 0)
			for n := range j.initial {
				if j.to.Get(n) == nil {
					gone = append(gone, n)
				}
			}
			slices.Sort(gone)
			for _, n := range gone {
				if err := b.remove(n); err != nil {
					return err
				}
			}
		}
		j.to.Range(func(r *snapshot.Resource) bool {
			if v, ok := j.initial[r.Name]; ok && v == r.Version {
				return true
			}
			err = b.add(wireResource(r))
			return err == nil
		})
	case j.delta:
		for _, k := range j.to.ChangedKeys(j.from) {
			n, o := j.to.Get(k), j.from.Get(k)
			switch {
			case n == nil && o == nil: // an alias key
			case n == nil:
				err = b.remove(k)
			case o != nil && o.Version == n.Version:
			default:
				err = b.add(wireResource(n))
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	return b.finish()
}

// commitLocked records the end of a type's send cycle.
func (ds *deltaStream) commitLocked(j *deltaJob, now time.Time) {
	t := j.t
	t.sending = false
	t.started = true
	t.sentGen = j.gen
	if j.wildcard && t.wildcard { // (the client may have left wildcard meanwhile)
		t.view = j.to
	}
	// Nothing to send and nothing unanswered: the client has this
	// generation already.
	if j.sent == 0 && len(t.inflight) == 0 && t.nack == nil && j.gen > t.acked.gen {
		t.acked = ackState{gen: j.gen, rev: j.rev, at: now}
	}
}

// responder accumulates one type's response and sends it when full.
type responder struct {
	ds    *deltaStream
	j     *deltaJob
	fl    *flight
	send  func(*discovery.DeltaDiscoveryResponse) error
	max   int
	resp  *discovery.DeltaDiscoveryResponse
	bytes int
}

func (b *responder) add(r *discovery.Resource) error {
	size := wireSize(r)
	if b.resp != nil && b.bytes+size > b.max && b.bytes > 0 {
		if err := b.flush(false); err != nil {
			return err
		}
	}
	if b.resp == nil {
		b.resp = &discovery.DeltaDiscoveryResponse{}
	}
	b.resp.Resources = append(b.resp.Resources, r)
	b.bytes += size
	return nil
}

func (b *responder) remove(name string) error {
	size := len(name) + 2
	if b.resp != nil && b.bytes+size > b.max && b.bytes > 0 {
		if err := b.flush(false); err != nil {
			return err
		}
	}
	if b.resp == nil {
		b.resp = &discovery.DeltaDiscoveryResponse{}
	}
	b.resp.RemovedResources = append(b.resp.RemovedResources, name)
	b.bytes += size
	return nil
}

// finish sends the last response. A response is flushed early only when
// another item waits to be added, so whenever anything was sent the last
// response is still pending here and is the final one.
func (b *responder) finish() error {
	if b.resp == nil && b.j.must && b.j.sent == 0 {
		b.resp = &discovery.DeltaDiscoveryResponse{}
	}
	if b.resp == nil {
		return nil
	}
	return b.flush(true)
}

func (b *responder) flush(final bool) error {
	resp := b.resp
	b.resp, b.bytes = nil, 0
	resp.TypeUrl = b.j.t.url
	resp.SystemVersionInfo = strconv.FormatInt(b.j.rev, 10)
	resp.ControlPlane = b.ds.srv.cp
	resp.Nonce = b.ds.recordNonce(b.j, b.fl, final)
	b.j.sent++
	ctx := context.Background()
	b.ds.srv.m.pushes.Add(ctx, 1, typeAttr(b.j.t.url))
	if n := len(resp.Resources); n > 0 {
		b.ds.srv.m.pushed.Add(ctx, int64(n), typeAttr(b.j.t.url))
	}
	return b.send(resp)
}

// recordNonce registers a response before it is sent, so that an ACK
// racing the send is recognised.
func (ds *deltaStream) recordNonce(j *deltaJob, fl *flight, final bool) string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.nonceSeq++
	nonce := strconv.FormatUint(ds.nonceSeq, 10)
	t := j.t
	if len(t.inflight) >= maxInflight {
		t.inflight[0].fl.settle(false, ds.srv.opts.Now(), ds.srv.m)
		t.inflight = slices.Delete(t.inflight, 0, 1)
	}
	fl.outstanding++
	t.inflight = append(t.inflight, nonceRec{nonce: nonce, gen: j.gen, rev: j.rev, final: final, fl: fl})
	return nonce
}

// close releases everything the stream holds in the registry and in pushes.
func (ds *deltaStream) close() {
	now := ds.srv.opts.Now()
	ds.mu.Lock()
	type reg struct {
		url      string
		wildcard bool
		keys     []string
	}
	var regs []reg
	for url, t := range ds.types {
		for _, rec := range t.inflight {
			rec.fl.settle(false, now, ds.srv.m)
		}
		t.inflight = nil
		keys := make([]string, 0, len(t.subs))
		for k := range t.subs {
			keys = append(keys, k)
		}
		regs = append(regs, reg{url: url, wildcard: t.wildcard, keys: keys})
	}
	for _, p := range ds.pending {
		p.done()
	}
	ds.pending = nil
	ds.mu.Unlock()
	for _, r := range regs {
		if r.wildcard {
			ds.srv.reg.setWildcard(r.url, ds, false)
		}
		ds.srv.reg.removeKeys(r.url, ds, r.keys)
	}
}
