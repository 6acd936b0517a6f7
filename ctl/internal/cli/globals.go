package cli

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/ctl/internal/cacmd"
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

// dialCA connects to the CA: with --ca-addr or --credentials-dir (or their
// variables) given, from those; otherwise from the context's caServers and
// admin credentials, like every other command.
func (g *globals) dialCA(ctx context.Context, addr, credentialsDir string) (*grpc.ClientConn, error) {
	if addr != "" || credentialsDir != "" {
		return cacmd.DialTLS(ctx, addr, credentialsDir)
	}
	c, err := g.context()
	if err != nil {
		// No config file context: fall back to the defaults of the CA
		// commands (local CA, ~/.ambit/admin).
		return cacmd.DialTLS(ctx, "", "")
	}
	if c.InsecureLoopback {
		return nil, usageErrorf("context %q is insecure-loopback, but the CA always requires admin credentials: pass --credentials-dir", c.Name)
	}
	return c.Dial(ctx, c.CAServers, spiffe.ComponentCA)
}
