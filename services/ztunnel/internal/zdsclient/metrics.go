package zdsclient

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/ambitmesh/ambit/services/ztunnel/internal/zdsclient"

// Metric names. Counters carry _total themselves because the Prometheus
// exporter adds no suffixes (DESIGN §7).
const (
	MetricConnected        = "ambit_ztunnel_zds_connected"
	MetricRequests         = "ambit_ztunnel_zds_requests_total"
	MetricConnectionCloses = "ambit_ztunnel_zds_connection_closes_total"
)

type metrics struct {
	connected metric.Int64UpDownCounter
	requests  metric.Int64Counter
	closes    metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	mt := mp.Meter(instrumentationName)
	m := &metrics{}
	var errs []error
	var err error
	m.connected, err = mt.Int64UpDownCounter(MetricConnected,
		metric.WithDescription("1 while connected to the CNI agent's ZDS server (past the hello), else 0."))
	errs = append(errs, err)
	m.requests, err = mt.Int64Counter(MetricRequests,
		metric.WithDescription("ZDS requests handled, by type (add, del, keep, snapshot_sent) and result (ok, error)."))
	errs = append(errs, err)
	m.closes, err = mt.Int64Counter(MetricConnectionCloses,
		metric.WithDescription("ZDS connections ended or failed, by reason (dial, peer_closed, malformed, oversized, ...)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) request(o op, failed bool) {
	result := "ok"
	if failed {
		result = "error"
	}
	m.requests.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("type", o.String()), attribute.String("result", result)))
}

func (m *metrics) closed(reason error) {
	m.closes.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reasonLabel(reason))))
}
