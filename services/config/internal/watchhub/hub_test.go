package watchhub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// render is a stand-in for StoreRender: the object is "<key>@<revision>",
// and values starting with "bad" do not render.
func render(ev changefeed.Event) (watchhub.Event, error) {
	if strings.HasPrefix(string(ev.Object.Value), "bad") {
		return watchhub.Event{}, errors.New("does not decode")
	}
	typ := store.Modified
	if ev.Type == changefeed.EventDelete {
		typ = store.Deleted
	}
	return watchhub.Event{
		Type: typ, Revision: ev.Position.Revision, Ref: ev.Object.Ref,
		Object: fmt.Appendf(nil, "%s@%d", ev.Object.Ref.Key(), ev.Position.Revision),
	}, nil
}

func newHub(t *testing.T, o watchhub.Options) *watchhub.Hub {
	t.Helper()
	if o.Render == nil {
		o.Render = render
	}
	h, err := watchhub.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ref(kind, ns, name string) changefeed.ResourceRef {
	return changefeed.ResourceRef{Group: "core", Kind: kind, Namespace: ns, Name: name}
}

// feed drives a hub the way a changefeed.Consumer does.
type feed struct {
	t   *testing.T
	h   *watchhub.Hub
	rev int64
	idx int32
}

func (f *feed) reset(rev int64) {
	f.t.Helper()
	f.rev, f.idx = rev, 0
	if err := f.h.Reset(context.Background(), changefeed.Snapshot{Revision: rev}); err != nil {
		f.t.Fatal(err)
	}
}

// put applies one event at the next revision (same revision with sameTxn).
func (f *feed) put(r changefeed.ResourceRef, sameTxn bool) int64 {
	f.t.Helper()
	return f.event(changefeed.EventPut, r, sameTxn, "{}")
}

func (f *feed) event(typ changefeed.EventType, r changefeed.ResourceRef, sameTxn bool, value string) int64 {
	f.t.Helper()
	if sameTxn {
		f.idx++
	} else {
		f.rev, f.idx = f.rev+1, 0
	}
	ev := changefeed.Event{Type: typ, Position: changefeed.Position{Revision: f.rev, Index: f.idx},
		Object: changefeed.Object{Ref: r, Value: []byte(value), ModRevision: f.rev}}
	if err := f.h.Apply(context.Background(), ev); err != nil {
		f.t.Fatal(err)
	}
	return f.rev
}

func watch(t *testing.T, h *watchhub.Hub, f watchhub.Filter, after int64) *watchhub.Watcher {
	t.Helper()
	w, err := h.Watch(context.Background(), f, after)
	if err != nil {
		t.Fatalf("watch after %d: %v", after, err)
	}
	t.Cleanup(w.Close)
	return w
}

// drain returns the events pending for w without blocking (a canceled
// context ends Next once nothing is pending).
func drain(t *testing.T, w *watchhub.Watcher) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []string
	for {
		evs, err := w.Next(ctx, 1<<20)
		if errors.Is(err, context.Canceled) {
			return out
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		for _, e := range evs {
			out = append(out, string(e.Object))
		}
	}
}

func nextErr(t *testing.T, w *watchhub.Watcher) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := w.Next(ctx, 1<<20)
		if err != nil {
			return err
		}
	}
}

func keys(rs ...string) string { return strings.Join(rs, ",") }

