package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every command that takes -o has its JSON schema in
// docs/operations.md, and no schema there is of a command that is gone.
func TestEveryJSONDocumented(t *testing.T) {
	schemas := docSchemas(t)
	root := (&app{}).newRoot()
	seen := map[string]bool{}
	for _, p := range commandPaths() {
		cmd, _, err := root.Find(strings.Fields(p))
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Flags().Lookup("output") == nil {
			continue
		}
		seen[p] = true
		if _, ok := schemas[p]; !ok {
			t.Errorf("spuctl %s takes -o json, and docs/operations.md has no \"#### `spuctl %s -o json`\"", p, p)
		}
	}
	for p := range schemas {
		if !seen[p] {
			t.Errorf("docs/operations.md documents \"spuctl %s -o json\": no such command takes -o", p)
		}
	}
}

// The man page names every command spuctl has (help's included).
func TestManPageCommands(t *testing.T) {
	b, err := os.ReadFile("../../docs/man/spuctl.8")
	if err != nil {
		t.Fatal(err)
	}
	// The command words of .B and .BR lines under COMMANDS, unescaped.
	text := strings.ReplaceAll(string(b), `\-`, "-")
	_, text, _ = strings.Cut(text, ".SH COMMANDS")
	text, _, _ = strings.Cut(text, "\n.SH ")
	named := map[string]bool{}
	word := regexp.MustCompile(`[a-z][a-z-]*`)
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, ".B "); ok {
			// .B capture \-w \fIFILE\fP ...: the first word.
			named[word.FindString(rest)] = true
		} else if rest, ok := strings.CutPrefix(line, ".BR "); ok {
			// .BR list-conns ", " list-sas: the bold words, not the
			// quoted ones between them.
			for i, part := range strings.Split(rest, `"`) {
				if i%2 == 0 {
					for _, w := range word.FindAllString(part, -1) {
						named[w] = true
					}
				}
			}
		}
	}
	root := (&app{}).newRoot()
	for _, c := range root.Commands() {
		if c.Hidden {
			continue
		}
		if !named[c.Name()] {
			t.Errorf("docs/man/spuctl.8 does not name the command %q", c.Name())
		}
	}
}
