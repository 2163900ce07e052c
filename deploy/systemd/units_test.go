// Package systemd_test checks spud.service and iked.service: systemd's own
// verifier, and the daemons started as the units start them (their
// capability bounding set, no new privileges, NOTIFY_SOCKET and the
// watchdog), where systemd is not PID 1.
package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var units = []string{"spud.service", "iked.service"}

// manPages lays docs/man out as a MANPATH (man5/, man8/), so that the
// verifier finds the units' Documentation= pages.
func manPages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pages, err := filepath.Glob("../../docs/man/*.[58]")
	if err != nil || len(pages) == 0 {
		t.Fatalf("docs/man: %v (%d pages)", err, len(pages))
	}
	for _, p := range pages {
		sec := filepath.Join(dir, "man"+p[len(p)-1:])
		if err := os.MkdirAll(sec, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sec, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Verify runs systemd-analyze verify on the units in dir (their ExecStart
// binaries must be there) with the man pages of manpath; it fails on any
// output: the verifier exits 0 on an unknown key or a bad value and only
// says so.
func Verify(t *testing.T, dir, manpath string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian's systemd package; make deps)")
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed (Debian's man-db package; make deps)")
	}
	var paths []string
	for _, u := range units {
		paths = append(paths, filepath.Join(dir, u))
	}
	cmd := exec.Command("systemd-analyze", append([]string{"verify"}, paths...)...)
	cmd.Env = append(os.Environ(), "MANPATH="+manpath, "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestVerify: systemd's verifier takes both units as they are shipped,
// their binaries put where the test can provide one.
func TestVerify(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/sbin/"+strings.TrimSuffix(u, ".service"), self)
		if err := os.WriteFile(filepath.Join(dir, u), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Verify(t, dir, manPages(t))
}

// directive returns the values of a unit's key, in order.
func directive(t *testing.T, unit, key string) []string {
	t.Helper()
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// The units are what the daemons and their docs say: notify, the reload
// by SIGHUP on iked only, iked after spud, /run/spugate kept across
// restarts (spud's anchor key and iked's IKE SA states).
func TestUnitShape(t *testing.T) {
	for _, u := range units {
		for key, want := range map[string]string{"Type": "notify", "RuntimeDirectory": "spugate", "RuntimeDirectoryPreserve": "yes",
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "WatchdogSec": "30s"} {
			if got := directive(t, u, key); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s=%q, want %q", u, key, got, want)
			}
		}
	}
	if got := directive(t, "iked.service", "ExecReload"); len(got) != 2 || !strings.Contains(got[0], "iked -check-config") || got[1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("iked.service: ExecReload=%q, want iked -check-config, then SIGHUP", got)
	}
	if got := directive(t, "spud.service", "ExecReload"); len(got) != 0 {
		t.Errorf("spud.service reloads (%q), but spud has nothing to reload", got)
	}
	if got := directive(t, "iked.service", "After"); len(got) != 1 || !strings.Contains(got[0], "spud.service") {
		t.Errorf("iked.service: After=%q, want spud.service", got)
	}
	if got := directive(t, "spud.service", "CapabilityBoundingSet"); len(got) != 1 || strings.Contains(got[0], "SYS_ADMIN") {
		t.Errorf("spud.service: CapabilityBoundingSet=%q (CAP_SYS_ADMIN is not needed)", got)
	}
}
