package telemetry

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the handler.
const (
	LogKeyTraceID   = "trace_id"
	LogKeySpanID    = "span_id"
	LogKeyComponent = "component"
	LogKeyVersion   = "version"
)

// newLogger builds the JSON logger whose level is controlled by level.
func newLogger(w io.Writer, level *slog.LevelVar, addSource bool, component, version string) *slog.Logger {
	base := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, AddSource: addSource}).
		WithAttrs([]slog.Attr{
			slog.String(LogKeyComponent, component),
			slog.String(LogKeyVersion, version),
		})
	return slog.New(&traceHandler{base: base, current: base})
}

// traceHandler adds the trace and span id of the record's context, so log
// lines can be joined with traces.
//
// The ids always go at the top level of the JSON object, even on a logger
// that has opened groups: base is the handler before any WithAttrs or
// WithGroup of the caller, steps replays those calls on top of it, and
// current is base with all steps applied (used for records without a span).
type traceHandler struct {
	base    slog.Handler
	steps   []handlerStep
	current slog.Handler
}

// handlerStep is one WithAttrs (group == "") or WithGroup call.
type handlerStep struct {
	group string
	attrs []slog.Attr
}

func (s handlerStep) apply(h slog.Handler) slog.Handler {
	if s.group != "" {
		return h.WithGroup(s.group)
	}
	return h.WithAttrs(s.attrs)
}

func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.current.Enabled(ctx, l)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return h.current.Handle(ctx, r)
	}
	ids := []slog.Attr{
		slog.String(LogKeyTraceID, sc.TraceID().String()),
		slog.String(LogKeySpanID, sc.SpanID().String()),
	}
	if !h.hasGroup() {
		// Record attributes land at the top level, so the cheap path works.
		r = r.Clone()
		r.AddAttrs(ids...)
		return h.current.Handle(ctx, r)
	}
	out := h.base.WithAttrs(ids)
	for _, s := range h.steps {
		out = s.apply(out)
	}
	return out.Handle(ctx, r)
}

func (h *traceHandler) hasGroup() bool {
	for _, s := range h.steps {
		if s.group != "" {
			return true
		}
	}
	return false
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(handlerStep{attrs: attrs})
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(handlerStep{group: name})
}

func (h *traceHandler) with(s handlerStep) *traceHandler {
	steps := make([]handlerStep, len(h.steps), len(h.steps)+1)
	copy(steps, h.steps)
	return &traceHandler{base: h.base, steps: append(steps, s), current: s.apply(h.current)}
}
