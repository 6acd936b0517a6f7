package server

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// Metric names. Counters carry _total themselves: the Prometheus exporter
// runs without suffixing (DESIGN §7).
const (
	MetricIssued     = "ambit_ca_certificates_issued_total"
	MetricDenied     = "ambit_ca_requests_denied_total"
	MetricDuration   = "ambit_ca_sign_duration_seconds"
	MetricRootExpiry = "ambit_ca_root_expiry_seconds"
)

const instrumentationName = "github.com/ambitmesh/ambit/services/ca"

type metrics struct {
	issued   metric.Int64Counter
	denied   metric.Int64Counter
	duration metric.Float64Histogram
	reg      metric.Registration
}

func newMetrics(mp metric.MeterProvider, store *keystore.Store, now func() time.Time) (*metrics, error) {
	meter := mp.Meter(instrumentationName)
	m := &metrics{}
	var err error
	if m.issued, err = meter.Int64Counter(MetricIssued,
		metric.WithDescription("Certificates issued, by identity kind (workload, node, control-plane, admin) and API (csr, join).")); err != nil {
		return nil, err
	}
	if m.denied, err = meter.Int64Counter(MetricDenied,
		metric.WithDescription("Requests refused, by reason (audit log has the details).")); err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram(MetricDuration,
		metric.WithDescription("Time to handle a certificate request that was granted, from receipt to response."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)); err != nil {
		return nil, err
	}
	expiry, err := meter.Float64ObservableGauge(MetricRootExpiry,
		metric.WithDescription("Seconds until the earliest expiry in each trusted authority's chain."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		snap := store.Current()
		for _, a := range snap.Ordered {
			earliest := a.Chain[0].NotAfter
			for _, c := range a.Chain[1:] {
				if c.NotAfter.Before(earliest) {
					earliest = c.NotAfter
				}
			}
			o.ObserveFloat64(expiry, earliest.Sub(now()).Seconds(), metric.WithAttributes(
				attribute.String("authority", a.Record.ID),
				attribute.Bool("active", a.Record.ID == snap.State.Active)))
		}
		return nil
	}, expiry)
	if err != nil {
		return nil, err
	}
	return m, nil
}
