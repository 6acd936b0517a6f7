package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/ambitmesh/ambit/pkg/presence"
)

// newClusterCmd lists every control-plane replica announced on NATS.
func newClusterCmd(g *globals) *cobra.Command {
	var natsURL, output string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "List the running replicas of every component (NATS micro services ambit-*)",
		Long: "Asks every replica announced on NATS for its info and status: component, replica, version,\n" +
			"address, and what it reports as load and change-feed lag. The NATS URL comes from --nats-url\n" +
			"or the context's natsURL.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if natsURL == "" {
				if c, err := g.context(); err == nil {
					natsURL = c.NATSURL
				}
			}
			if natsURL == "" {
				return usageError{errors.New("no NATS URL: give --nats-url or set natsURL in the context")}
			}
			nc, err := nats.Connect(natsURL, nats.Name("ambitctl cluster"), nats.Timeout(g.timeout))
			if err != nil {
				return fmt.Errorf("connect to NATS at %s: %w", natsURL, err)
			}
			defer nc.Close()
			ctx, cancel := contextWithTimeout(cmd, g)
			defer cancel()
			ms, err := presence.Discover(ctx, nc, wait)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			if len(ms) == 0 {
				_, err := fmt.Fprintln(out, "no replica answered")
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "COMPONENT\tREPLICA\tVERSION\tADDRESS\tSTATUS")
			for _, m := range ms {
				st := "-"
				if len(m.Stats) > 0 {
					st = string(m.Stats)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Component, m.Replica, m.Version, m.Address, st)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "NATS URL (default: the context's natsURL)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	cmd.Flags().DurationVar(&wait, "wait", time.Second, "how long to collect answers")
	return cmd
}
