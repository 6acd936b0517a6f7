// Package buildinfo reports which component and version a binary is.
//
// Every Ambit component is released on its own (see versions.yaml), so the
// version is stamped per binary at link time by the Makefile:
//
//	-ldflags "-X github.com/ambitmesh/ambit/pkg/buildinfo.version=v0.1.0 -X github.com/ambitmesh/ambit/pkg/buildinfo.commit=abc123"
//
// A plain `go build` leaves them empty and Read falls back to the module
// version and VCS revision that the Go toolchain embeds.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set only by the linker (-X); never assigned at run time.
var (
	version       string
	sharedVersion string
	commit        string
)

// Info identifies a running binary.
type Info struct {
	Component string `json:"component"`
	Version   string `json:"version"`
	// SharedVersion is the version of the shared proto+pkg module set the
	// binary was built with (versions.yaml "shared").
	SharedVersion string `json:"sharedVersion,omitempty"`
	Commit        string `json:"commit,omitempty"`
	GoVersion     string `json:"goVersion"`
}

// Read returns the build information of this binary for the named component.
func Read(component string) Info {
	info := Info{Component: component, Version: version, SharedVersion: sharedVersion, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Commit = s.Value
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}

// String renders the one-line form printed by --version.
func (i Info) String() string {
	s := fmt.Sprintf("%s %s", i.Component, i.Version)
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (" + c + ")"
	}
	if i.SharedVersion != "" {
		s += " shared/" + i.SharedVersion
	}
	return s + " " + i.GoVersion
}
