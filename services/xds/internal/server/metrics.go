package server

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/ambitmesh/ambit/services/xds/internal/server"

// Metric names. Counters carry _total themselves because the Prometheus
// exporter adds no suffixes (DESIGN §7).
const (
	MetricStreams         = "ambit_xds_streams"
	MetricPushes          = "ambit_xds_pushes_total"
	MetricPushedResources = "ambit_xds_pushed_resources_total"
	MetricPushLatency     = "ambit_xds_push_latency_seconds"
	MetricConvergence     = "ambit_xds_convergence_seconds"
	MetricNACKs           = "ambit_xds_nacks_total"
	MetricResources       = "ambit_xds_resources"
	MetricGeneration      = "ambit_xds_generation"
	MetricRevision        = "ambit_xds_revision"
	MetricRejectedStreams = "ambit_xds_rejected_streams_total"
)

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 30}

type metrics struct {
	streams     metric.Int64UpDownCounter
	pushes      metric.Int64Counter
	pushed      metric.Int64Counter
	pushLatency metric.Float64Histogram
	convergence metric.Float64Histogram
	nacks       metric.Int64Counter
	rejected    metric.Int64Counter
	reg         metric.Registration
}

func newMetrics(mp metric.MeterProvider, s *Server) (*metrics, error) {
	mt := mp.Meter(instrumentationName)
	m := &metrics{}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.streams, err = mt.Int64UpDownCounter(MetricStreams, metric.WithDescription("Open xDS streams by api (delta, sotw)."))
	add(err)
	m.pushes, err = mt.Int64Counter(MetricPushes, metric.WithDescription("xDS responses sent, by type."))
	add(err)
	m.pushed, err = mt.Int64Counter(MetricPushedResources, metric.WithDescription("Resources sent in xDS responses, by type."))
	add(err)
	m.pushLatency, err = mt.Float64Histogram(MetricPushLatency, metric.WithUnit("s"),
		metric.WithDescription("From the change-feed event to the xDS response carrying it, per stream."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	add(err)
	m.convergence, err = mt.Float64Histogram(MetricConvergence, metric.WithUnit("s"),
		metric.WithDescription("From the change-feed event to the proxy's ACK of it, per stream."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	add(err)
	m.nacks, err = mt.Int64Counter(MetricNACKs, metric.WithDescription("xDS responses rejected by proxies, by type."))
	add(err)
	m.rejected, err = mt.Int64Counter(MetricRejectedStreams, metric.WithDescription("Streams refused before serving, by reason."))
	add(err)
	resources, err := mt.Int64ObservableGauge(MetricResources, metric.WithDescription("Resources in the current snapshot, by type."))
	add(err)
	generation, err := mt.Int64ObservableGauge(MetricGeneration, metric.WithDescription("Generation of the snapshot last pushed to streams."))
	add(err)
	revision, err := mt.Int64ObservableGauge(MetricRevision, metric.WithDescription("Feed revision of the snapshot last pushed to streams."))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.reg, err = mt.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		cur := s.cache.Current()
		for _, url := range cur.TypeURLs() {
			o.ObserveInt64(resources, int64(cur.Len(url)), metric.WithAttributes(attribute.String("type", url)))
		}
		settled := s.settled.Load()
		o.ObserveInt64(generation, int64(settled.Generation()))
		o.ObserveInt64(revision, settled.Revision())
		return nil
	}, resources, generation, revision)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func typeAttr(url string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("type", url))
}
