package cli

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/ctl/internal/client"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
)

// globals are the connection flags every mesh command shares.
type globals struct {
	configPath       string
	contextName      string
	servers          []string
	insecureLoopback bool
	timeout          time.Duration
}

func (g *globals) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.configPath, "ambitconfig", client.DefaultPath(os.Getenv), "ambitctl config file ($AMBITCONFIG)")
	f.StringVar(&g.contextName, "context", "", "context of the config file to use (default: its current context)")
	f.StringSliceVar(&g.servers, "server", nil, "config API addresses, overriding the context's")
	f.BoolVar(&g.insecureLoopback, "insecure-loopback", false, "plaintext to a development mesh on loopback")
	f.DurationVar(&g.timeout, "request-timeout", 30*time.Second, "timeout of each request")
}

// context resolves the connection settings from the file and flags.
func (g *globals) context() (client.Context, error) {
	if len(g.servers) > 0 && g.insecureLoopback {
		return client.Context{Name: "flags", ConfigServers: g.servers, InsecureLoopback: true}, nil
	}
	f, err := client.Load(g.configPath)
	if err != nil {
		return client.Context{}, err
	}
	c, err := f.Context(g.contextName)
	if err != nil {
		return client.Context{}, err
	}
	if len(g.servers) > 0 {
		c.ConfigServers = g.servers
	}
	if g.insecureLoopback {
		c.InsecureLoopback = true
	}
	return c, nil
}

// configClient dials the config API.
func (g *globals) configClient(ctx context.Context) (configv1.ConfigServiceClient, *grpc.ClientConn, error) {
	c, err := g.context()
	if err != nil {
		return nil, nil, usageError{err}
	}
	conn, err := c.Dial(ctx, c.ConfigServers, spiffe.ComponentConfig)
	if err != nil {
		return nil, nil, err
	}
	return configv1.NewConfigServiceClient(conn), conn, nil
}
