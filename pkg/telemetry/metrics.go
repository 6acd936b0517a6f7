package telemetry

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// newRegistry returns the component's private Prometheus registry with the
// Go runtime and process collectors.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register collector: %w", err)
		}
	}
	return reg, nil
}

// newMeterProvider exports to reg and, when configured, over OTLP.
//
// The Prometheus exporter only escapes names to the Prometheus character
// set (UnderscoreEscapingWithoutSuffixes): it appends neither unit nor
// _total suffixes, so names chosen to match Istio's come out unchanged.
// Scope labels are dropped for the same reason, so two meters of one
// component must not create instruments of the same name. target_info is
// kept as the standard place for resource attributes.
func newMeterProvider(ctx context.Context, o Options, res *resource.Resource, reg prometheus.Registerer) (*sdkmetric.MeterProvider, error) {
	prom, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if otlpEnabled(o.lookupEnv(), envOTLPEndpoint, envOTLPMetricsEndpoint) {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	for _, r := range o.MetricReaders {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	return sdkmetric.NewMeterProvider(opts...), nil
}
