package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/pki"
)

// TestPKILab makes a root, an intermediate under it and two gateway
// certificates installed into two iked folders, then loads both iked
// configurations and checks that each side's trust store accepts the
// other's chain: what the README's walkthrough does.
func TestPKILab(t *testing.T) {
	dir := t.TempDir()
	root, inter := filepath.Join(dir, "root"), filepath.Join(dir, "inter")
	confA, confB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	var out bytes.Buffer
	issue := func(args ...string) {
		t.Helper()
		var errOut bytes.Buffer
		if code := run(append([]string{"pki"}, args...), &out, &errOut); code != 0 {
			t.Fatalf("spuctl pki %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
	}
	issue("ca", root, "-key", "ecdsa-p384")
	issue("ca", inter, "-parent", root, "--key", "ecdsa-p256")
	issue("issue", inter, "-id", "gw-a.example", "-san", "198.18.0.1", "-key", "ed25519", "-install", confA)
	issue("issue", inter, "--id", "gw-b.example", "--key", "rsa2048", "--install", confB)
	t.Log(out.String())

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(root, "ca.key"), 0o600}, {filepath.Join(inter, "ca.key"), 0o600}, {filepath.Join(inter, "gw-a.example.key"), 0o600},
		{filepath.Join(confA, "private", "gw-a.example.key"), 0o600}, {filepath.Join(confA, "x509", "gw-a.example.pem"), 0o644},
		{filepath.Join(confA, "x509ca", "spugate-lab-root-CA.pem"), 0o644},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %04o, want %04o", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	// A second CA in the same folder is refused (exit 1); no --id or a
	// key type not known are usage errors (exit 2).
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ca", root}, 1, "exists"},
		{[]string{"issue", inter}, 2, `required flag(s) "id" not set`},
		{[]string{"ca", filepath.Join(dir, "x"), "-key", "dsa"}, 2, "ecdsa-p256"},
	} {
		var errOut bytes.Buffer
		code := run(append([]string{"pki"}, c.args...), &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("spuctl pki %s: exit %d, want %d; stderr %q, want one line with %q", strings.Join(c.args, " "), code, c.code, errOut.String(), c.want)
		}
	}

	load := func(conf, local, remote string) *config.Config {
		t.Helper()
		y := `connections:
  site:
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.2
    local:
      auth: pubkey
      certs: ` + local + `.pem
      id: ` + local + `
    remote:
      auth: pubkey
      id: ` + remote + `
    children:
      net:
        local_ts: 198.18.1.0/24
`
		p := filepath.Join(conf, "iked.yaml")
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := load(confA, "gw-a.example", "gw-b.example")
	b := load(confB, "gw-b.example", "gw-a.example")
	credB := b.Connections["site"].Local.Credentials[0]
	_, certs := pki.SelectCredential(b.Connections["site"].Local.Credentials, nil)
	if len(certs) != 2 || credB.Root == nil {
		t.Fatalf("gw-b sends %d certificates (want its own and the intermediate), root known %v", len(certs), credB.Root != nil)
	}
	var payloads []pki.CertPayload
	for _, c := range certs {
		payloads = append(payloads, pki.CertPayload{Encoding: pki.CertX509Signature, Data: c})
	}
	id, _ := config.ParseIdentity("gw-b.example")
	chain, err := a.Trust.VerifyPeer(payloads, pki.ID{Type: id.Type, Data: id.Data}, a.Connections["site"].Remote.Policy)
	if err != nil {
		t.Fatalf("gw-a refuses gw-b's chain: %v", err)
	}
	if len(chain.Chain) != 3 {
		t.Errorf("chain of %d certificates, want gw-b, intermediate, root", len(chain.Chain))
	}
}
