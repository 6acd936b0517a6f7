package changefeed

import (
	"errors"
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

const instrumentationName = "github.com/ambitmesh/ambit/pkg/changefeed"

// Telemetry is what the feed reports through. Every field is optional.
type Telemetry struct {
	// Logger receives the feed's logs (nil discards them).
	Logger *slog.Logger
	// TracerProvider makes the publish and apply spans (nil: no spans).
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics (nil: no metrics).
	MeterProvider metric.MeterProvider
	// Propagator carries trace context through etcd (TraceKey) and NATS
	// headers (nil: W3C trace context).
	Propagator propagation.TextMapPropagator
}

func (t *Telemetry) setDefaults() {
	if t.Logger == nil {
		t.Logger = slog.New(slog.DiscardHandler)
	}
	if t.TracerProvider == nil {
		t.TracerProvider = tracenoop.NewTracerProvider()
	}
	if t.MeterProvider == nil {
		t.MeterProvider = metricnoop.NewMeterProvider()
	}
	if t.Propagator == nil {
		t.Propagator = propagation.TraceContext{}
	}
}

// Metric names. Counters carry the _total suffix themselves because the
// Prometheus exporter runs without unit and type suffixes (DESIGN §7).
const (
	MetricPublishedEvents       = "ambit_changefeed_published_events_total"
	MetricPublishErrors         = "ambit_changefeed_publish_errors_total"
	MetricPublishDuration       = "ambit_changefeed_publish_duration_seconds"
	MetricLeader                = "ambit_changefeed_leader"
	MetricLastPublishedRevision = "ambit_changefeed_last_published_revision"
	MetricAppliedEvents         = "ambit_changefeed_applied_events_total"
	MetricLastAppliedRevision   = "ambit_changefeed_last_applied_revision"
	MetricLagRevisions          = "ambit_changefeed_consumer_lag_revisions"
	MetricLagSeconds            = "ambit_changefeed_consumer_lag_seconds"
	MetricRelists               = "ambit_changefeed_relists_total"
)

// Re-list reasons, the "reason" attribute of MetricRelists.
const (
	RelistStart       = "start"        // first sync
	RelistGap         = "gap"          // prev/kind_prev chain broken, or messages gone from the stream
	RelistResync      = "resync"       // resync marker after the listing
	RelistStreamReset = "stream_reset" // stream recreated (NATS lost its store) or rewound
	RelistHandler     = "handler"      // the Handler returned an error
	RelistDecode      = "decode"       // an undecodable message
	RelistError       = "error"        // listing or consuming failed; retried
)

var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

type publisherMetrics struct {
	published metric.Int64Counter
	errors    metric.Int64Counter
	duration  metric.Float64Histogram
	leader    metric.Int64ObservableGauge
	lastRev   metric.Int64ObservableGauge
}

func newPublisherMetrics(mp metric.MeterProvider) (*publisherMetrics, error) {
	m := mp.Meter(instrumentationName)
	var pm publisherMetrics
	var errs [5]error
	pm.published, errs[0] = m.Int64Counter(MetricPublishedEvents,
		metric.WithDescription("Change feed events published to JetStream, by type."))
	pm.errors, errs[1] = m.Int64Counter(MetricPublishErrors,
		metric.WithDescription("Failed change feed publishes, by reason (fenced, nats, duplicate)."))
	pm.duration, errs[2] = m.Float64Histogram(MetricPublishDuration, metric.WithUnit("s"),
		metric.WithDescription("Time of one fenced publish, request to ack."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	pm.leader, errs[3] = m.Int64ObservableGauge(MetricLeader,
		metric.WithDescription("1 while this publisher is the change feed leader."))
	pm.lastRev, errs[4] = m.Int64ObservableGauge(MetricLastPublishedRevision,
		metric.WithDescription("etcd revision of the last event this publisher published."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &pm, nil
}

type consumerMetrics struct {
	applied    metric.Int64Counter
	relists    metric.Int64Counter
	lagSeconds metric.Float64Histogram
	lastRev    metric.Int64ObservableGauge
	lagRevs    metric.Int64ObservableGauge
}

func newConsumerMetrics(mp metric.MeterProvider) (*consumerMetrics, error) {
	m := mp.Meter(instrumentationName)
	var cm consumerMetrics
	var errs [5]error
	cm.applied, errs[0] = m.Int64Counter(MetricAppliedEvents,
		metric.WithDescription("Change feed events applied by a consumer, by type."))
	cm.relists, errs[1] = m.Int64Counter(MetricRelists,
		metric.WithDescription("Consumer re-lists from etcd, by reason."))
	cm.lagSeconds, errs[2] = m.Float64Histogram(MetricLagSeconds, metric.WithUnit("s"),
		metric.WithDescription("Time from publish to apply of each event."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	cm.lastRev, errs[3] = m.Int64ObservableGauge(MetricLastAppliedRevision,
		metric.WithDescription("etcd revision the consumer's state reflects (lastAppliedRevision)."))
	cm.lagRevs, errs[4] = m.Int64ObservableGauge(MetricLagRevisions,
		metric.WithDescription("Revisions between the newest event on the stream and the last applied one."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &cm, nil
}
