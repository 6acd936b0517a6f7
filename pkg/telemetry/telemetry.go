package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds the logger, providers and metrics registry of one
// component. Create it with Setup and release it with Shutdown.
type Telemetry struct {
	logger   *slog.Logger
	level    *slog.LevelVar
	tracer   *sdktrace.TracerProvider
	meter    *sdkmetric.MeterProvider
	registry *prometheus.Registry
	metrics  http.Handler
	prop     propagation.TextMapPropagator

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the component's telemetry. On error nothing is left running.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	if o.Component == "" {
		return nil, errors.New("telemetry: Options.Component is required")
	}
	lvl, err := parseLevel(o.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("telemetry: log level %q: %w", o.LogLevel, err)
	}
	t := &Telemetry{level: new(slog.LevelVar), prop: Propagator()}
	t.level.Set(lvl)
	t.logger = newLogger(o.logOutput(), t.level, o.LogSource, o.Component, o.Version)

	res, err := newResource(ctx, o)
	if err != nil {
		return nil, err
	}
	if t.registry, err = newRegistry(); err != nil {
		return nil, err
	}
	if t.tracer, err = newTracerProvider(ctx, o, res); err != nil {
		return nil, err
	}
	if t.meter, err = newMeterProvider(ctx, o, res, t.registry); err != nil {
		return nil, errors.Join(err, t.tracer.Shutdown(ctx))
	}
	t.metrics = promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(t.logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          t.registry,
		EnableOpenMetrics: true, // lets exemplars carry trace ids
	})

	if o.SetGlobal {
		otel.SetTracerProvider(t.tracer)
		otel.SetMeterProvider(t.meter)
		otel.SetTextMapPropagator(t.prop)
		slog.SetDefault(t.logger)
	}
	return t, nil
}

// Logger is the component's JSON logger. Log with the *Context methods
// (InfoContext, ...) so lines carry the trace and span ids.
func (t *Telemetry) Logger() *slog.Logger { return t.logger }

// LogLevel is the logger's level; setting it takes effect immediately, e.g.
// from an admin endpoint.
func (t *Telemetry) LogLevel() *slog.LevelVar { return t.level }

// TracerProvider is the component's tracer provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracer }

// Tracer is a shorthand for TracerProvider().Tracer(name).
func (t *Telemetry) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return t.tracer.Tracer(name, opts...)
}

// MeterProvider is the component's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meter }

// Meter is a shorthand for MeterProvider().Meter(name).
func (t *Telemetry) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return t.meter.Meter(name, opts...)
}

// Propagator is the W3C TraceContext+Baggage propagator (see Propagator).
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.prop }

// Registry is the private Prometheus registry behind Handler, for
// collectors written against client_golang directly.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// Handler serves the registry in the Prometheus text or OpenMetrics format,
// for mounting at /metrics.
func (t *Telemetry) Handler() http.Handler { return t.metrics }

// Shutdown flushes pending spans and metrics and stops the exporters. It is
// safe to call more than once; later calls return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.tracer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: tracer shutdown: %w", err))
		}
		if err := t.meter.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: meter shutdown: %w", err))
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}
