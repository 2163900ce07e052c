package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v0.3.0":                   "0.3.0",
		"v0.3.0-12-gabcdef0":       "0.3.0+12.gabcdef0",
		"v0.3.0-12-gabcdef0-dirty": "0.3.0+12.gabcdef0.dirty",
		"0e2db2a":                  "0.0.0+g0e2db2a",
		"abcdef0-dirty":            "0.0.0+gabcdef0.dirty",
		"1234567":                  "1234567",
		"devel":                    "0.0.0+gdevel",
	} {
		if got := debVersion(in); got != want {
			t.Errorf("debVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// The man pages format without a warning from groff (-ww) and man reads
// each with its NAME section.
func TestManPages(t *testing.T) {
	pages, err := filepath.Glob("../../docs/man/*.[58]")
	if err != nil || len(pages) != 4 {
		t.Fatalf("docs/man: %v %v, want spud.8 iked.8 spuctl.8 iked.yaml.5", pages, err)
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not installed (Debian's groff-base; make deps)")
	}
	for _, p := range pages {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", p)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff %s: %v\n%s", p, err, out)
		}
		if _, err := exec.LookPath("man"); err != nil {
			continue
		}
		cmd = exec.Command("man", "-l", p)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80", "LC_ALL=C.UTF-8")
		out, err := cmd.Output()
		name := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		if err != nil || !strings.Contains(string(out), "NAME\n       "+name+" - ") {
			t.Errorf("man -l %s: %v\n%s", p, err, out)
		}
	}
}
