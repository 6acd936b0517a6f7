package telemetry

// Standard OpenTelemetry variables that switch OTLP export on. The generic
// endpoint enables every signal; a signal-specific one enables only that
// signal.
const (
	envOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
)

// otlpEnabled reports whether any of the named variables is set non-empty.
func otlpEnabled(lookup func(string) (string, bool), names ...string) bool {
	for _, n := range names {
		if v, ok := lookup(n); ok && v != "" {
			return true
		}
	}
	return false
}
