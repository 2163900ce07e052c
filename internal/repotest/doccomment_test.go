package repotest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// undocumented lists the exported identifiers of one file that a reader of
// its package's documentation would find without a doc comment: top-level
// funcs, types, consts and vars, and the exported methods of exported
// types, as "Name" or "Type.Method" at their position. A const, var or
// type group's doc comment documents every spec in it, as go doc shows the
// group whole, and so does a const or var spec's line comment. Struct
// fields and interface methods are not asked for. A generated file (the
// "// Code generated ... DO NOT EDIT." header) and a command (package
// main, which nothing imports) have no readers of that kind and yield
// nothing.
func undocumented(f *ast.File) []ident {
	if ast.IsGenerated(f) || f.Name.Name == "main" {
		return nil
	}
	var out []ident
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() || d.Doc != nil {
				continue
			}
			name := d.Name.Name
			if d.Recv != nil {
				recv := receiverType(d.Recv.List[0].Type)
				if !ast.IsExported(recv) {
					continue
				}
				name = recv + "." + name
			}
			out = append(out, ident{d.Name.Pos(), name})
		case *ast.GenDecl:
			if d.Doc != nil {
				continue
			}
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() && s.Doc == nil {
						out = append(out, ident{s.Name.Pos(), s.Name.Name})
					}
				case *ast.ValueSpec:
					// A line comment counts: go doc shows a group whole, line
					// comments included, and the standard library documents
					// enumerations that way.
					if s.Doc != nil || s.Comment != nil {
						continue
					}
					for _, n := range s.Names {
						if n.IsExported() {
							out = append(out, ident{n.Pos(), n.Name})
						}
					}
				}
			}
		}
	}
	return out
}

// ident is an identifier that undocumented found.
type ident struct {
	pos  token.Pos
	name string
}

// receiverType is the name of a method's receiver type, without the
// pointer and the type parameters.
func receiverType(e ast.Expr) string {
	for {
		switch t := e.(type) {
		case *ast.StarExpr:
			e = t.X
		case *ast.ParenExpr:
			e = t.X
		case *ast.IndexExpr:
			e = t.X
		case *ast.IndexListExpr:
			e = t.X
		case *ast.Ident:
			return t.Name
		default:
			return ""
		}
	}
}

// TestExportedIdentifiersHaveDocComments: what a package exports is what
// its readers use without reading its code, so each exported name says
// why, when, in which units or under which invariants (a comment that
// restates the name is not caught here, but is not wanted either).
func TestExportedIdentifiersHaveDocComments(t *testing.T) {
	r := root(t)
	type miss struct {
		path string
		line int
		name string
	}
	var missing []miss
	for _, files := range packages(t) {
		for _, path := range files {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			rel, _ := filepath.Rel(r, path)
			for _, id := range undocumented(f) {
				missing = append(missing, miss{rel, fset.Position(id.pos).Line, id.name})
			}
		}
	}
	sort.Slice(missing, func(i, j int) bool {
		a, b := missing[i], missing[j]
		if a.path != b.path {
			return a.path < b.path
		}
		return a.line < b.line
	})
	for _, m := range missing {
		t.Errorf("%s:%d: %s has no doc comment", m.path, m.line, m.name)
	}
}

// TestUndocumented checks the checker on a file with one identifier of
// each kind documented and one not, so that a checker that finds nothing
// fails here.
func TestUndocumented(t *testing.T) {
	const src = `// Package p is for the test.
package p

// Documented is documented.
func Documented() {}

func Bare() {}

func unexported() {}

// T is documented.
type T int

type U struct{ Field int }

type hidden int

// M is documented.
func (T) M() {}

func (*T) N() {}

func (u U) O() {}

func (hidden) P() {}

func (T) unexported() {}

// G is a generic type.
type G[K comparable, V any] map[K]V

func (g *G[K, V]) Q() {}

// The group's doc comment documents A and B.
const (
	A = 1
	B = 2
)

const (
	// C is documented on its spec.
	C = 3
	D = 4 // D: a line comment documents its spec, as go doc shows the group
	e = 5
)

var V, W = 1, 2

// X is documented.
var X = 1

type (
	// Y is documented.
	Y int
	Z int
)
`
	want := []string{
		"7: Bare", "14: U", "21: T.N", "23: U.O", "32: G.Q",
		"47: V", "47: W", "55: Z",
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range undocumented(f) {
		got = append(got, fmt.Sprintf("%d: %s", fset.Position(id.pos).Line, id.name))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("undocumented found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, skipped := range []string{
		"// Code generated by stringer; DO NOT EDIT.\n\npackage p\n\nfunc Bare() {}\n",
		"package main\n\nfunc Bare() {}\n",
	} {
		f, err := parser.ParseFile(token.NewFileSet(), "q.go", skipped, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if ids := undocumented(f); len(ids) != 0 {
			t.Errorf("undocumented found %d identifiers in\n%s\nwant none", len(ids), skipped)
		}
	}
}
