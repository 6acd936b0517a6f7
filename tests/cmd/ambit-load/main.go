// Command ambit-load is the local runtime's sample client: a request loop
// reporting successes, failures and latency (see tests/sampleapp).
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	"github.com/ambitmesh/ambit/tests/sampleapp"
)

func main() {
	cfg := sampleapp.DefaultLoadConfig()
	run.Main("load", cfg, func(ctx context.Context, info buildinfo.Info) error {
		tel, err := telemetry.Setup(ctx, telemetry.Options{Component: "load", Version: info.Version})
		if err != nil {
			return err
		}
		defer tel.Shutdown(context.WithoutCancel(ctx))
		tel.Logger().Info("serving", "target", cfg.Target)
		s, err := sampleapp.RunLoad(ctx, cfg, tel.Logger())
		if err != nil {
			return err
		}
		// The final stats on stdout, for scripts.
		return json.NewEncoder(os.Stdout).Encode(s)
	})
}
