package repotest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func root(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// internal/repotest -> the module root
	return filepath.Dir(filepath.Dir(dir))
}

// packages returns every directory holding non-test Go files.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	r := root(t)
	filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || d.Name() == "bin" || d.Name() == "results") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			pkgs[filepath.Dir(p)] = append(pkgs[filepath.Dir(p)], p)
		}
		return nil
	})
	return pkgs
}

// TestEveryPackageHasADocComment: a reader of any package learns from its
// doc comment what it is for.
func TestEveryPackageHasADocComment(t *testing.T) {
	r := root(t)
	for dir, files := range packages(t) {
		documented := false
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				documented = true
			}
		}
		if !documented {
			rel, _ := filepath.Rel(r, dir)
			t.Errorf("package %s has no doc comment", rel)
		}
	}
}

// TestNoGenericPackageNames: packages are named for what they are.
func TestNoGenericPackageNames(t *testing.T) {
	for dir := range packages(t) {
		switch filepath.Base(dir) {
		case "util", "utils", "common", "misc", "helpers", "shared":
			t.Errorf("package %s: name it for what it is", dir)
		}
	}
}

// TestImportBoundaries: the data plane does not depend on the control
// plane (spud must run, and restart, without iked's code), and the
// control plane reaches the data plane only through its API and the anchor
// function they share; neither depends on the testbed (testbed/) or the
// benchmarks, and nothing imports a command (cmd/) but its own packages.
// internal/ lies beneath both planes (the RPC they speak, unixrpc, and test
// plumbing): it imports none of the layers above it.
func TestImportBoundaries(t *testing.T) {
	r := root(t)
	const mod = "github.com/spugate/spugate/"
	allowedFromControl := map[string]bool{
		mod + "dataplane/api":    true,
		mod + "dataplane/anchor": true,
	}
	for dir, files := range packages(t) {
		rel, _ := filepath.Rel(r, dir)
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			for _, im := range af.Imports {
				path := strings.Trim(im.Path.Value, `"`)
				switch {
				case !strings.HasPrefix(rel, "cmd") && strings.HasPrefix(path, mod+"cmd/") && !strings.HasPrefix(path, mod+rel):
					t.Errorf("%s imports %s: commands are the top of the tree; nothing imports them", rel, path)
				case (strings.HasPrefix(rel, "dataplane") || strings.HasPrefix(rel, "control") || strings.HasPrefix(rel, "bpf")) &&
					(strings.HasPrefix(path, mod+"testbed/") || strings.HasPrefix(path, mod+"bench/")):
					t.Errorf("%s imports %s: the daemons' code does not depend on the testbed or the benchmarks", rel, path)
				case (strings.HasPrefix(rel, "dataplane") || strings.HasPrefix(rel, "bpf")) && strings.HasPrefix(path, mod+"control/"):
					t.Errorf("%s imports %s: the data plane may not depend on the control plane", rel, path)
				case strings.HasPrefix(rel, "control") && strings.HasPrefix(path, mod+"dataplane/") && !allowedFromControl[path]:
					t.Errorf("%s imports %s: the control plane talks to the data plane through dataplane/api", rel, path)
				case strings.HasPrefix(rel, "internal") && (strings.HasPrefix(path, mod+"dataplane/") || strings.HasPrefix(path, mod+"control/") ||
					strings.HasPrefix(path, mod+"testbed/") || strings.HasPrefix(path, mod+"bench/")):
					t.Errorf("%s imports %s: internal/ is beneath both planes and may not import them", rel, path)
				}
			}
		}
	}
}
