package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ambitmesh/ambit/ctl/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var binDir, manifests string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the scripted tour of what Ambit proves on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if binDir == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binDir = filepath.Dir(exe)
			}
			out := cmd.OutOrStdout()
			logDir, err := os.MkdirTemp("", "ambit-demo-")
			if err != nil {
				return err
			}
			env := &demo.Env{BinDir: binDir, Manifests: manifests, LogDir: logDir}
			fmt.Fprintln(out, "Ambit demo — each claim below is checked for real; nothing is simulated.")
			if os.Geteuid() != 0 {
				fmt.Fprintln(out, "(not root: the network-namespace steps are skipped; run as root for the full tour)")
			}
			tour := &demo.Tour{Out: out, Steps: demo.Steps(env)}
			failed := tour.Run(cmd.Context())
			if err := env.Close(); err != nil {
				fmt.Fprintf(out, "cleanup: %v\n", err)
				failed++
			}
			if failed > 0 {
				return fmt.Errorf("%d claim(s) did not hold", failed)
			}
			fmt.Fprintf(out, "\nEvery claim held. Process logs: %s\n", logDir)
			fmt.Fprintln(out, "Still to come: `ambitctl up`, xds at scale, eBPF redirection (issues #9–#11), waypoints and gateways.")
			return nil
		},
	}
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory with the built binaries (default: ambitctl's own directory)")
	cmd.Flags().StringVar(&manifests, "manifests", "deploy/local/demo", "directory of the demo manifests")
	return cmd
}
