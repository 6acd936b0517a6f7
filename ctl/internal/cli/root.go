// Package cli builds ambitctl's command tree. Every command is constructed
// by a function with explicit inputs; nothing registers itself globally.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ambitmesh/ambit/ctl/internal/cacmd"
	"github.com/ambitmesh/ambit/pkg/buildinfo"
)

// Component is how ambitctl names itself in versions.yaml.
const Component = "ctl"

// Exit codes a script can rely on.
const (
	ExitOK    = 0
	ExitError = 1 // the operation failed
	ExitUsage = 2 // bad flags or arguments
)

// silentError is a failure whose details were already printed; only the
// exit code remains.
type silentError struct{ err error }

func (e silentError) Error() string { return e.err.Error() }

// usageError marks errors in how ambitctl was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Execute runs ambitctl with args and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	root := newRoot(os.Stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var se silentError
	if !errors.As(err, &se) {
		fmt.Fprintln(stderr, "error:", err)
	}
	var ue usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitError
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	info := buildinfo.Read(Component)
	root := &cobra.Command{
		Use:           "ambitctl",
		Short:         "Drive an Ambit service mesh",
		Version:       info.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g := &globals{}
	g.register(root)
	root.AddCommand(newVersionCmd(info), newDemoCmd(),
		newApplyCmd(g, stdin), newGetCmd(g), newDeleteCmd(g, stdin), newStatusCmd(g), newWaitCmd(g), newClusterCmd(g),
		cacmd.NewNodeCmd(cacmd.WithDialer(g.dialCA)), cacmd.NewCACmd(cacmd.WithDialer(g.dialCA)))
	return root
}

func newVersionCmd(info buildinfo.Info) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ambitctl's component version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), info.String())
			return err
		},
	}
}

// contextWithTimeout bounds one request.
func contextWithTimeout(cmd *cobra.Command, g *globals) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}
