// Package run is the process lifecycle shared by every Ambit binary: a
// context cancelled by SIGINT/SIGTERM, a group of long-running members
// (servers, watchers) that stop together within a shutdown deadline, the
// admin HTTP server with /healthz, /readyz and /metrics, and Main, which a
// component's thin main.go calls.
//
// A main.go reads:
//
//	func main() {
//		cfg := xds.DefaultConfig()
//		run.Main("xds", &cfg, func(ctx context.Context, info buildinfo.Info) error {
//			return xds.Run(ctx, cfg, info)
//		})
//	}
//
// and the component's Run builds a Group:
//
//	g := run.NewGroup(ctx, run.GroupOptions{ShutdownTimeout: cfg.ShutdownTimeout, Logger: log})
//	g.Go("grpc", func(ctx context.Context) error { return serveGRPC(ctx, lis) })
//	g.Go("admin", func(ctx context.Context) error { return admin.Serve(ctx, adminLis) })
//	return g.Wait()
package run
