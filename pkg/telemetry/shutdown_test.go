package telemetry_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/pkg/telemetry"
)

// collector is an in-process OTLP/gRPC receiver that remembers what it got.
type collector struct {
	colltrace.UnimplementedTraceServiceServer
	collmetrics.UnimplementedMetricsServiceServer

	mu       sync.Mutex
	spans    []string // span names
	metrics  []string // metric names
	services []string // service.name of every resource seen
}

func (c *collector) Export(_ context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		c.services = append(c.services, serviceName(rs.GetResource().GetAttributes()))
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s.GetName())
			}
		}
	}
	return &colltrace.ExportTraceServiceResponse{}, nil
}

// metricsService adapts collector to the metrics service, whose Export
// method has the same name as the trace service's.
type metricsService struct{ *collector }

func (m metricsService) Export(_ context.Context, req *collmetrics.ExportMetricsServiceRequest) (*collmetrics.ExportMetricsServiceResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		m.services = append(m.services, serviceName(rm.GetResource().GetAttributes()))
		for _, sm := range rm.GetScopeMetrics() {
			for _, x := range sm.GetMetrics() {
				m.metrics = append(m.metrics, x.GetName())
			}
		}
	}
	return &collmetrics.ExportMetricsServiceResponse{}, nil
}

func serviceName(attrs []*commonpb.KeyValue) string {
	for _, a := range attrs {
		if a.GetKey() == "service.name" {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

// startCollector serves OTLP on a random loopback port and returns its URL.
func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	colltrace.RegisterTraceServiceServer(srv, c)
	collmetrics.RegisterMetricsServiceServer(srv, metricsService{c})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return c, "http://" + ln.Addr().String()
}

// Shutdown must flush spans and metrics to OTLP and stop every goroutine
// (checked by goleak in TestMain).
func TestShutdownFlushesOTLP(t *testing.T) {
	coll, endpoint := startCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)

	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Options{Component: "ca", Version: "v9", LookupEnv: nil /* the real environment */})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(ctx, "sign")
	span.End()
	counter, err := tel.Meter("test").Int64Counter("ambit_ca_certs_signed_total")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 1)

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}

	coll.mu.Lock()
	defer coll.mu.Unlock()
	if !slices.Contains(coll.spans, "sign") {
		t.Errorf("collector spans = %v, want sign", coll.spans)
	}
	if !slices.Contains(coll.metrics, "ambit_ca_certs_signed_total") {
		t.Errorf("collector metrics = %v, want ambit_ca_certs_signed_total", coll.metrics)
	}
	for _, s := range coll.services {
		if s != "ambit-ca" {
			t.Errorf("service.name = %q, want ambit-ca", s)
		}
	}
}

func TestShutdownWithoutExporters(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Component: "xds", LookupEnv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(context.Background(), "op")
	if !span.SpanContext().IsValid() {
		t.Error("span without exporter has no valid ids")
	}
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
