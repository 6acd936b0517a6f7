// Command ambit-cni-agent is the per-node CNI agent (DESIGN §1, §5): it
// enrolls pods by label, redirects their traffic in their netns and hands
// them to ztunnel over ZDS.
package main

import (
	"context"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/services/cni/internal/app"
)

func main() {
	cfg := app.DefaultConfig()
	run.Main(app.Component, cfg, func(ctx context.Context, info buildinfo.Info) error {
		return app.Run(ctx, cfg, info)
	})
}