func TestFilterAndResume(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	f := &feed{t: t, h: h}
	f.reset(10)
	f.put(ref("Service", "a", "s1"), false)  // 11
	f.put(ref("Pod", "a", "p1"), false)      // 12
	f.put(ref("Service", "b", "s2"), false)  // 13
	f.put(ref("Namespace", "_", "a"), false) // 14
	f.put(ref("Service", "a", "s3"), false)  // 15
	f.put(ref("Service", "a", "s4"), true)   // 15.1
	svcA := watchhub.Filter{Group: "core", Kind: "Service", Namespace: "a"}
	svc := watchhub.Filter{Group: "core", Kind: "Service"}

	cases := []struct {
		name   string
		filter watchhub.Filter
		after  int64
		want   string
	}{
		{"everything from the start", watchhub.Filter{}, 10, keys(
			"/ambit/v1/res/core/Service/a/s1@11", "/ambit/v1/res/core/Pod/a/p1@12", "/ambit/v1/res/core/Service/b/s2@13",
			"/ambit/v1/res/core/Namespace/_/a@14", "/ambit/v1/res/core/Service/a/s3@15", "/ambit/v1/res/core/Service/a/s4@15")},
		{"one kind", svc, 11, keys("/ambit/v1/res/core/Service/b/s2@13", "/ambit/v1/res/core/Service/a/s3@15", "/ambit/v1/res/core/Service/a/s4@15")},
		{"one kind in one namespace", svcA, 10, keys("/ambit/v1/res/core/Service/a/s1@11", "/ambit/v1/res/core/Service/a/s3@15", "/ambit/v1/res/core/Service/a/s4@15")},
		{"namespace only", watchhub.Filter{Namespace: "_"}, 10, keys("/ambit/v1/res/core/Namespace/_/a@14")},
		{"a whole transaction or nothing", svcA, 15, ""},
		{"from now", svc, 0, ""},
		{"ahead of the hub", svc, 17, ""},
	}
	watchers := map[string]*watchhub.Watcher{}
	for _, c := range cases {
		w := watch(t, h, c.filter, c.after)
		watchers[c.name] = w
		if got := keys(drain(t, w)...); got != c.want {
			t.Errorf("%s: backlog\n got %s\nwant %s", c.name, got, c.want)
		}
	}
	// Live events go to matching watchers only, and only after their
	// revision.
	f.put(ref("Service", "a", "s5"), false) // 16
	f.put(ref("Service", "b", "s6"), false) // 17
	f.put(ref("Service", "a", "s7"), false) // 18
	live := map[string]string{
		"everything from the start":      keys("/ambit/v1/res/core/Service/a/s5@16", "/ambit/v1/res/core/Service/b/s6@17", "/ambit/v1/res/core/Service/a/s7@18"),
		"one kind":                       keys("/ambit/v1/res/core/Service/a/s5@16", "/ambit/v1/res/core/Service/b/s6@17", "/ambit/v1/res/core/Service/a/s7@18"),
		"one kind in one namespace":      keys("/ambit/v1/res/core/Service/a/s5@16", "/ambit/v1/res/core/Service/a/s7@18"),
		"namespace only":                 "",
		"a whole transaction or nothing": keys("/ambit/v1/res/core/Service/a/s5@16", "/ambit/v1/res/core/Service/a/s7@18"),
		"from now":                       keys("/ambit/v1/res/core/Service/a/s5@16", "/ambit/v1/res/core/Service/b/s6@17", "/ambit/v1/res/core/Service/a/s7@18"),
		"ahead of the hub":               keys("/ambit/v1/res/core/Service/a/s7@18"),
	}
	for name, want := range live {
		if got := keys(drain(t, watchers[name])...); got != want {
			t.Errorf("%s: live\n got %s\nwant %s", name, got, want)
		}
	}
	if st := h.Status(); st.Watchers != len(cases) || st.Revision != 18 || st.Oldest != 10 || st.Events != 9 || !st.Ready {
		t.Errorf("status = %+v", st)
	}
}

func TestTooOld(t *testing.T) {
	h := newHub(t, watchhub.Options{Capacity: 3})
	f := &feed{t: t, h: h}
	f.reset(10)
	// The hub started at 10: it cannot serve what happened before.
	if _, err := h.Watch(context.Background(), watchhub.Filter{}, 9); !errors.Is(err, watchhub.ErrRelist) || !strings.Contains(err.Error(), "too old resource version: 9") {
		t.Fatalf("watch before the hub's start: %v", err)
	}
	f.put(ref("Service", "a", "s1"), false) // 11
	f.put(ref("Service", "a", "s2"), false) // 12
	f.put(ref("Service", "a", "s3"), true)  // 12.1
	// The ring is full; it still covers everything after 10.
	if got := keys(drain(t, watch(t, h, watchhub.Filter{}, 10))...); got != keys("/ambit/v1/res/core/Service/a/s1@11", "/ambit/v1/res/core/Service/a/s2@12", "/ambit/v1/res/core/Service/a/s3@12") {
		t.Fatalf("full ring: %s", got)
	}
	f.put(ref("Service", "a", "s4"), false) // 13: drops 11
	f.put(ref("Service", "a", "s5"), false) // 14: drops 12.0, so 12 is no longer whole
	for _, after := range []int64{10, 11} {
		_, err := h.Watch(context.Background(), watchhub.Filter{}, after)
		if !errors.Is(err, watchhub.ErrRelist) || !strings.Contains(err.Error(), "too old resource version") {
			t.Fatalf("watch after %d: %v", after, err)
		}
	}
	if got := keys(drain(t, watch(t, h, watchhub.Filter{}, 12))...); got != keys("/ambit/v1/res/core/Service/a/s4@13", "/ambit/v1/res/core/Service/a/s5@14") {
		t.Fatalf("watch after 12: %s", got)
	}
	if st := h.Status(); st.Oldest != 12 || st.Events != 3 {
		t.Fatalf("status = %+v", st)
	}
}

