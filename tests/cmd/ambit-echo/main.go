// Command ambit-echo is the local runtime's sample server: HTTP and TCP
// echo answering with its pod's name (see tests/sampleapp).
package main

import (
	"context"
	"os"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	"github.com/ambitmesh/ambit/tests/sampleapp"
)

func main() {
	cfg := &sampleapp.EchoConfig{Name: sampleapp.DefaultName(os.LookupEnv, os.Hostname), HTTPAddr: ":8080", TCPAddr: ":9000"}
	run.Main("echo", cfg, func(ctx context.Context, info buildinfo.Info) error {
		tel, err := telemetry.Setup(ctx, telemetry.Options{Component: "echo", Version: info.Version, InstanceID: cfg.Name})
		if err != nil {
			return err
		}
		defer tel.Shutdown(context.WithoutCancel(ctx))
		return sampleapp.RunEcho(ctx, cfg, tel.Logger())
	})
}
