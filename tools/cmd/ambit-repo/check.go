package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
)

// allowedDeps says which sibling modules a module may depend on. Services
// never depend on each other, only on the versioned APIs in proto and the
// shared library in pkg, so each can be released and upgraded on its own.
func allowedDeps(mod string) (allowed []string, any bool) {
	switch {
	case mod == "proto" || mod == "tools":
		return nil, false
	case mod == "pkg":
		return []string{"proto"}, false
	case strings.HasPrefix(mod, "services/"), mod == "ctl":
		return []string{"proto", "pkg"}, false
	default: // tests may drive anything
		return nil, true
	}
}

// check returns every rule the tree breaks, one line each.
func check(root string) ([]string, error) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	listed, err := workspaceModules(root)
	if err != nil {
		return nil, err
	}
	found, err := moduleDirs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range found {
		if !slices.Contains(listed, d) {
			add("go.work: module ./%s is not listed", d)
		}
	}
	for _, d := range listed {
		if !slices.Contains(found, d) {
			add("go.work: ./%s has no go.mod", d)
		}
	}

	for _, mod := range listed {
		mf, err := readModFile(root, mod)
		if err != nil {
			add("%s: %v", mod, err)
			continue
		}
		if want := modulePrefix + mod; mf.Module.Mod.Path != want {
			add("%s/go.mod: module path %q, want %q", mod, mf.Module.Mod.Path, want)
		}
		if mf.Go == nil || (mf.Go.Version != "1.26" && !strings.HasPrefix(mf.Go.Version, "1.26.")) {
			add("%s/go.mod: go directive must be 1.26", mod)
		}
		allowed, anyDep := allowedDeps(mod)
		for _, r := range mf.Require {
			sib, ok := strings.CutPrefix(r.Mod.Path, modulePrefix)
			if !ok {
				continue
			}
			if !anyDep && !slices.Contains(allowed, sib) {
				add("%s/go.mod: requires %s; %s may depend only on %v", mod, sib, mod, allowed)
			}
			if !hasReplace(mf, r.Mod.Path, relPath(mod, sib)) {
				add("%s/go.mod: requires %s without `replace %s => %s` (GOWORK=off builds need it)", mod, sib, r.Mod.Path, relPath(mod, sib))
			}
		}
		if anyDep {
			continue
		}
		imports, err := siblingImports(filepath.Join(root, mod))
		if err != nil {
			return nil, err
		}
		for _, imp := range imports {
			target := moduleOf(imp.path, listed)
			if target == mod || slices.Contains(allowed, target) {
				continue
			}
			add("%s: imports %s (module %s); %s may import only %v", imp.file, imp.path, target, mod, allowed)
		}
	}

	problems = append(problems, checkVersions(root, listed)...)
	return problems, nil
}

func readModFile(root, mod string) (*modfile.File, error) {
	p := filepath.Join(root, mod, "go.mod")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(p, data, nil)
}

func hasReplace(mf *modfile.File, path, dir string) bool {
	for _, r := range mf.Replace {
		if r.Old.Path == path && filepath.Clean(r.New.Path) == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

// relPath is the replace target from module dir `from` to sibling `to`.
func relPath(from, to string) string {
	up := strings.Repeat("../", strings.Count(from, "/")+1)
	return up + to
}

type importRef struct{ file, path string }

// siblingImports lists imports of Ambit packages in every .go file of a module
// (tests included), skipping nested modules and testdata.
func siblingImports(dir string) ([]importRef, error) {
	var refs []importRef
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir {
				if name := d.Name(); name == "testdata" || strings.HasPrefix(name, ".") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, is := range f.Imports {
			path, _ := strconv.Unquote(is.Path.Value)
			if strings.HasPrefix(path, modulePrefix) {
				refs = append(refs, importRef{file: p, path: path})
			}
		}
		return nil
	})
	return refs, err
}

// moduleOf maps an import path to the longest module directory containing it.
func moduleOf(path string, mods []string) string {
	rest := strings.TrimPrefix(path, modulePrefix)
	best := ""
	for _, m := range mods {
		if (rest == m || strings.HasPrefix(rest, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	if best == "" {
		return rest
	}
	return best
}

// checkVersions makes sure versions.yaml accounts for every module and binary
// exactly once, so no component ships unversioned.
func checkVersions(root string, mods []string) []string {
	var problems []string
	vf, err := readVersions(root)
	if err != nil {
		return []string{err.Error()}
	}
	owner := map[string]string{}
	binOwner := map[string]string{}
	for name, c := range vf.Components {
		if !strings.HasPrefix(c.Version, "v") {
			problems = append(problems, fmt.Sprintf("versions.yaml: %s: version %q must look like vMAJOR.MINOR.PATCH", name, c.Version))
		}
		for _, m := range c.Modules {
			if prev, ok := owner[m]; ok {
				problems = append(problems, fmt.Sprintf("versions.yaml: module %s is in both %s and %s", m, prev, name))
			}
			owner[m] = name
		}
		for _, b := range c.Binaries {
			if prev, ok := binOwner[b]; ok {
				problems = append(problems, fmt.Sprintf("versions.yaml: binary %s is in both %s and %s", b, prev, name))
			}
			binOwner[b] = name
		}
	}
	for _, m := range mods {
		if _, ok := owner[m]; !ok {
			problems = append(problems, fmt.Sprintf("versions.yaml: module %s belongs to no component", m))
		}
	}
	bins, err := listBinaries(root)
	if err != nil {
		return append(problems, err.Error())
	}
	for _, b := range bins {
		if _, ok := binOwner[b.name]; !ok {
			problems = append(problems, fmt.Sprintf("versions.yaml: binary %s (%s) belongs to no component", b.name, b.module))
		}
	}
	return problems
}
