package changefeed

import (
	"context"
	"encoding/json"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TraceOp returns the etcd operation a writer adds to its transaction so
// that the feed continues the writer's trace: a put of TraceKey holding the
// trace context of ctx, injected with prop (nil: W3C trace context). The
// publisher pairs it with the resource events of the same revision and
// starts each publish span as a child of it. ok is false when ctx carries
// no valid span; the write then simply has no trace.
//
// Every write transaction carries its own TraceKey put, so a transaction
// without one has no trace rather than an older write's: the value is only
// read from events of the same revision.
//
//	txn.Then(clientv3.OpPut(key, obj), traceOp)
func TraceOp(ctx context.Context, prop propagation.TextMapPropagator) (op clientv3.Op, ok bool) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return clientv3.Op{}, false
	}
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	carrier := propagation.MapCarrier{}
	prop.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return clientv3.Op{}, false
	}
	b, err := json.Marshal(map[string]string(carrier))
	if err != nil {
		return clientv3.Op{}, false
	}
	return clientv3.OpPut(TraceKey, string(b)), true
}

// WithTrace appends TraceOp(ctx, prop) to ops when ctx has a span.
func WithTrace(ctx context.Context, prop propagation.TextMapPropagator, ops ...clientv3.Op) []clientv3.Op {
	if op, ok := TraceOp(ctx, prop); ok {
		return append(ops, op)
	}
	return ops
}

// traceCarrier decodes the value of TraceKey. A value that is not a JSON
// object of strings yields an empty carrier: traces are best effort and
// must never stop the feed.
func traceCarrier(v []byte) propagation.MapCarrier {
	m := map[string]string{}
	if err := json.Unmarshal(v, &m); err != nil {
		return propagation.MapCarrier{}
	}
	return m
}
