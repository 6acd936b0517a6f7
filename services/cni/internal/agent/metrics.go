package agent

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/ambitmesh/ambit/services/cni/internal/cnievent"
)

// Metrics are the agent's instruments.
type Metrics struct {
	meter     metric.Meter
	latency   metric.Float64Histogram
	failures  metric.Int64Counter
	events    metric.Int64Counter
	enrolledG metric.Int64ObservableGauge
}

// NewMetrics creates the instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{meter: meter}
	var err error
	if m.latency, err = meter.Float64Histogram("ambit_cni_enrollment_duration_seconds",
		metric.WithDescription("From the moment a pod should be in the mesh (its ADD, or a label change) until redirection is installed and ztunnel acknowledged it."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if m.failures, err = meter.Int64Counter("ambit_cni_enrollment_failures_total",
		metric.WithDescription("Failed enrollment steps, by reason (redirect, ztunnel, status).")); err != nil {
		return nil, err
	}
	if m.events, err = meter.Int64Counter("ambit_cni_events_total",
		metric.WithDescription("CNI plugin events handled, by command and result.")); err != nil {
		return nil, err
	}
	return m, nil
}

func noopMetrics() *Metrics {
	m, _ := NewMetrics(noop.NewMeterProvider().Meter(""))
	return m
}

// observeEnrolled publishes the number of enrolled pods as a gauge.
func (m *Metrics) observeEnrolled(count func() int) {
	g, err := m.meter.Int64ObservableGauge("ambit_cni_pods_enrolled",
		metric.WithDescription("Pods on this node currently enrolled in the mesh."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(count()))
			return nil
		}))
	if err == nil {
		m.enrolledG = g
	}
}

func (m *Metrics) enrolled(ctx context.Context, d time.Duration) {
	m.latency.Record(ctx, d.Seconds())
}

func (m *Metrics) failure(ctx context.Context, reason string) {
	m.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
}

func (m *Metrics) event(ctx context.Context, cmd cnievent.Command, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.events.Add(ctx, 1, metric.WithAttributes(attribute.String("command", string(cmd)), attribute.String("result", result)))
}
