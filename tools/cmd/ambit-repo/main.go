// Command ambit-repo answers questions about the repository's layout for the
// Makefile — which modules and binaries exist, what version a binary has —
// and checks the rules that keep components independently releasable.
//
//	ambit-repo modules              module directories listed in go.work
//	ambit-repo binaries             "<module> <binary>" for every cmd/<binary>/main.go
//	ambit-repo ldflags <binary>     -X flags that stamp the binary's component version
//	ambit-repo check                layout and import rules (see check.go)
//	ambit-repo splice <file> <name> <content-file>
//	                                replace the text between <!-- name:begin --> and
//	                                <!-- name:end --> in file with content-file
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ambit-repo:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: ambit-repo modules|binaries|ldflags|check|splice")
	}
	root, err := findRoot()
	if err != nil {
		return err
	}
	switch args[0] {
	case "modules":
		mods, err := workspaceModules(root)
		if err != nil {
			return err
		}
		for _, m := range mods {
			fmt.Println(m)
		}
		return nil
	case "binaries":
		bins, err := listBinaries(root)
		if err != nil {
			return err
		}
		for _, b := range bins {
			fmt.Println(b.module, b.name)
		}
		return nil
	case "ldflags":
		if len(args) != 2 {
			return fmt.Errorf("usage: ambit-repo ldflags <binary>")
		}
		flags, err := ldflags(root, args[1])
		if err != nil {
			return err
		}
		fmt.Println(flags)
		return nil
	case "check":
		problems, err := check(root)
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, p)
		}
		if len(problems) > 0 {
			return fmt.Errorf("%d layout problem(s)", len(problems))
		}
		return nil
	case "splice":
		if len(args) != 4 {
			return fmt.Errorf("usage: ambit-repo splice <file> <name> <content-file>")
		}
		return splice(args[1], args[2], args[3])
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}
