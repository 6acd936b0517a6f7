package run_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/run"
)

// get returns the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestReadinessFlips(t *testing.T) {
	admin := run.NewAdmin(run.AdminOptions{})
	var connected atomic.Bool
	admin.AddReadinessCheck("etcd", func(context.Context) error {
		if !connected.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	admin.AddReadinessCheck("nats", func(context.Context) error { return nil })
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()

	code, body := get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]etcd: not connected") || !strings.Contains(body, "[+]nats ok") {
		t.Fatalf("before: %d %q, want 503 listing the etcd failure", code, body)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while not ready, want 200 (liveness is not readiness)", code)
	}

	connected.Store(true)
	code, body = get(t, srv.URL+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "[+]etcd ok") {
		t.Fatalf("after: %d %q, want 200", code, body)
	}
}

func TestReadinessCheckFailures(t *testing.T) {
	cases := []struct {
		name  string
		check run.CheckFunc
		want  string
	}{
		{"panic", func(context.Context) error { panic("oops") }, "[-]c: check panicked: oops"},
		{"deadline", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, "deadline exceeded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			admin := run.NewAdmin(run.AdminOptions{CheckTimeout: 10 * time.Millisecond})
			admin.AddReadinessCheck("c", tc.check)
			srv := httptest.NewServer(admin.Handler())
			defer srv.Close()
			code, body := get(t, srv.URL+"/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %q, want 503 with %q", code, body, tc.want)
			}
		})
	}
}

func TestAdminRoutes(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") })
	extra := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "extra") })
	cases := []struct {
		name string
		opts run.AdminOptions
		path string
		code int
		body string
	}{
		{"healthz", run.AdminOptions{}, "/healthz", 200, "ok"},
		{"empty readyz", run.AdminOptions{}, "/readyz", 200, "ready"},
		{"metrics", run.AdminOptions{Metrics: metrics}, "/metrics", 200, "up 1"},
		{"no metrics", run.AdminOptions{}, "/metrics", 404, ""},
		{"pprof on", run.AdminOptions{Pprof: true}, "/debug/pprof/cmdline", 200, ""},
		{"pprof off", run.AdminOptions{}, "/debug/pprof/cmdline", 404, ""},
		{"extra", run.AdminOptions{Handlers: map[string]http.Handler{"GET /debug/config": extra}}, "/debug/config", 200, "extra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(run.NewAdmin(tc.opts).Handler())
			defer srv.Close()
			code, body := get(t, srv.URL+tc.path)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.body)
			}
		})
	}
}

func TestDuplicateCheckPanics(t *testing.T) {
	admin := run.NewAdmin(run.AdminOptions{})
	admin.AddReadinessCheck("x", func(context.Context) error { return nil })
	defer func() {
		if recover() == nil {
			t.Error("duplicate check name did not panic")
		}
	}()
	admin.AddReadinessCheck("x", func(context.Context) error { return nil })
}
