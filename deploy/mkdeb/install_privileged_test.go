package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spugate/spugate/internal/privileged"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs a command in the module root and returns its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = moduleRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gitVersion is what make stamps the binaries with.
func gitVersion(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(run(t, "git", "describe", "--tags", "--always", "--dirty"))
}

// treeModes lists a tree's files as path -> mode, relative to root.
func treeModes(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out["/"+rel] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkVersion runs an installed binary's --version and -version.
func checkVersion(t *testing.T, bin, prog, want string) {
	t.Helper()
	for _, flag := range []string{"--version", "-version"} {
		out, err := exec.Command(bin, flag).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), prog+" "+want+" (commit ") {
			t.Errorf("%s %s: %v %q, want %q", bin, flag, err, out, prog+" "+want)
		}
	}
}

// TestPrivilegedMakeInstall: make install DESTDIR= PREFIX=/usr/local lays
// out the programs, units (pointing at PREFIX), man pages, examples and
// /etc/spugate (0700, its files 0600, an operator's kept on a second
// install); the installed binaries say the build's version and the
// installed units pass systemd-analyze verify with their man pages.
func TestPrivilegedMakeInstall(t *testing.T) {
	privileged.Require(t, "make")
	dest, build := t.TempDir(), t.TempDir()
	run(t, "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local", "BUILDDIR="+build)
	got := treeModes(t, dest)
	want := map[string]fs.FileMode{
		"/usr/local/sbin/spud": 0o755, "/usr/local/sbin/iked": 0o755, "/usr/local/sbin/spuctl": 0o755,
		"/usr/local/lib/systemd/system/spud.service": 0o644, "/usr/local/lib/systemd/system/iked.service": 0o644,
		"/usr/local/share/man/man8/spud.8": 0o644, "/usr/local/share/man/man8/iked.8": 0o644,
		"/usr/local/share/man/man8/spuctl.8": 0o644, "/usr/local/share/man/man5/iked.yaml.5": 0o644,
		"/usr/local/share/doc/spugate/LICENSE":                       0o644,
		"/usr/local/share/doc/spugate/examples/iked.example.yaml":    0o644,
		"/usr/local/share/doc/spugate/examples/secrets.example.yaml": 0o644,
		"/usr/local/share/doc/spugate/examples/swanctl.example.conf": 0o644,
		"/etc/spugate": fs.ModeDir | 0o700, "/etc/spugate/spud.env": 0o600, "/etc/spugate/iked.env": 0o600,
	}
	for p, m := range want {
		if gm, ok := got[p]; !ok || gm != m {
			t.Errorf("%s: mode %v (there: %v), want %v", p, gm, ok, m)
		}
	}
	for p, m := range got {
		if _, ok := want[p]; !ok && !m.IsDir() {
			t.Errorf("%s installed, not expected", p)
		}
	}
	v := gitVersion(t)
	for _, prog := range []string{"spud", "iked"} {
		checkVersion(t, filepath.Join(dest, "usr/local/sbin", prog), prog, v)
	}
	units := filepath.Join(dest, "usr/local/lib/systemd/system")
	for _, u := range []string{"spud.service", "iked.service"} {
		b, err := os.ReadFile(filepath.Join(units, u))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/sbin/") || strings.Contains(string(b), "/usr/sbin/") {
			t.Errorf("%s: ExecStart not under PREFIX:\n%s", u, b)
		}
		// The tree is not at /: verify it where it is.
		s := strings.ReplaceAll(string(b), "/usr/local/sbin/", dest+"/usr/local/sbin/")
		if err := os.WriteFile(filepath.Join(units, u), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		cmd := exec.Command("systemd-analyze", "verify", filepath.Join(units, "spud.service"), filepath.Join(units, "iked.service"))
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dest, "usr/local/share/man"))
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify on the installed units: %v\n%s", err, out)
		}
	}
	// An operator's settings survive a second install.
	env := filepath.Join(dest, "etc/spugate/spud.env")
	if err := os.WriteFile(env, []byte("SPUD_ARGS=\"-i eth1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "make", "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local", "BUILDDIR="+build)
	if b, _ := os.ReadFile(env); string(b) != "SPUD_ARGS=\"-i eth1\"\n" {
		t.Errorf("a second install replaced the operator's spud.env: %q", b)
	}
}

// TestPrivilegedDeb: make deb builds a package whose control, files and
// conffiles are as shipped, dpkg installs it into a scratch root (its own
// database, not the system's), the installed binaries run and say the
// build's version, and removing it keeps /etc/spugate's conffiles until a
// purge.
func TestPrivilegedDeb(t *testing.T) {
	privileged.Require(t, "make", "dpkg", "dpkg-deb")
	build := t.TempDir()
	run(t, "make", "--no-print-directory", "deb", "BUILDDIR="+build)
	debs, _ := filepath.Glob(filepath.Join(build, "spugate_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	deb := debs[0]
	v := gitVersion(t)
	info := run(t, "dpkg-deb", "--info", deb)
	for _, f := range []string{"Package: spugate", "Version: " + debVersion(v) + "-1", "Architecture: ", "Depends: systemd", "Section: net"} {
		if !strings.Contains(info, f) {
			t.Errorf("dpkg-deb --info: no %q in\n%s", f, info)
		}
	}
	contents := run(t, "dpkg-deb", "--contents", deb)
	for _, f := range []string{"./usr/sbin/spud", "./usr/sbin/iked", "./usr/sbin/spuctl",
		"./usr/lib/systemd/system/spud.service", "./usr/lib/systemd/system/iked.service",
		"./usr/share/man/man8/spud.8.gz", "./usr/share/man/man8/iked.8.gz", "./usr/share/man/man8/spuctl.8.gz", "./usr/share/man/man5/iked.yaml.5.gz",
		"./usr/share/doc/spugate/copyright", "./usr/share/doc/spugate/examples/iked.example.yaml", "./etc/spugate/spud.env"} {
		if !strings.Contains(contents, f+"\n") {
			t.Errorf("dpkg-deb --contents: no %s", f)
		}
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if !strings.Contains(info, " "+s+"\n") && !strings.Contains(info, " "+s+" ") {
			t.Errorf("dpkg-deb --info: no %s", s)
		}
	}
	conf := strings.Fields(run(t, "dpkg-deb", "--info", deb, "conffiles"))
	slices.Sort(conf)
	if !slices.Equal(conf, []string{"/etc/spugate/iked.env", "/etc/spugate/spud.env"}) {
		t.Errorf("conffiles %q", conf)
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/updates", "var/lib/dpkg/info"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// systemd is the system's, not the scratch root's: its dependency is
	// forced. The scratch root has no shell: the maintainer scripts run
	// outside it, on $DPKG_ROOT's paths (the scratch root's), so they
	// touch nothing of this machine.
	//
	// The scratch root has a /run/systemd/system, as a machine booted
	// with systemd, and a systemctl of the test's that notes its calls.
	if err := os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	fake, calls := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	if err := os.WriteFile(filepath.Join(fake, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	called := func() []string {
		b, _ := os.ReadFile(calls)
		os.Remove(calls)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	dpkg := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dpkg", append([]string{"--root=" + root, "--force-depends", "--force-script-chrootless"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dpkg("-i", deb)
	if got := called(); !slices.Equal(got, []string{"daemon-reload"}) {
		t.Errorf("install: systemctl %q, want daemon-reload alone (nothing started)", got)
	}
	for _, prog := range []string{"spud", "iked"} {
		checkVersion(t, filepath.Join(root, "usr/sbin", prog), prog, v)
	}
	if out, err := exec.Command(filepath.Join(root, "usr/sbin/spuctl"), "-h").CombinedOutput(); !strings.Contains(string(out), "spuctl") {
		t.Errorf("installed spuctl -h: %v\n%s", err, out)
	}
	if st := dpkg("-s", "spugate"); !strings.Contains(st, "Status: install ok installed") {
		t.Errorf("dpkg -s:\n%s", st)
	}
	for _, f := range []string{"usr/lib/systemd/system/iked.service", "usr/share/man/man5/iked.yaml.5.gz", "usr/share/doc/spugate/copyright"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command("man", "-l", filepath.Join(root, "usr/share/man/man8/spud.8.gz"))
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "LC_ALL=C.UTF-8")
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "spud - ") {
			t.Errorf("man -l on the installed spud.8.gz: %v\n%s", err, out)
		}
	}
	dpkg("-r", "spugate")
	if got := called(); !slices.Equal(got, []string{"stop iked.service spud.service", "daemon-reload"}) {
		t.Errorf("remove: systemctl %q, want the daemons stopped, then daemon-reload", got)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/spud")); err == nil {
		t.Error("spud left after dpkg -r")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/spugate/spud.env")); err != nil {
		t.Errorf("dpkg -r removed a conffile: %v", err)
	}
	state := filepath.Join(root, "var/lib/spugate")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	dpkg("-P", "spugate")
	if _, err := os.Stat(filepath.Join(root, "etc/spugate/spud.env")); err == nil {
		t.Error("spud.env left after dpkg -P")
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("/var/lib/spugate left after dpkg -P")
	}
}
