package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/ambitmesh/ambit/pkg/telemetry"
)

// decodeLines parses the JSON log lines written so far.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestLogCarriesTraceIDs(t *testing.T) {
	var out bytes.Buffer
	tel := setup(t, telemetry.Options{Component: "xds", Version: "v1.2.3", LogOutput: &out})
	ctx, span := tel.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	sc := span.SpanContext()

	cases := []struct {
		name   string
		logger *slog.Logger
		group  string // where the logger's own attrs go; ids stay top level
	}{
		{name: "plain", logger: tel.Logger()},
		{name: "with attrs", logger: tel.Logger().With("k", "v")},
		{name: "with group", logger: tel.Logger().WithGroup("g").With("k", "v"), group: "g"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out.Reset()
			tc.logger.InfoContext(ctx, "hello", "n", 1)
			tc.logger.Info("no context")
			lines := decodeLines(t, out.String())
			if len(lines) != 2 {
				t.Fatalf("got %d lines, want 2: %s", len(lines), out.String())
			}
			withSpan, without := lines[0], lines[1]
			want := map[string]string{
				"trace_id":  sc.TraceID().String(),
				"span_id":   sc.SpanID().String(),
				"component": "xds",
				"version":   "v1.2.3",
				"msg":       "hello",
			}
			for k, v := range want {
				if got := withSpan[k]; got != v {
					t.Errorf("%s = %v, want %q (line %v)", k, got, v, withSpan)
				}
			}
			if _, ok := without["trace_id"]; ok {
				t.Errorf("line without span context has trace_id: %v", without)
			}
			if tc.group != "" {
				g, _ := withSpan[tc.group].(map[string]any)
				if g["k"] != "v" || g["n"] != float64(1) {
					t.Errorf("group %q = %v, want k and n inside", tc.group, withSpan[tc.group])
				}
			}
		})
	}
}

func TestLogLevelChangesAtRunTime(t *testing.T) {
	var out bytes.Buffer
	tel := setup(t, telemetry.Options{LogLevel: "warn", LogOutput: &out})
	tel.Logger().Info("dropped")
	tel.LogLevel().Set(slog.LevelDebug)
	tel.Logger().Debug("kept")
	lines := decodeLines(t, out.String())
	if len(lines) != 1 || lines[0]["msg"] != "kept" {
		t.Fatalf("lines = %v, want only %q", lines, "kept")
	}
}

func TestSetupRejectsBadLevel(t *testing.T) {
	_, err := telemetry.Setup(context.Background(), telemetry.Options{Component: "x", LogLevel: "loud", LookupEnv: noEnv})
	if err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Fatalf("err = %v, want one naming the level", err)
	}
}
