package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Propagator returns the W3C TraceContext and Baggage propagator, the
// wire format every Ambit hop uses (gRPC metadata, NATS headers, HBONE).
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// NATSHeaderCarrier adapts a nats.Header to propagation.TextMapCarrier.
//
// Unlike http.Header, NATS headers are case-sensitive, so keys are used
// exactly as the propagator names them: traceparent, tracestate, baggage.
type NATSHeaderCarrier nats.Header

var _ propagation.TextMapCarrier = NATSHeaderCarrier(nil)

// Get returns the first value of key.
func (c NATSHeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c NATSHeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header keys.
func (c NATSHeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectNATS writes the trace context and baggage of ctx into h and
// returns it, allocating h when nil so it can be used as
// msg.Header = telemetry.InjectNATS(ctx, msg.Header).
func InjectNATS(ctx context.Context, h nats.Header) nats.Header {
	if h == nil {
		h = nats.Header{}
	}
	Propagator().Inject(ctx, NATSHeaderCarrier(h))
	return h
}

// ExtractNATS returns ctx carrying the remote span context and baggage
// found in h. Start a span from the result to continue the sender's trace.
func ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return Propagator().Extract(ctx, NATSHeaderCarrier(h))
}
