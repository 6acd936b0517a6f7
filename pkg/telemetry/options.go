package telemetry

import (
	"io"
	"log/slog"
	"os"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Options configures Setup. Only Component is required.
type Options struct {
	// Component is the short component name ("xds", "ca", ...). The
	// OpenTelemetry service.name becomes "ambit-<component>".
	Component string
	// Version is reported as service.version and on every log line.
	Version string
	// InstanceID, when set, becomes service.instance.id, telling replicas
	// of one component apart (for example the pod or replica name).
	InstanceID string

	// LogLevel is the initial level: debug, info, warn or error, with an
	// optional offset as slog accepts it ("debug-2"). Empty means info.
	LogLevel string
	// LogOutput receives the JSON log lines. Nil means os.Stderr.
	LogOutput io.Writer
	// LogSource adds the source file and line to every log line.
	LogSource bool

	// LookupEnv decides whether the OTLP exporters are enabled; nil means
	// os.LookupEnv. The exporters themselves always read their detailed
	// settings from the process environment, as the OTel spec defines.
	LookupEnv func(string) (string, bool)

	// SpanProcessors are added to the tracer provider besides the OTLP
	// batcher, e.g. a tracetest.SpanRecorder in tests.
	SpanProcessors []sdktrace.SpanProcessor
	// MetricReaders are added to the meter provider besides Prometheus and
	// OTLP, e.g. a sdkmetric.ManualReader in tests.
	MetricReaders []sdkmetric.Reader

	// SetGlobal installs the providers and propagator as the OpenTelemetry
	// globals and the logger as slog's default, for third-party libraries
	// that only consult the globals. Off by default; a binary's run
	// function turns it on once, tests never do.
	SetGlobal bool
}

func (o Options) logOutput() io.Writer {
	if o.LogOutput != nil {
		return o.LogOutput
	}
	return os.Stderr
}

func (o Options) lookupEnv() func(string) (string, bool) {
	if o.LookupEnv != nil {
		return o.LookupEnv
	}
	return os.LookupEnv
}

// parseLevel turns Options.LogLevel into a slog level.
func parseLevel(s string) (slog.Level, error) {
	if s == "" {
		return slog.LevelInfo, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, err
	}
	return l, nil
}
