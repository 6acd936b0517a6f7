package cacmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

// NewNodeCmd returns `ambitctl node` with `node token create`.
func NewNodeCmd(opts ...Option) *cobra.Command {
	o := newOptions(opts)
	var conn connFlags
	node := &cobra.Command{
		Use:   "node",
		Short: "Manage mesh nodes",
	}
	conn.register(node)
	token := &cobra.Command{
		Use:   "token",
		Short: "Manage node join tokens",
	}
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create <node>",
		Short: "Create a single-use join token for a node",
		Long: "Create a single-use join token with which the node's agent obtains its node certificate\n" +
			"(spiffe://<td>/ambit/node/<node>) from the CA, once. The token is printed alone on stdout,\n" +
			"so it can be captured: TOKEN=$(ambitctl node token create node-1). The CA keeps only its hash.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := o.connect(cmd, &conn)
			if err != nil {
				return err
			}
			defer cc.Close()
			resp, err := cav1.NewNodeBootstrapServiceClient(cc).CreateJoinToken(cmd.Context(), &cav1.CreateJoinTokenRequest{
				Node: args[0], Ttl: durationpb.New(ttl),
			})
			if err != nil {
				return fmt.Errorf("create join token: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetToken())
			fmt.Fprintf(cmd.ErrOrStderr(), "join token for %s, single use, expires %s\n",
				resp.GetIdentity(), resp.GetExpireTime().AsTime().Local().Format(time.RFC3339))
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token stays valid (at most 24h)")
	token.AddCommand(create)
	node.AddCommand(token)
	return node
}
