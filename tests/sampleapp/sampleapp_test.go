package sampleapp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoadAgainstEchoHTTPAndTCP(t *testing.T) {
	srv := httptest.NewServer(EchoHandler("pod-x"))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeTCP(ctx, ln, "pod-y") }()
	defer func() { cancel(); <-done }()
	log := slog.New(slog.DiscardHandler)
	for target, pod := range map[string]string{srv.URL + "/hello": "pod-x", "tcp://" + ln.Addr().String(): "pod-y"} {
		for _, newConn := range []bool{false, true} {
			cfg := DefaultLoadConfig()
			cfg.Target, cfg.Rate, cfg.Concurrency, cfg.NewConn, cfg.ReportEvery = target, 0, 3, newConn, 0
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			lctx, lcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			s, err := RunLoad(lctx, cfg, log)
			lcancel()
			if err != nil || s.OK == 0 || s.Failed != 0 || s.Answered[pod] != s.OK || s.P50 <= 0 || s.P99 < s.P50 {
				t.Fatalf("%s newConn=%t: %+v, %v", target, newConn, s, err)
			}
		}
	}
}

func TestLoadCountsFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nobody listens: every request fails
	cfg := DefaultLoadConfig()
	cfg.Target, cfg.Rate, cfg.ReportEvery = "tcp://"+addr, 200, 0
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s, _ := RunLoad(ctx, cfg, slog.New(slog.DiscardHandler))
	if s.Failed == 0 || s.OK != 0 || len(s.Errors) == 0 {
		t.Fatalf("%+v", s)
	}
}

func TestConfigErrorsNameFlags(t *testing.T) {
	c := DefaultLoadConfig()
	c.Target, c.Concurrency = "ftp://x", 0
	err := c.Validate()
	for _, want := range []string{"target", "concurrency"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
	if err := (&EchoConfig{}).Validate(); err == nil {
		t.Error("echo without listeners accepted")
	}
	lookup := func(string) (string, bool) { return "", false }
	if n := DefaultName(lookup, func() (string, error) { return "", errors.New("x") }); n != "unknown" {
		t.Error(n)
	}
}
