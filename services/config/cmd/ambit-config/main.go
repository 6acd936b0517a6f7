// Command ambit-config runs one replica of the config service (DESIGN §1):
// the config API, and, when elected, the change-feed publisher.
package main

import (
	"context"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/services/config/internal/app"
)

func main() {
	cfg := app.DefaultConfig()
	run.Main(app.Component, cfg, func(ctx context.Context, info buildinfo.Info) error {
		return app.Run(ctx, cfg, info)
	})
}
