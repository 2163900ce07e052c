package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// binary builds iked once for the tests that run it as operators do.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "iked-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "iked")
		if out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = errors.New(string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// runIked returns iked's exit status, stdout and stderr.
func runIked(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// -check-config: 0 for a good configuration, 1 with the file, line and
// field of a bad one, 2 for a usage error; never a start.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"iked.example.yaml", "secrets.example.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := filepath.Join(dir, "iked.example.yaml")
	if code, out, errs := runIked(t, "-check-config", "-config", good); code != 0 || !strings.Contains(out, "configuration good: 2 connections") {
		t.Errorf("good configuration: exit %d, %q %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("connections:\n  a:\n    local_addrs: 198.18.0.1\n    mobike: maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runIked(t, "-check-config", "-config", bad); code != 1 || !strings.Contains(errs, "bad.yaml") || !strings.Contains(errs, "line ") {
		t.Errorf("bad configuration: exit %d, %q; want 1 naming bad.yaml and a line", code, errs)
	}
	for _, args := range [][]string{{"-check-config", good}, {"-log-format", "xml"}, {"-log-level", "loud"}, {"-nosuchflag"}} {
		if code, _, errs := runIked(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage): %s", args, code, errs)
		}
	}
	if code, out, _ := runIked(t, "--version"); code != 0 || !strings.HasPrefix(out, "iked ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// With -log-format json every line is a JSON object, the first one saying
// what iked runs with.
func TestStartupLineJSON(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	code, _, errs := runIked(t, "-log-format", "json", "-config", missing)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	var first struct {
		Msg     string            `json:"msg"`
		Version string            `json:"version"`
		Flags   map[string]string `json:"flags"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Msg != "iked: starting" || first.Flags["config"] != missing || first.Version == "" {
		t.Errorf("start-up line %q: %v", lines[0], err)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("not JSON: %q", l)
		}
	}
}
