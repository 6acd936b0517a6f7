package telemetry_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/ambitmesh/ambit/pkg/telemetry"
)

func TestNATSHeaderRoundTrip(t *testing.T) {
	tel := setup(t, telemetry.Options{})
	tracer := tel.Tracer("test")

	member, err := baggage.NewMember("tenant", "blue")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	ctx, parent := tracer.Start(ctx, "publish")
	defer parent.End()

	msg := nats.NewMsg("ambit.changes.core.Pod.default")
	msg.Header = telemetry.InjectNATS(ctx, msg.Header)

	for _, key := range []string{"traceparent", "baggage"} {
		if msg.Header.Get(key) == "" {
			t.Fatalf("header %q missing (case-sensitive): %v", key, msg.Header)
		}
	}

	got := telemetry.ExtractNATS(context.Background(), msg.Header)
	_, child := tracer.Start(got, "consume")
	defer child.End()

	// The child's parent is read back through the SDK's read-only view.
	ro, ok := child.(interface{ Parent() trace.SpanContext })
	if !ok {
		t.Fatalf("span %T does not expose its parent", child)
	}
	if g, w := child.SpanContext().TraceID(), parent.SpanContext().TraceID(); g != w {
		t.Errorf("child trace id %s, want %s", g, w)
	}
	if g, w := ro.Parent().SpanID(), parent.SpanContext().SpanID(); g != w {
		t.Errorf("child parent span id %s, want %s", g, w)
	}
	if !ro.Parent().IsRemote() {
		t.Errorf("extracted parent should be remote")
	}
	if v := baggage.FromContext(got).Member("tenant").Value(); v != "blue" {
		t.Errorf("baggage tenant = %q, want blue", v)
	}
}

func TestExtractNATSWithoutHeaders(t *testing.T) {
	for _, h := range []nats.Header{nil, {}, {"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}} {
		ctx := telemetry.ExtractNATS(context.Background(), h)
		if trace.SpanContextFromContext(ctx).IsValid() {
			t.Errorf("header %v: got a span context, want none (keys are case-sensitive)", h)
		}
	}
}
