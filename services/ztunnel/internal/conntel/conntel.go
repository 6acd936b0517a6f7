// Package conntel is ztunnel's per-connection telemetry: Istio's TCP
// metrics with Istio's names and labels (DESIGN §2, §7), so existing
// dashboards work unchanged, and one JSON access-log line per connection.
//
// Both the source and the destination ztunnel report a mesh connection,
// told apart by the reporter label, as Istio's ztunnel does.
package conntel

import (
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Reporter values.
const (
	ReporterSource      = "source"
	ReporterDestination = "destination"
)

// Security values of connection_security_policy.
const (
	MutualTLS = "mutual_tls"
	Plaintext = "unknown"
)

// Peer is one end of a connection as telemetry names it.
type Peer struct {
	Workload  string
	Namespace string
	// Principal is the SPIFFE ID, "unknown" when the end presented none.
	Principal string
	// App and Version are the canonical service and revision.
	App     string
	Version string
	Cluster string
}

// Info describes a connection when it opens.
type Info struct {
	Reporter string
	Src, Dst Peer
	// DstService is the service host name when the client dialed a
	// service, else "unknown".
	DstService          string
	DstServiceNamespace string
	DstServiceName      string
	Security            string
	SrcAddr, DstAddr    netip.AddrPort
	// Direction is "inbound" or "outbound" for the access log.
	Direction string
}

// Recorder makes the instruments once and logs through log.
type Recorder struct {
	log    *slog.Logger
	opened metric.Int64Counter
	closed metric.Int64Counter
	sent   metric.Int64Counter
	recv   metric.Int64Counter
}

// New creates Istio's TCP instruments on meter.
func New(meter metric.Meter, log *slog.Logger) (*Recorder, error) {
	r := &Recorder{log: log}
	var err error
	if r.opened, err = meter.Int64Counter("istio_tcp_connections_opened_total", metric.WithDescription("TCP connections opened")); err != nil {
		return nil, err
	}
	if r.closed, err = meter.Int64Counter("istio_tcp_connections_closed_total", metric.WithDescription("TCP connections closed")); err != nil {
		return nil, err
	}
	if r.sent, err = meter.Int64Counter("istio_tcp_sent_bytes_total", metric.WithDescription("bytes sent by the source during TCP connections")); err != nil {
		return nil, err
	}
	if r.recv, err = meter.Int64Counter("istio_tcp_received_bytes_total", metric.WithDescription("bytes received by the source during TCP connections")); err != nil {
		return nil, err
	}
	return r, nil
}

// Conn is one connection being recorded.
type Conn struct {
	r      *Recorder
	info   Info
	attrs  metric.MeasurementOption
	start  time.Time
	sent   atomic.Int64 // source → destination
	recv   atomic.Int64 // destination → source
	closed atomic.Bool
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Open counts the connection as opened.
func (r *Recorder) Open(ctx context.Context, info Info) *Conn {
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("reporter", info.Reporter),
		attribute.String("source_workload", or(info.Src.Workload, "unknown")),
		attribute.String("source_workload_namespace", or(info.Src.Namespace, "unknown")),
		attribute.String("source_principal", or(info.Src.Principal, "unknown")),
		attribute.String("source_app", or(info.Src.App, "unknown")),
		attribute.String("source_canonical_service", or(info.Src.App, "unknown")),
		attribute.String("source_version", or(info.Src.Version, "unknown")),
		attribute.String("source_canonical_revision", or(info.Src.Version, "unknown")),
		attribute.String("source_cluster", or(info.Src.Cluster, "unknown")),
		attribute.String("destination_workload", or(info.Dst.Workload, "unknown")),
		attribute.String("destination_workload_namespace", or(info.Dst.Namespace, "unknown")),
		attribute.String("destination_principal", or(info.Dst.Principal, "unknown")),
		attribute.String("destination_app", or(info.Dst.App, "unknown")),
		attribute.String("destination_canonical_service", or(info.Dst.App, "unknown")),
		attribute.String("destination_version", or(info.Dst.Version, "unknown")),
		attribute.String("destination_canonical_revision", or(info.Dst.Version, "unknown")),
		attribute.String("destination_cluster", or(info.Dst.Cluster, "unknown")),
		attribute.String("destination_service", or(info.DstService, "unknown")),
		attribute.String("destination_service_namespace", or(info.DstServiceNamespace, "unknown")),
		attribute.String("destination_service_name", or(info.DstServiceName, "unknown")),
		attribute.String("request_protocol", "tcp"),
		attribute.String("response_flags", "-"),
		attribute.String("connection_security_policy", or(info.Security, Plaintext)),
	))
	r.opened.Add(ctx, 1, attrs)
	return &Conn{r: r, info: info, attrs: attrs, start: time.Now()}
}

// AddSent and AddReceived count bytes as they flow (from the source's
// point of view: sent = towards the destination).
func (c *Conn) AddSent(n int64)     { c.sent.Add(n) }
func (c *Conn) AddReceived(n int64) { c.recv.Add(n) }

// Close counts the connection closed, adds its bytes, and writes the
// access-log line. result is "ok" or why it ended ("denied", "upstream
// connect failure", ...). Closing twice does nothing.
func (c *Conn) Close(ctx context.Context, result string, err error) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	sent, recv := c.sent.Load(), c.recv.Load()
	c.r.sent.Add(ctx, sent, c.attrs)
	c.r.recv.Add(ctx, recv, c.attrs)
	c.r.closed.Add(ctx, 1, c.attrs)
	level := slog.LevelInfo
	attrs := []slog.Attr{
		slog.String("direction", c.info.Direction),
		slog.String("reporter", c.info.Reporter),
		slog.String("src.addr", c.info.SrcAddr.String()),
		slog.String("src.workload", c.info.Src.Workload),
		slog.String("src.namespace", c.info.Src.Namespace),
		slog.String("src.identity", c.info.Src.Principal),
		slog.String("dst.addr", c.info.DstAddr.String()),
		slog.String("dst.service", c.info.DstService),
		slog.String("dst.workload", c.info.Dst.Workload),
		slog.String("dst.namespace", c.info.Dst.Namespace),
		slog.String("dst.identity", c.info.Dst.Principal),
		slog.String("security", c.info.Security),
		slog.Int64("bytes_sent", sent),
		slog.Int64("bytes_recv", recv),
		slog.Duration("duration", time.Since(c.start)),
		slog.String("result", result),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		level = slog.LevelWarn
	}
	c.r.log.LogAttrs(ctx, level, "connection complete", attrs...)
}