func TestByteBound(t *testing.T) {
	size := len("/ambit/v1/res/core/Service/a/s1@11")
	h := newHub(t, watchhub.Options{MaxBytes: 2 * size})
	f := &feed{t: t, h: h}
	f.reset(10)
	f.put(ref("Service", "a", "s1"), false) // 11
	f.put(ref("Service", "a", "s2"), false) // 12
	f.put(ref("Service", "a", "s3"), false) // 13: drops 11
	if st := h.Status(); st.Events != 2 || st.Bytes != 2*size || st.Oldest != 11 {
		t.Fatalf("status = %+v", st)
	}
	if _, err := h.Watch(context.Background(), watchhub.Filter{}, 10); !errors.Is(err, watchhub.ErrRelist) {
		t.Fatalf("watch after a dropped event: %v", err)
	}
	// An event larger than the bound is still kept, alone.
	f.put(ref("Service", "a", "a-much-longer-name-than-the-others"), false) // 14
	if st := h.Status(); st.Events != 1 || st.Oldest != 13 {
		t.Fatalf("status after a large event = %+v", st)
	}
}

func TestResetEndsWatches(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	f := &feed{t: t, h: h}
	f.reset(10)
	f.put(ref("Service", "a", "s1"), false) // 11
	all := watch(t, h, watchhub.Filter{}, 10)
	svc := watch(t, h, watchhub.Filter{Group: "core", Kind: "Service"}, 11)
	f.reset(20) // the consumer re-listed
	for name, w := range map[string]*watchhub.Watcher{"all": all, "svc": svc} {
		if err := nextErr(t, w); !errors.Is(err, watchhub.ErrRelist) || !strings.Contains(err.Error(), "reset at revision 20") {
			t.Errorf("%s after reset: %v", name, err)
		}
	}
	if st := h.Status(); st.Watchers != 0 || st.Events != 0 || st.Oldest != 20 || st.Resets != 2 {
		t.Fatalf("status after reset = %+v", st)
	}
	// Clients re-list (at 20 or later) and watch again.
	if _, err := h.Watch(context.Background(), watchhub.Filter{}, 11); !errors.Is(err, watchhub.ErrRelist) {
		t.Fatalf("watch from before the reset: %v", err)
	}
	w := watch(t, h, watchhub.Filter{}, 20)
	f.put(ref("Service", "a", "s2"), false)
	if got := keys(drain(t, w)...); got != "/ambit/v1/res/core/Service/a/s2@21" {
		t.Fatalf("after re-watch: %s", got)
	}
}

func TestSlowWatcherIsEndedAlone(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := newHub(t, watchhub.Options{WatcherBuffer: 2, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	f := &feed{t: t, h: h}
	f.reset(10)
	slow := watch(t, h, watchhub.Filter{}, 0)
	fast := watch(t, h, watchhub.Filter{}, 0)
	other := watch(t, h, watchhub.Filter{Group: "core", Kind: "Pod"}, 0) // sees none of it
	var got []string
	for i := range 5 {
		// Apply returns at once even though slow never reads.
		f.put(ref("Service", "a", fmt.Sprint("s", i)), false)
		got = append(got, drain(t, fast)...)
	}
	if len(got) != 5 {
		t.Fatalf("fast watcher got %v", got)
	}
	if err := nextErr(t, slow); !errors.Is(err, watchhub.ErrRelist) || !strings.Contains(err.Error(), "fell 2 events behind") {
		t.Fatalf("slow watcher: %v", err)
	}
	f.put(ref("Pod", "a", "p"), false)
	if got := drain(t, other); len(got) != 1 {
		t.Fatalf("other watcher got %v", got)
	}
	if st := h.Status(); st.Watchers != 2 {
		t.Fatalf("watchers = %d, want 2", st.Watchers)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	values := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					name := m.Name
					if r, ok := dp.Attributes.Value("reason"); ok {
						name += "/" + r.AsString()
					}
					values[name] += dp.Value
				}
			}
		}
	}
	if values["ambit_config_watchers"] != 2 || values["ambit_config_watch_relists_total/slow"] != 1 {
		t.Fatalf("metrics = %v", values)
	}
}

