// Command ambitctl drives an Ambit mesh: apply and inspect configuration,
// run the local runtime, and tour the demo.
package main

import (
	"os"

	"github.com/ambitmesh/ambit/ctl/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
