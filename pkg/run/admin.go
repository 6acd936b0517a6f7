package run

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"
)

// CheckFunc reports whether one dependency is ready; nil means ready.
type CheckFunc func(ctx context.Context) error

// AdminOptions configures the admin server.
type AdminOptions struct {
	// Metrics is served at /metrics when set (telemetry.Telemetry.Handler).
	Metrics http.Handler
	// Pprof mounts net/http/pprof under /debug/pprof/. Keep it off where
	// the admin port is reachable beyond the node.
	Pprof bool
	// Handlers are mounted as well, keyed by http.ServeMux pattern.
	Handlers map[string]http.Handler
	// CheckTimeout bounds each readiness check; zero means 2s.
	CheckTimeout time.Duration
}

// Admin is the health, readiness and metrics endpoint of a process:
//
//	/healthz  200 while the process serves HTTP at all (liveness)
//	/readyz   200 when every readiness check passes, else 503; the body
//	          lists each check as [+]name ok or [-]name: error
//	/metrics  the Metrics handler
type Admin struct {
	mux          *http.ServeMux
	checkTimeout time.Duration

	mu     sync.RWMutex
	checks []namedCheck
}

type namedCheck struct {
	name  string
	check CheckFunc
}

// NewAdmin builds the admin handler. Like http.ServeMux it panics on
// conflicting patterns in Handlers, a programming error.
func NewAdmin(o AdminOptions) *Admin {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 2 * time.Second
	}
	a := &Admin{mux: http.NewServeMux(), checkTimeout: o.CheckTimeout}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	a.mux.HandleFunc("GET /readyz", a.serveReady)
	if o.Metrics != nil {
		a.mux.Handle("GET /metrics", o.Metrics)
	}
	if o.Pprof {
		mountPprof(a.mux)
	}
	for pattern, h := range o.Handlers {
		a.mux.Handle(pattern, h)
	}
	return a
}

// mountPprof registers the profiling handlers on mux (never on
// http.DefaultServeMux).
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// AddReadinessCheck registers a check that /readyz runs on every request.
// Checks may be added while serving. It panics on an empty or duplicate
// name, which would make the /readyz report ambiguous.
func (a *Admin) AddReadinessCheck(name string, check CheckFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if name == "" {
		panic("run: readiness check without a name")
	}
	for _, c := range a.checks {
		if c.name == name {
			panic("run: duplicate readiness check " + name)
		}
	}
	a.checks = append(a.checks, namedCheck{name: name, check: check})
}

// Handler is the admin mux, for tests or for mounting elsewhere.
func (a *Admin) Handler() http.Handler { return a.mux }

// Serve serves the admin endpoints on ln until ctx is cancelled; it fits
// Group.Go.
func (a *Admin) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	return ServeHTTP(ctx, srv, ln)
}

// serveReady runs all checks concurrently and reports each.
func (a *Admin) serveReady(w http.ResponseWriter, r *http.Request) {
	a.mu.RLock()
	checks := append([]namedCheck(nil), a.checks...)
	a.mu.RUnlock()

	ctx, cancel := context.WithTimeout(r.Context(), a.checkTimeout)
	defer cancel()
	results := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { results[i] = runCheck(ctx, c.check) })
	}
	wg.Wait()

	var body strings.Builder
	failed := 0
	for i, c := range checks {
		if err := results[i]; err != nil {
			failed++
			fmt.Fprintf(&body, "[-]%s: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&body, "[+]%s ok\n", c.name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if failed > 0 {
		fmt.Fprintf(&body, "not ready: %d of %d checks failed\n", failed, len(checks))
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		body.WriteString("ready\n")
	}
	_, _ = w.Write([]byte(body.String()))
}

// runCheck turns a panicking check into a failure rather than a crashed
// readiness endpoint, and a check ignoring its deadline into a timeout.
func runCheck(ctx context.Context, check CheckFunc) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check did not finish: %w", ctx.Err())
	}
}
