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

	"github.com/spugate/spugate/internal/privileged"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// binary builds spud once for the tests that run it as operators do.
func binary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "spud-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "spud")
		if out, err := exec.Command("go", "build", "-o", built.path, ".").CombinedOutput(); err != nil {
			built.err = errors.New(string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// runSpud returns spud's exit status, stdout and stderr.
func runSpud(t *testing.T, args ...string) (int, string, string) {
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

// -check: 1 with every reason spud would not start (an interface that is
// not there, a protected one not among them), 2 for a usage error.
func TestCheck(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "spud.sock")
	code, _, errs := runSpud(t, "-check", "-i", "nosuch0", "-protected", "nosuch1", "-socket", sock)
	if code != 1 || !strings.Contains(errs, `interface nosuch0`) || !strings.Contains(errs, `protected interface "nosuch1"`) {
		t.Errorf("-check with bad interfaces: exit %d, %q; want 1 naming both", code, errs)
	}
	if strings.Contains(errs, "starting") {
		t.Errorf("-check logged a start: %q", errs)
	}
	for _, args := range [][]string{{"-check"}, {"-i", "lo", "-log-format", "xml"}, {"-i", "lo", "-log-level", "loud"}, {"-i", "lo", "stray"}} {
		if code, _, errs := runSpud(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage): %s", args, code, errs)
		}
	}
	if code, out, _ := runSpud(t, "--version"); code != 0 || !strings.HasPrefix(out, "spud ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// With -log-format json the log is JSON, its first line saying what spud
// runs with.
func TestStartupLineJSON(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "spud.sock")
	code, _, errs := runSpud(t, "-log-format", "json", "-i", "nosuch0", "-socket", sock)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	line, _, _ := strings.Cut(errs, "\n")
	var first struct {
		Msg   string            `json:"msg"`
		Flags map[string]string `json:"flags"`
	}
	if err := json.Unmarshal([]byte(line), &first); err != nil || first.Msg != "spud: starting" || first.Flags["i"] != "nosuch0" || first.Flags["socket"] != sock {
		t.Errorf("start-up line %q: %v", line, err)
	}
}

// -check passes where spud would start: the loopback, the steering
// program loaded (never attached) by the kernel.
func TestPrivilegedCheck(t *testing.T) {
	privileged.Require(t)
	sock := filepath.Join(t.TempDir(), "spud.sock")
	if code, out, errs := runSpud(t, "-check", "-i", "lo", "-socket", sock, "-key-file", ""); code != 0 || !strings.Contains(out, "check passed") {
		t.Errorf("-check -i lo: exit %d, %q %q", code, out, errs)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("-check left a socket")
	}
}
