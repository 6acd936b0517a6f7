package run_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/confload"
	"github.com/ambitmesh/ambit/pkg/run"
)

type execConfig struct {
	ListenAddr string `flag:"listen-addr" usage:"listen address" json:"listenAddr"`
}

func (c *execConfig) Validate() error { return confload.HostPort("listen-addr", c.ListenAddr) }

func TestExecute(t *testing.T) {
	info := buildinfo.Read("xds")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name       string
		ctx        context.Context
		args       []string
		fn         run.RunFunc
		code       int
		stdout     string
		stderr     string
		wantCalled bool
	}{
		{name: "version", args: []string{"--version"}, code: 0, stdout: info.String() + "\n"},
		{name: "version despite bad config", args: []string{"--listen-addr=bad", "-version"}, code: 0, stdout: info.String()},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "AMBIT_XDS_LISTEN_ADDR"},
		{name: "help lists version", args: []string{"-h"}, code: 0, stdout: "--version"},
		{name: "bad flag", args: []string{"--nope"}, code: 2, stderr: "ambit-xds: flag provided but not defined: -nope"},
		{name: "invalid", args: []string{"--listen-addr=bad"}, code: 2, stderr: `ambit-xds: invalid config: listen-addr "bad": must be host:port`},
		{name: "ok", code: 0, fn: func(context.Context, buildinfo.Info) error { return nil }, wantCalled: true},
		{name: "run error", code: 1, fn: func(context.Context, buildinfo.Info) error { return errBoom }, stderr: "ambit-xds: boom", wantCalled: true},
		{name: "config error at start", code: 2, fn: func(context.Context, buildinfo.Info) error {
			return &run.ConfigError{Err: fmt.Errorf("tls-cert-file: %w", errors.New("no such file"))}
		}, stderr: "ambit-xds: invalid config: tls-cert-file: no such file", wantCalled: true},
		{name: "cancelled is clean", ctx: cancelled, code: 0, fn: func(ctx context.Context, _ buildinfo.Info) error { return ctx.Err() }, wantCalled: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			called := false
			fn := tc.fn
			if fn == nil {
				fn = func(context.Context, buildinfo.Info) error { return nil }
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			cfg := execConfig{ListenAddr: ":15010"}
			code := run.Execute(ctx, run.Invocation{
				Args:      tc.args,
				LookupEnv: func(string) (string, bool) { return "", false },
				Stdout:    &stdout,
				Stderr:    &stderr,
			}, "xds", &cfg, func(ctx context.Context, got buildinfo.Info) error {
				called = true
				if got.Component != "xds" {
					t.Errorf("info.Component = %q", got.Component)
				}
				return fn(ctx, got)
			})
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) || (tc.stderr == "" && stderr.Len() > 0) {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
			if called != tc.wantCalled {
				t.Errorf("run func called = %v, want %v", called, tc.wantCalled)
			}
		})
	}
}
