package zds

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/ambitmesh/ambit/services/cni/internal/zds"

// Metric names. Counters carry _total themselves because the Prometheus
// exporter adds no suffixes (DESIGN §7).
const (
	MetricConnections      = "ambit_cni_zds_connections"
	MetricMessagesSent     = "ambit_cni_zds_messages_sent_total"
	MetricAckErrors        = "ambit_cni_zds_ack_errors_total"
	MetricConnectionCloses = "ambit_cni_zds_connection_closes_total"
)

type metrics struct {
	connections metric.Int64UpDownCounter
	sent        metric.Int64Counter
	ackErrors   metric.Int64Counter
	closes      metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	mt := mp.Meter(instrumentationName)
	m := &metrics{}
	var errs []error
	var err error
	m.connections, err = mt.Int64UpDownCounter(MetricConnections,
		metric.WithDescription("ztunnel connections past the hello; more than one during a ztunnel upgrade."))
	errs = append(errs, err)
	m.sent, err = mt.Int64Counter(MetricMessagesSent,
		metric.WithDescription("ZDS requests sent to ztunnel, by type (add, del, snapshot_sent)."))
	errs = append(errs, err)
	m.ackErrors, err = mt.Int64Counter(MetricAckErrors,
		metric.WithDescription("ZDS requests ztunnel acked with an error, by type."))
	errs = append(errs, err)
	m.closes, err = mt.Int64Counter(MetricConnectionCloses,
		metric.WithDescription("ztunnel connections closed, by reason (peer_closed, ack_timeout, malformed, ...)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func typeAttr(t string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("type", t))
}

func (m *metrics) connClosed(reason error) {
	m.closes.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reasonLabel(reason))))
}
