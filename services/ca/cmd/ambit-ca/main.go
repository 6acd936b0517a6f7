// Command ambit-ca is Ambit's certificate authority (see package ca).
//
//	ambit-ca [flags]                 serve
//	ambit-ca issue-admin --out DIR   write the first administrator's credentials
package main

import (
	"context"
	"os"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/services/ca"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == ca.IssueAdminCommand {
		ctx, stop := run.NotifyShutdown(context.Background(), nil)
		code := ca.IssueAdminMain(ctx, run.Invocation{Args: os.Args[2:], LookupEnv: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr})
		stop()
		os.Exit(code)
	}
	cfg := ca.DefaultConfig()
	run.Main(ca.Component, cfg, func(ctx context.Context, info buildinfo.Info) error { return ca.Run(ctx, cfg, info) })
}
