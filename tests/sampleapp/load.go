package sampleapp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadConfig configures the load client.
type LoadConfig struct {
	// Target is http://ip:port/path or tcp://ip:port.
	Target      string        `json:"target" flag:"target" usage:"http://host:port/path or tcp://host:port"`
	Concurrency int           `json:"concurrency" flag:"concurrency" usage:"parallel request loops"`
	Rate        float64       `json:"rate" flag:"rate" usage:"requests per second per loop (0: back to back)"`
	Duration    time.Duration `json:"duration" flag:"duration" usage:"stop after this long (0: until interrupted)"`
	Timeout     time.Duration `json:"timeout" flag:"timeout" usage:"timeout of one request"`
	NewConn     bool          `json:"newConn" flag:"new-conn" usage:"a new connection per request instead of keep-alive"`
	ReportEvery time.Duration `json:"reportEvery" flag:"report-every" usage:"log progress this often (0: only at the end)"`
}

// DefaultLoadConfig is the configuration with defaults.
func DefaultLoadConfig() *LoadConfig {
	return &LoadConfig{Concurrency: 1, Rate: 10, Timeout: 2 * time.Second, ReportEvery: time.Second}
}

// Validate checks the configuration, naming the bad flag.
func (c *LoadConfig) Validate() error {
	var errs []error
	u, err := url.Parse(c.Target)
	switch {
	case c.Target == "":
		errs = append(errs, errors.New("target: required"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "tcp") || u.Host == "":
		errs = append(errs, fmt.Errorf("target: %q is not http://host:port/path or tcp://host:port", c.Target))
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		errs = append(errs, fmt.Errorf("concurrency: %d is not in 1..1000", c.Concurrency))
	}
	if c.Rate < 0 || c.Timeout <= 0 || c.Duration < 0 || c.ReportEvery < 0 {
		errs = append(errs, errors.New("rate, timeout, duration and report-every must not be negative (timeout positive)"))
	}
	return errors.Join(errs...)
}

// Stats summarizes requests so far.
type Stats struct {
	Sent   int64            `json:"sent"`
	OK     int64            `json:"ok"`
	Failed int64            `json:"failed"`
	P50    time.Duration    `json:"p50"`
	P99    time.Duration    `json:"p99"`
	Max    time.Duration    `json:"max"`
	Errors map[string]int64 `json:"errors,omitempty"`
	// Answered counts replies by the pod that gave them.
	Answered map[string]int64 `json:"answered,omitempty"`
}

// recorder collects outcomes from the loops.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	s        Stats
	maxCount int
}

func (r *recorder) record(d time.Duration, pod string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Sent++
	if err != nil {
		r.s.Failed++
		if r.s.Errors == nil {
			r.s.Errors = map[string]int64{}
		}
		msg := err.Error()
		if len(msg) > 120 {
			msg = msg[:120]
		}
		r.s.Errors[msg]++
		return
	}
	r.s.OK++
	if pod != "" {
		if r.s.Answered == nil {
			r.s.Answered = map[string]int64{}
		}
		r.s.Answered[pod]++
	}
	if len(r.lat) < r.maxCount {
		r.lat = append(r.lat, d)
	}
}

func (r *recorder) stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Errors = cloneCounts(r.s.Errors)
	s.Answered = cloneCounts(r.s.Answered)
	if n := len(r.lat); n > 0 {
		lat := slices.Clone(r.lat)
		slices.Sort(lat)
		s.P50, s.P99, s.Max = lat[n/2], lat[min(n-1, n*99/100)], lat[n-1]
	}
	return s
}

func cloneCounts(m map[string]int64) map[string]int64 {
	if m == nil {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// requester sends one request and returns the answering pod's name.
type requester interface {
	do(ctx context.Context) (pod string, err error)
	close()
}

// RunLoad runs the request loops until ctx ends or the duration passed,
// logging progress, and returns the final stats.
func RunLoad(ctx context.Context, cfg *LoadConfig, log *slog.Logger) (Stats, error) {
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	u, err := url.Parse(cfg.Target)
	if err != nil {
		return Stats{}, err
	}
	rec := &recorder{maxCount: 1 << 20}
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		req := newRequester(u, cfg)
		wg.Go(func() {
			defer req.close()
			var tick <-chan time.Time
			if cfg.Rate > 0 {
				t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
				defer t.Stop()
				tick = t.C
			}
			for !ended(ctx) {
				if tick != nil {
					select {
					case <-ctx.Done():
						return
					case <-tick:
					}
				}
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				pod, err := req.do(rctx)
				cancel()
				if err != nil && ended(ctx) {
					return // the run ended mid-request: not a failure
				}
				rec.record(time.Since(start), pod, err)
			}
		})
	}
	if cfg.ReportEvery > 0 {
		wg.Go(func() {
			t := time.NewTicker(cfg.ReportEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s := rec.stats()
					log.Info("progress", "sent", s.Sent, "ok", s.OK, "failed", s.Failed, "p50", s.P50, "p99", s.P99)
				}
			}
		})
	}
	wg.Wait()
	s := rec.stats()
	log.Info("done", "sent", s.Sent, "ok", s.OK, "failed", s.Failed, "p50", s.P50, "p99", s.P99, "max", s.Max, "errors", s.Errors, "answered", s.Answered)
	return s, nil
}

// ended reports whether the run is over, including the moment between
// its deadline passing and its context noticing.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func newRequester(u *url.URL, cfg *LoadConfig) requester {
	if u.Scheme == "tcp" {
		return &tcpRequester{addr: u.Host, newConn: cfg.NewConn}
	}
	tr := &http.Transport{DisableKeepAlives: cfg.NewConn, MaxIdleConnsPerHost: 1}
	return &httpRequester{url: u.String(), client: &http.Client{Transport: tr}, tr: tr}
}

type httpRequester struct {
	url    string
	client *http.Client
	tr     *http.Transport
}

func (h *httpRequester) do(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var r EchoReply
	_ = json.Unmarshal(body, &r)
	return r.Pod, nil
}

func (h *httpRequester) close() { h.tr.CloseIdleConnections() }

type tcpRequester struct {
	addr    string
	newConn bool
	conn    net.Conn
	rd      *bufio.Reader
	n       int
}

func (t *tcpRequester) do(ctx context.Context) (string, error) {
	if t.conn == nil || t.newConn {
		t.close()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return "", err
		}
		t.conn, t.rd = c, bufio.NewReader(c)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = t.conn.SetDeadline(dl)
	}
	t.n++
	msg := fmt.Sprintf("ping %d", t.n)
	if _, err := fmt.Fprintf(t.conn, "%s\n", msg); err != nil {
		t.close()
		return "", err
	}
	line, err := t.rd.ReadString('\n')
	if err != nil {
		t.close()
		return "", err
	}
	pod, got, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
	if !ok || got != msg {
		t.close()
		return "", fmt.Errorf("unexpected answer %q", line)
	}
	return pod, nil
}

func (t *tcpRequester) close() {
	if t.conn != nil {
		t.conn.Close()
		t.conn = nil
	}
}
