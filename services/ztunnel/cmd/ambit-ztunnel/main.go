// Command ambit-ztunnel is the per-node L4 proxy (DESIGN §1, §5).
package main

import (
	"context"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/app"
)

func main() {
	cfg := app.DefaultConfig()
	run.Main(app.Component, cfg, func(ctx context.Context, info buildinfo.Info) error {
		return app.Run(ctx, cfg, info)
	})
}
