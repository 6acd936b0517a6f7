// Package sampleapp holds the sample workloads the local runtime runs in
// pods: an echo server that answers with its pod's name and what it
// received (so a test or a human sees which pod answered and what reached
// it), and a load client that keeps a request loop running and reports
// successes, failures and latency (so a fault test can count the requests
// a failure cost).
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
	"strings"
	"sync"
	"time"
)

// EchoConfig configures the echo server.
type EchoConfig struct {
	// Name is what the server answers with (the pod name).
	Name     string `json:"name" flag:"name" usage:"name to answer with (default: $POD_NAME, else the host name)"`
	HTTPAddr string `json:"httpAddr" flag:"http-addr" usage:"HTTP listen address (empty: no HTTP)"`
	TCPAddr  string `json:"tcpAddr" flag:"tcp-addr" usage:"TCP line-echo listen address (empty: no TCP)"`
}

// Validate checks the configuration.
func (c *EchoConfig) Validate() error {
	if c.HTTPAddr == "" && c.TCPAddr == "" {
		return errors.New("http-addr or tcp-addr is required")
	}
	return nil
}

// EchoReply is the HTTP answer.
type EchoReply struct {
	Pod    string              `json:"pod"`
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Remote string              `json:"remote"`
	Header map[string][]string `json:"header,omitempty"`
	Body   string              `json:"body,omitempty"`
}

// EchoHandler answers every HTTP request with an EchoReply.
func EchoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(EchoReply{
			Pod: name, Method: r.Method, Path: r.URL.Path, Remote: r.RemoteAddr, Header: r.Header, Body: string(body),
		})
	})
}

// ServeTCP answers each line received with "<name>: <line>" until the
// peer closes or ctx ends.
func ServeTCP(ctx context.Context, ln net.Listener, name string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				if _, err := fmt.Fprintf(c, "%s: %s\n", name, sc.Text()); err != nil {
					return
				}
			}
		})
	}
}

// RunEcho serves until ctx ends, logging "serving" with the bound
// addresses once listening.
func RunEcho(ctx context.Context, cfg *EchoConfig, log *slog.Logger) error {
	var httpLn, tcpLn net.Listener
	var err error
	if cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return err
		}
	}
	if cfg.TCPAddr != "" {
		if tcpLn, err = net.Listen("tcp", cfg.TCPAddr); err != nil {
			return err
		}
	}
	errs := make(chan error, 2)
	attrs := []any{"name", cfg.Name}
	if httpLn != nil {
		srv := &http.Server{Handler: EchoHandler(cfg.Name), ReadHeaderTimeout: 5 * time.Second}
		go func() { <-ctx.Done(); srv.Close() }()
		go func() {
			if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
				errs <- err
				return
			}
			errs <- nil
		}()
		attrs = append(attrs, "http", httpLn.Addr().String())
	} else {
		errs <- nil
	}
	if tcpLn != nil {
		go func() { errs <- ServeTCP(ctx, tcpLn, cfg.Name) }()
		attrs = append(attrs, "tcp", tcpLn.Addr().String())
	} else {
		errs <- nil
	}
	log.Info("serving", attrs...)
	return errors.Join(<-errs, <-errs)
}

// DefaultName is $POD_NAME, else the host name.
func DefaultName(lookup func(string) (string, bool), host func() (string, error)) string {
	if v, ok := lookup("POD_NAME"); ok && strings.TrimSpace(v) != "" {
		return v
	}
	h, err := host()
	if err != nil {
		return "unknown"
	}
	return h
}
