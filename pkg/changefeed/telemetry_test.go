package changefeed

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceAndMetrics: a span started before a write is an ancestor of
// the consumer's apply span (write → publish → apply, one trace), and the
// feed's metrics are reported.
func TestTraceAndMetrics(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel := Telemetry{TracerProvider: tp, MeterProvider: mp, Logger: testLogger()}

	startPublisher(t, s, PublisherOptions{Telemetry: tel})
	var applyCtx trace.SpanContext
	gotApply := make(chan struct{})
	c := startConsumer(t, s, ConsumerOptions{Name: "traced", Telemetry: tel})
	key := ref(kindService, "default", "traced")
	c.rec.onApply = func(ctx context.Context, ev Event) {
		if ev.Object.Ref.Key() == key {
			applyCtx = trace.SpanContextFromContext(ctx)
			close(gotApply)
		}
	}
	eventually(t, 10*time.Second, "synced", func() bool { return c.Status().Synced })

	ctx, write := tp.Tracer("test").Start(context.Background(), "apply-config")
	if _, err := cli.Txn(ctx).Then(WithTrace(ctx, nil, clientv3.OpPut(key, `{"spec":{}}`))...).Commit(); err != nil {
		t.Fatal(err)
	}
	write.End()
	select {
	case <-gotApply:
	case <-time.After(10 * time.Second):
		t.Fatal("event not applied")
	}
	if !applyCtx.IsValid() {
		t.Fatal("Apply got no span")
	}
	if applyCtx.TraceID() != write.SpanContext().TraceID() {
		t.Fatalf("apply span in trace %s, write in %s", applyCtx.TraceID(), write.SpanContext().TraceID())
	}

	// Walk up from the apply span to the write span (the publish span ends
	// when its ack arrives, which may be after the apply).
	var ended map[trace.SpanID]sdktrace.ReadOnlySpan
	var chain []string
	eventually(t, 10*time.Second, "spans ended", func() bool {
		ended = map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, sp := range spans.Ended() {
			ended[sp.SpanContext().SpanID()] = sp
		}
		chain = chain[:0]
		for id := applyCtx.SpanID(); id.IsValid(); {
			sp, ok := ended[id]
			if !ok {
				return false
			}
			chain = append(chain, sp.Name())
			id = sp.Parent().SpanID()
		}
		return true
	})
	want := []string{"changefeed.apply", "changefeed.publish", "apply-config"}
	if len(chain) != len(want) || chain[0] != want[0] || chain[1] != want[1] || chain[2] != want[2] {
		t.Fatalf("span ancestry %v, want %v", chain, want)
	}
	pub := ended[ended[applyCtx.SpanID()].Parent().SpanID()]
	if pub.SpanKind() != trace.SpanKindProducer || ended[applyCtx.SpanID()].SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span kinds: publish %v, apply %v", pub.SpanKind(), ended[applyCtx.SpanID()].SpanKind())
	}

	// Metrics. Some are observed asynchronously (the lag needs the
	// stream's head, read by the consumer's own check), so collect until
	// every one has been reported once.
	names := []string{MetricPublishedEvents, MetricPublishDuration, MetricLeader, MetricLastPublishedRevision,
		MetricAppliedEvents, MetricLastAppliedRevision, MetricLagRevisions, MetricLagSeconds, MetricRelists}
	got := map[string]bool{}
	eventually(t, 20*time.Second, "every metric reported", func() bool {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				got[m.Name] = true
				if m.Name == MetricLastAppliedRevision {
					g := m.Data.(metricdata.Gauge[int64])
					if len(g.DataPoints) != 1 || g.DataPoints[0].Value < 1 {
						t.Errorf("%s = %+v", m.Name, g.DataPoints)
					}
				}
			}
		}
		for _, name := range names {
			if !got[name] {
				return false
			}
		}
		return true
	})
}
