// Command testreport reads `go test -json` on stdin and prints what a person
// needs from a long run: a line per package, the whole output of every test
// that failed, each skipped test with its reason, and a summary. It exits 1
// if any test or package failed (including a build failure), so a Makefile
// can rely on it with pipefail.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type key struct{ pkg, test string }

func main() {
	out := map[key]*strings.Builder{}
	var failed, skipped []key
	passed := 0
	pkgFailed := 0
	pkgs := 0
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Build errors and other non-JSON lines go through as they are.
			fmt.Println(string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			b := out[k]
			if b == nil {
				b = &strings.Builder{}
				out[k] = b
			}
			b.WriteString(e.Output)
		case "pass":
			if e.Test == "" {
				pkgs++
				fmt.Printf("ok   %-60s %6.1fs\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(out, k)
		case "skip":
			if e.Test == "" {
				fmt.Printf("--   %-60s (no tests)\n", e.Package)
			} else {
				skipped = append(skipped, k)
			}
		case "fail":
			if e.Test == "" {
				pkgs++
				pkgFailed++
				fmt.Printf("FAIL %-60s %6.1fs\n", e.Package, e.Elapsed)
				if b := out[k]; b != nil {
					// Package-level output: build errors, panics, timeouts.
					fmt.Print(indent(b.String()))
				}
			} else {
				failed = append(failed, k)
				if b := out[k]; b != nil {
					fmt.Print(indent(b.String()))
				}
			}
		}
	}
	if len(skipped) > 0 {
		fmt.Println("\nSkipped:")
		sort.Slice(skipped, func(i, j int) bool { return skipped[i].pkg+skipped[i].test < skipped[j].pkg+skipped[j].test })
		for _, k := range skipped {
			fmt.Printf("  %s %s: %s\n", short(k.pkg), k.test, skipReason(out[k]))
		}
	}
	if len(failed) > 0 {
		fmt.Println("\nFailed:")
		for _, k := range failed {
			fmt.Printf("  %s %s\n", short(k.pkg), k.test)
		}
	}
	fmt.Printf("\ntests: %d passed, %d failed, %d skipped; packages: %d, %d failed\n",
		passed, len(failed), len(skipped), pkgs, pkgFailed)
	if len(failed) > 0 || pkgFailed > 0 {
		os.Exit(1)
	}
}

func short(pkg string) string { return strings.TrimPrefix(pkg, "github.com/spugate/spugate/") }

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString("    " + l)
		}
	}
	return b.String()
}

// skipReason is the last line the test logged before skipping, which is
// what t.Skip printed.
func skipReason(b *strings.Builder) string {
	if b == nil {
		return "(no reason given)"
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		if j := strings.Index(l, ": "); j >= 0 && strings.Contains(l[:j], ".go:") {
			l = l[j+2:]
		}
		return l
	}
	return "(no reason given)"
}
