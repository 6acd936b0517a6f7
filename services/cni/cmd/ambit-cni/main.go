// Command ambit-cni is the chained CNI plugin that hands pod sandboxes to
// the Ambit node agent (see internal/plugin).
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/services/cni/internal/plugin"
)

func main() {
	p := &plugin.Plugin{}
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), plugin.About(buildinfo.Read("cni").Version))
}