func TestWatchWaitsUntilReady(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Watch(ctx, watchhub.Filter{}, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("watch on an unsynced hub with a canceled context: %v", err)
	}
	select {
	case <-h.Ready():
		t.Fatal("ready before the first snapshot")
	default:
	}
	type result struct {
		w   *watchhub.Watcher
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := h.Watch(context.Background(), watchhub.Filter{}, 0)
		done <- result{w, err}
	}()
	f := &feed{t: t, h: h}
	f.reset(7)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.w.Close()
	if r.w.After() != 7 {
		t.Fatalf("watch from now started after %d, want the snapshot's 7", r.w.After())
	}
}

func TestRenderErrorEndsOnlyMatchingWatches(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	f := &feed{t: t, h: h}
	f.reset(10)
	svc := watch(t, h, watchhub.Filter{Group: "core", Kind: "Service"}, 0)
	pods := watch(t, h, watchhub.Filter{Group: "core", Kind: "Pod"}, 0)
	f.put(ref("Service", "a", "ok"), false)
	f.event(changefeed.EventPut, ref("Service", "a", "broken"), false, "bad")
	f.put(ref("Pod", "a", "p"), false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := svc.Next(ctx, 1<<20)
	if err != nil || len(evs) != 1 || string(evs[0].Object) != "/ambit/v1/res/core/Service/a/ok@11" {
		t.Fatalf("events before the broken one: %v %v", evs, err)
	}
	if _, err := svc.Next(ctx, 1<<20); err == nil || !strings.Contains(err.Error(), "does not decode") {
		t.Fatalf("reaching the broken event: %v", err)
	}
	if got := drain(t, pods); keys(got...) != "/ambit/v1/res/core/Pod/a/p@13" {
		t.Fatalf("pod watcher: %v", got)
	}
}

func TestBatchesAreBounded(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	f := &feed{t: t, h: h}
	f.reset(10)
	for i := range 10 {
		f.put(ref("Service", "a", fmt.Sprint("s", i)), false)
	}
	w := watch(t, h, watchhub.Filter{}, 10)
	size := len("/ambit/v1/res/core/Service/a/s0@11")
	ctx := context.Background()
	var sizes []int
	for n := 0; n < 10; {
		evs, err := w.Next(ctx, 3*size)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(evs))
		n += len(evs)
	}
	if fmt.Sprint(sizes) != "[3 3 3 1]" {
		t.Fatalf("batch sizes %v", sizes)
	}
	// A single object larger than the bound still goes, alone.
	f.put(ref("Service", "a", "s10"), false)
	f.put(ref("Service", "a", "s11"), false)
	if evs, err := w.Next(ctx, 1); err != nil || len(evs) != 1 {
		t.Fatalf("oversized: %d events, %v", len(evs), err)
	}
}

func TestCloseEndsWatches(t *testing.T) {
	h := newHub(t, watchhub.Options{})
	(&feed{t: t, h: h}).reset(1)
	w := watch(t, h, watchhub.Filter{}, 0)
	h.Close()
	if err := nextErr(t, w); !errors.Is(err, watchhub.ErrClosed) {
		t.Fatalf("open watch after close: %v", err)
	}
	if _, err := h.Watch(context.Background(), watchhub.Filter{}, 0); !errors.Is(err, watchhub.ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
	// A hub closed before it synced does not keep callers waiting.
	h2 := newHub(t, watchhub.Options{})
	h2.Close()
	if _, err := h2.Watch(context.Background(), watchhub.Filter{}, 0); !errors.Is(err, watchhub.ErrClosed) {
		t.Fatalf("watch on a closed, unsynced hub: %v", err)
	}
}

// TestConcurrentWatchersSeeEveryEventOnce: watchers joining at different
// points while events flow each see exactly the events after their
// revision, in order (run with -race).
func TestConcurrentWatchersSeeEveryEventOnce(t *testing.T) {
	const total = 2000
	h := newHub(t, watchhub.Options{Capacity: total, WatcherBuffer: total})
	f := &feed{t: t, h: h}
	const base = 1000
	f.reset(base)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			after := int64(base + i*total/32)
			w, err := h.Watch(ctx, watchhub.Filter{}, after)
			if err != nil {
				errs <- err
				return
			}
			defer w.Close()
			for next := after + 1; next <= base+total; {
				evs, err := w.Next(ctx, 64<<10)
				if err != nil {
					errs <- fmt.Errorf("watcher after %d at %d: %w", after, next, err)
					return
				}
				for _, e := range evs {
					if e.Revision != next {
						errs <- fmt.Errorf("watcher after %d: got %d, want %d", after, e.Revision, next)
						return
					}
					next++
				}
			}
		}()
	}
	for i := range total {
		f.put(ref("Service", "a", fmt.Sprint("s", i)), false)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
