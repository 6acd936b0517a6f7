package run

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/confload"
)

// Exit codes of a component binary.
const (
	ExitOK     = 0
	ExitError  = 1 // the component failed while running
	ExitConfig = 2 // the configuration is invalid; restarting will not help
)

// RunFunc is a component's body: it runs until ctx is cancelled (a
// shutdown signal) and returns nil after a clean shutdown.
type RunFunc func(ctx context.Context, info buildinfo.Info) error

// ConfigError marks an error found while starting that is the operator's
// configuration at fault (an unreadable certificate file, say); Main
// exits with ExitConfig for it as for flag or Validate errors.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "invalid config: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Invocation is what a process was started with, explicit so that
// Execute can be tested without a real process.
type Invocation struct {
	Args      []string // without the program name
	LookupEnv func(string) (string, bool)
	Stdout    io.Writer // --version and --help
	Stderr    io.Writer // errors
}

// Main runs a component binary and exits: it handles --version, loads cfg
// (a pointer to the component's Config, holding its defaults) with
// confload from os.Args and the environment, then calls fn with a context
// cancelled by SIGINT or SIGTERM. A second signal exits immediately.
func Main(component string, cfg any, fn RunFunc) {
	program := programName(component)
	ctx, stop := NotifyShutdown(context.Background(), func(sig os.Signal) {
		fmt.Fprintf(os.Stderr, "%s: second %v, exiting without finishing shutdown\n", program, sig)
		os.Exit(exitCode(sig))
	})
	code := Execute(ctx, Invocation{
		Args:      os.Args[1:],
		LookupEnv: os.LookupEnv,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
	}, component, cfg, fn)
	stop()
	os.Exit(code)
}

// Execute is Main without the process: it returns the exit code instead
// of exiting and takes its inputs from inv.
func Execute(ctx context.Context, inv Invocation, component string, cfg any, fn RunFunc) int {
	program := programName(component)
	info := buildinfo.Read(component)
	if wantsVersion(inv.Args) {
		fmt.Fprintln(inv.Stdout, info.String())
		return ExitOK
	}
	err := confload.Loader{
		Component:  component,
		Program:    program,
		Args:       inv.Args,
		LookupEnv:  inv.LookupEnv,
		HelpOutput: inv.Stdout,
		ExtraFlags: func(fs *flag.FlagSet) { fs.Bool("version", false, "print the version and exit") },
	}.Load(cfg)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case err != nil:
		fmt.Fprintf(inv.Stderr, "%s: %v\n", program, err)
		return ExitConfig
	}

	err = fn(ctx, info)
	var cerr *ConfigError
	switch {
	case err == nil, errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return ExitOK
	case errors.As(err, &cerr):
		fmt.Fprintf(inv.Stderr, "%s: %v\n", program, err)
		return ExitConfig
	default:
		fmt.Fprintf(inv.Stderr, "%s: %v\n", program, err)
		return ExitError
	}
}

// wantsVersion looks for --version before confload runs, so the version
// prints even when the rest of the configuration is broken.
func wantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version", "--version=true", "-version=true":
			return true
		}
	}
	return false
}

func programName(component string) string { return "ambit-" + component }
