// Command ambit-cni is the chained CNI plugin that hands pod sandboxes to
// the Ambit node agent (see internal/plugin).
package main

import (
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/services/cni/internal/plugin"
)

func main() {
	info := buildinfo.Read("cni")
	// Runtimes call plugins with CNI_COMMAND set and no arguments; a
	// --version from a human or a script gets what every binary prints.
	if len(os.Args) == 2 && os.Args[1] == "--version" && os.Getenv("CNI_COMMAND") == "" {
		fmt.Println(info.String())
		return
	}
	p := &plugin.Plugin{}
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), plugin.About(info.Version))
}
