package certs

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/status"
)

const instrumentationName = "github.com/ambitmesh/ambit/services/ztunnel/internal/certs"

// Metric names. Counters carry _total themselves because the Prometheus
// exporter adds no suffixes (DESIGN §7).
const (
	MetricIdentities      = "ambit_ztunnel_workload_identities"
	MetricRequests        = "ambit_ztunnel_certificate_requests_total"
	MetricRequestDuration = "ambit_ztunnel_certificate_request_duration_seconds"
	MetricEarliestExpiry  = "ambit_ztunnel_certificate_earliest_expiry_seconds"
)

type metrics struct {
	identities metric.Int64UpDownCounter
	requests   metric.Int64Counter
	duration   metric.Float64Histogram
	reg        metric.Registration
}

func newMetrics(mp metric.MeterProvider, m *Manager) (*metrics, error) {
	mt := mp.Meter(instrumentationName)
	out := &metrics{}
	var errs []error
	var err error
	out.identities, err = mt.Int64UpDownCounter(MetricIdentities,
		metric.WithDescription("Workload identities retained on the node, each with its certificate."))
	errs = append(errs, err)
	out.requests, err = mt.Int64Counter(MetricRequests,
		metric.WithDescription("Certificate requests to the CA, by kind (initial, renewal), result (ok, error) and gRPC code."))
	errs = append(errs, err)
	out.duration, err = mt.Float64Histogram(MetricRequestDuration,
		metric.WithDescription("Time of a certificate request to the CA, key generation included."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	errs = append(errs, err)
	expiry, err := mt.Float64ObservableGauge(MetricEarliestExpiry,
		metric.WithDescription("Seconds until the earliest expiry among the workload certificates held; negative once one expired (renewal failing)."),
		metric.WithUnit("s"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out.reg, err = mt.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var earliest time.Time
		for _, s := range m.Status() {
			if !s.NotAfter.IsZero() && (earliest.IsZero() || s.NotAfter.Before(earliest)) {
				earliest = s.NotAfter
			}
		}
		if !earliest.IsZero() {
			o.ObserveFloat64(expiry, time.Until(earliest).Seconds())
		}
		return nil
	}, expiry)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (m *metrics) request(renewal bool, err error, took time.Duration) {
	kind, result := "initial", "ok"
	if renewal {
		kind = "renewal"
	}
	if err != nil {
		result = "error"
	}
	attrs := metric.WithAttributes(attribute.String("kind", kind), attribute.String("result", result),
		attribute.String("code", status.Code(err).String()))
	m.requests.Add(context.Background(), 1, attrs)
	m.duration.Record(context.Background(), took.Seconds(), attrs)
}

func (m *metrics) close() error { return m.reg.Unregister() }
