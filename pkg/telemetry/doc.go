// Package telemetry sets up logging, tracing and metrics for one Ambit
// component in a single call.
//
// Everything Setup builds is owned by the returned *Telemetry and passed
// around explicitly: the package keeps no state of its own and, unless
// Options.SetGlobal asks for it, installs nothing into the OpenTelemetry or
// slog globals. That keeps several components (or tests) in one process
// from seeing each other's spans and metrics.
//
// Metrics are always exposed for Prometheus on a registry private to the
// Telemetry, with OpenTelemetry's name translation reduced to character
// escaping: no unit or _total suffixes are appended and no otel_scope_*
// labels are added, so an instrument created as
// istio_tcp_connections_opened_total with a source_workload attribute is
// scraped under exactly that name and label, as Istio dashboards expect.
//
// Traces and metrics are additionally pushed over OTLP/gRPC when the
// standard OTEL_EXPORTER_OTLP_* endpoint variables are set; the exporters
// read the rest of their settings (headers, TLS, timeouts) from the same
// standard variables.
package telemetry
