package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"sigs.k8s.io/yaml"
)

const modulePrefix = "github.com/ambitmesh/ambit/"

// findRoot walks up from the working directory to the directory with go.work.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work found above the working directory")
		}
		dir = parent
	}
}

// workspaceModules returns the module directories of go.work, relative to root.
func workspaceModules(root string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork("go.work", data, nil)
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, u := range wf.Use {
		mods = append(mods, filepath.Clean(u.Path))
	}
	slices.Sort(mods)
	return mods, nil
}

// moduleDirs finds every go.mod in the tree (the truth go.work must match).
func moduleDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.mod" {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs = append(dirs, rel)
		}
		return nil
	})
	slices.Sort(dirs)
	return dirs, err
}

type binary struct{ module, name string }

// listBinaries finds cmd/<name>/main.go in every workspace module except
// tools, whose commands are repository helpers and never shipped.
func listBinaries(root string) ([]binary, error) {
	mods, err := workspaceModules(root)
	if err != nil {
		return nil, err
	}
	var bins []binary
	for _, m := range mods {
		if m == "tools" {
			continue
		}
		mains, _ := filepath.Glob(filepath.Join(root, m, "cmd", "*", "main.go"))
		for _, mf := range mains {
			bins = append(bins, binary{module: m, name: filepath.Base(filepath.Dir(mf))})
		}
	}
	return bins, nil
}

type versionsFile struct {
	Components map[string]component `json:"components"`
}

type component struct {
	Version  string   `json:"version"`
	Modules  []string `json:"modules"`
	Binaries []string `json:"binaries"`
}

func readVersions(root string) (versionsFile, error) {
	var vf versionsFile
	data, err := os.ReadFile(filepath.Join(root, "versions.yaml"))
	if err != nil {
		return vf, err
	}
	if err := yaml.UnmarshalStrict(data, &vf); err != nil {
		return vf, fmt.Errorf("versions.yaml: %w", err)
	}
	return vf, nil
}

// ldflags stamps a binary with its component's version, the shared library
// version and the commit it was built from.
func ldflags(root, bin string) (string, error) {
	vf, err := readVersions(root)
	if err != nil {
		return "", err
	}
	for _, c := range vf.Components {
		if !slices.Contains(c.Binaries, bin) {
			continue
		}
		const pkg = modulePrefix + "pkg/buildinfo"
		flags := []string{"-X " + pkg + ".version=" + c.Version}
		if shared, ok := vf.Components["shared"]; ok {
			flags = append(flags, "-X "+pkg+".sharedVersion="+shared.Version)
		}
		if out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
			flags = append(flags, "-X "+pkg+".commit="+strings.TrimSpace(string(out)))
		}
		return strings.Join(flags, " "), nil
	}
	return "", fmt.Errorf("binary %q is not listed under any component in versions.yaml", bin)
}

// splice replaces the generated part of a document between two markers.
func splice(file, name, contentFile string) error {
	doc, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	content, err := os.ReadFile(contentFile)
	if err != nil {
		return err
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	s := string(doc)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: markers %q … %q not found", file, begin, end)
	}
	out := s[:i+len(begin)] + "\n" + strings.TrimRight(string(content), "\n") + "\n" + s[j:]
	return os.WriteFile(file, []byte(out), 0o644)
}
