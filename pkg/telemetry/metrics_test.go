package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/ambitmesh/ambit/pkg/telemetry"
)

// scrape GETs /metrics with the given Accept header.
func scrape(t *testing.T, url, accept string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape status %d: %s", resp.StatusCode, body)
	}
	return string(body)
}

func TestMetricsKeepIstioNames(t *testing.T) {
	tel := setup(t, telemetry.Options{Component: "ztunnel", Version: "v0.0.1"})
	m := tel.Meter("ztunnel")
	opened, err := m.Int64Counter("istio_tcp_connections_opened_total", metric.WithUnit("{connection}"))
	if err != nil {
		t.Fatal(err)
	}
	sent, err := m.Int64Counter("istio_tcp_sent_bytes_total", metric.WithUnit("By"))
	if err != nil {
		t.Fatal(err)
	}
	attrs := metric.WithAttributes(
		attribute.String("reporter", "source"),
		attribute.String("source_workload", "productpage-v1"),
	)
	opened.Add(context.Background(), 2, attrs)
	sent.Add(context.Background(), 512, attrs)

	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()

	formats := []struct{ name, accept string }{
		{"text", ""},
		{"openmetrics", "application/openmetrics-text; version=1.0.0"},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			body := scrape(t, srv.URL, f.accept)
			for _, want := range []string{
				`istio_tcp_connections_opened_total{reporter="source",source_workload="productpage-v1"} 2`,
				`istio_tcp_sent_bytes_total{reporter="source",source_workload="productpage-v1"} 512`,
				"go_goroutines ",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("missing %q in:\n%s", want, body)
				}
			}
			for _, bad := range []string{"otel_scope", "_total_total", "_bytes_total_bytes", "connections_opened_total_"} {
				if strings.Contains(body, bad) {
					t.Errorf("unexpected %q in:\n%s", bad, body)
				}
			}
		})
	}
}

// Two Telemetry values in one process must not share metrics.
func TestRegistriesArePrivate(t *testing.T) {
	a := setup(t, telemetry.Options{Component: "a"})
	b := setup(t, telemetry.Options{Component: "b"})
	c, err := a.Meter("a").Int64Counter("only_in_a")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)

	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	if body := scrape(t, srv.URL, ""); strings.Contains(body, "only_in_a") {
		t.Fatalf("b's registry exposes a's metric:\n%s", body)
	}
}
