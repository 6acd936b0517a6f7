// Command ambit-xds runs one replica of the xds service (DESIGN §1): the
// change feed turned into Istio's workload API and served over delta and
// state-of-the-world ADS.
package main

import (
	"context"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/run"
	"github.com/ambitmesh/ambit/services/xds/internal/app"
)

func main() {
	cfg := app.DefaultConfig()
	run.Main(app.Component, cfg, func(ctx context.Context, info buildinfo.Info) error {
		return app.Run(ctx, cfg, info)
	})
}
