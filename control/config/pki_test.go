package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

const certConf = `connections:
  site-b:
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.2
    fragmentation: accept
    send_cert: always
    local:
      auth: rsa/pss
      certs: gw-a.pem
      id: gw-a.example
    remote:
      auth: ecdsa-sha384
      id: "CN=*.site.example"
    children:
      net:
        local_ts: 198.18.1.0/24
`

// lab writes a root CA and an intermediate into x509ca and gw-a's RSA
// certificate and key into x509 and private, next to the configuration.
func lab(t *testing.T, dir string, kt labca.KeyType) (root, inter *labca.Cert) {
	t.Helper()
	var err error
	if root, err = labca.NewRoot(labca.Template{Subject: "C=CH, O=lab, CN=root"}); err != nil {
		t.Fatal(err)
	}
	if inter, err = root.NewIntermediate(labca.Template{Subject: "C=CH, O=lab, CN=intermediate"}); err != nil {
		t.Fatal(err)
	}
	gw, err := inter.Issue(labca.Template{Subject: "CN=gw-a.example", DNS: []string{"gw-a.example"}, Key: kt})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"x509", "x509ca", "private"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(labca.WriteCertPEM(filepath.Join(dir, "x509ca", "root.pem"), root.Cert))
	must(labca.WriteCertPEM(filepath.Join(dir, "x509ca", "inter.pem"), inter.Cert))
	must(labca.WriteCertPEM(filepath.Join(dir, "x509", "gw-a.pem"), gw.Cert))
	must(labca.WriteKeyPEM(filepath.Join(dir, "private", "gw-a.key"), gw.Key))
	return root, inter
}

func TestLoadCertificates(t *testing.T) {
	dir := t.TempDir()
	root, inter := lab(t, dir, labca.RSA3072)
	p := write(t, dir, "iked.yaml", certConf, 0o644)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, i, _ := c.Trust.Counts(); a != 1 || i != 1 {
		t.Errorf("store: %d anchors, %d intermediates, want 1 and 1 (root and intermediate)", a, i)
	}
	conn := c.Connections["site-b"]
	if conn.SendCert != "always" || conn.Fragmentation != "accept" || !bool(*conn.SendCertreq) {
		t.Errorf("send_cert %q fragmentation %q", conn.SendCert, conn.Fragmentation)
	}
	if c.FragmentSize != 1280 {
		t.Errorf("fragment_size %d, want 1280", c.FragmentSize)
	}
	l := conn.Local
	if len(l.Credentials) != 1 || l.Credentials[0].Leaf.Subject.CommonName != "gw-a.example" {
		t.Fatalf("credentials %+v", l.Credentials)
	}
	cred := l.Credentials[0]
	if len(cred.Intermediates) != 1 || !cred.Intermediates[0].Equal(inter.Cert) || cred.Root == nil || !cred.Root.Equal(root.Cert) {
		t.Errorf("chain not completed from x509ca: %d intermediates, root %v", len(cred.Intermediates), cred.Root != nil)
	}
	if o := l.Method.SignOptions(); !o.RSAPSS || len(o.Schemes) != 0 {
		t.Errorf("rsa/pss sign options %+v", o)
	}
	r := conn.Remote
	if r.Policy == nil || r.Policy.RemoteID.Type != IDDN {
		t.Fatalf("remote policy %+v", r.Policy)
	}
	acc := r.Method.Accepted()
	if len(acc) != 2 || acc[0] != pki.ECDSASHA384 || acc[1] != pki.ECDSA384 {
		t.Errorf("ecdsa-sha384 accepts %v", acc)
	}
	if !r.Identity.Matches(IDDN, mustDN(t, "CN=gw-b.site.example")) || r.Identity.Matches(IDDN, mustDN(t, "CN=gw-b.other.example")) {
		t.Error("DN wildcard in the remote id")
	}
	if !strings.Contains(fmt2(cred.Key), "RSA") || strings.Contains(fmt2(cred.Key), "PRIVATE") {
		t.Errorf("a key prints as %q", fmt2(cred.Key))
	}

	// Without id, the local identity is the certificate's subject.
	src := strings.Replace(certConf, "      id: gw-a.example\n", "", 1)
	write(t, dir, "iked.yaml", src, 0o644)
	if c, err = Load(p, nil); err != nil {
		t.Fatal(err)
	}
	if id := c.Connections["site-b"].Local.Identity; id.Type != IDDN || id.Text != "CN=gw-a.example" {
		t.Errorf("default local identity %+v", id)
	}
}

func mustDN(t *testing.T, s string) []byte {
	id, err := ParseIdentity(s)
	if err != nil {
		t.Fatal(err)
	}
	return id.Data
}

func fmt2(v any) string { return strings.TrimSpace(strings.ReplaceAll(sprint(v), "\n", " ")) }

func TestLoadCertificateErrors(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(dir string) string
		want  []string
		avoid string
	}{
		{"missing cert", func(string) string { return strings.Replace(certConf, "certs: gw-a.pem", "certs: gw-x.pem", 1) },
			[]string{`iked.yaml: line 9: connection "site-b": local: certs: gw-x.pem: not found`}, ""},
		{"key readable by others", func(dir string) string {
			os.Chmod(filepath.Join(dir, "private", "gw-a.key"), 0o644)
			return certConf
		}, []string{"gw-a.key", "0644"}, "BEGIN"},
		{"no key", func(dir string) string {
			os.Remove(filepath.Join(dir, "private", "gw-a.key"))
			return certConf
		}, []string{`line 9: connection "site-b": local: certs: gw-a.pem: no private key for "CN=gw-a.example"`}, ""},
		{"id not in certificate", func(string) string { return strings.Replace(certConf, "id: gw-a.example", "id: gw-z.example", 1) },
			[]string{`line 10: connection "site-b": local: id: gw-z.example is not in certificate gw-a.pem`}, ""},
		{"key family", func(string) string { return strings.Replace(certConf, "auth: rsa/pss", "auth: ecdsa", 1) },
			[]string{`local: auth: gw-a.pem: auth ecdsa needs an ECDSA key`}, ""},
		{"no anchor", func(dir string) string {
			os.Remove(filepath.Join(dir, "x509ca", "root.pem"))
			return certConf
		}, []string{`connection "site-b": remote: no trust anchor`}, ""},
		{"bad auth", func(string) string { return strings.Replace(certConf, "auth: ecdsa-sha384", "auth: ecdsa-md5", 1) },
			[]string{`line 12: connection "site-b": remote: auth: "ecdsa-md5": unknown hash "md5"`}, ""},
		{"send_cert", func(string) string { return strings.Replace(certConf, "send_cert: always", "send_cert: sometimes", 1) },
			[]string{`line 6: connection "site-b": send_cert: "sometimes": want always, ifasked or never`}, ""},
		{"fragment_size", func(string) string { return "fragment_size: 100\n" + certConf },
			[]string{`line 1: fragment_size: 100 out of range`}, ""},
		{"revocation", func(string) string {
			return strings.Replace(certConf, "      id: \"CN=*.site.example\"", "      id: \"CN=*.site.example\"\n      revocation: strict", 1)
		}, []string{`remote: revocation: "strict" is not supported`}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			lab(t, dir, labca.RSA2048)
			p := write(t, dir, "iked.yaml", c.edit(dir), 0o644)
			_, err := Load(p, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\nwant it to contain\n  %s", err, w)
				}
			}
			if c.avoid != "" && strings.Contains(err.Error(), c.avoid) {
				t.Errorf("error %v contains %q", err, c.avoid)
			}
		})
	}
}

func TestKeyFromSecretsFile(t *testing.T) {
	dir := t.TempDir()
	lab(t, dir, labca.ECDSAP256)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	if err := os.Rename(filepath.Join(dir, "private", "gw-a.key"), filepath.Join(dir, "keys", "a.key")); err != nil {
		t.Fatal(err)
	}
	src := "secrets: secrets.yaml\n" + strings.Replace(certConf, "auth: rsa/pss", "auth: pubkey", 1)
	p := write(t, dir, "iked.yaml", src, 0o644)
	write(t, dir, "secrets.yaml", "private:\n  gw-a:\n    file: keys/a.key\n", 0o600)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.Connections["site-b"].Local.Credentials); n != 1 {
		t.Errorf("%d credentials", n)
	}
	write(t, dir, "secrets.yaml", "private:\n  gw-a:\n    file: keys/a.key\n    secret: pass\n", 0o600)
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "encrypted private keys are not supported") || strings.Contains(err.Error(), "pass\"") {
		t.Errorf("encrypted key: %v", err)
	}
}

func TestParseAuthMethod(t *testing.T) {
	for in, want := range map[string]string{
		"psk":                 "psk  []",
		"pubkey":              "pubkey  []",
		"rsa/pss":             "pubkey rsa/pss []",
		"ike:rsa/pss-sha256":  "pubkey rsa/pss [rsa/pss-sha256]",
		"ecdsa-sha256-sha384": "pubkey ecdsa [ecdsa-sha256 ecdsa-sha384]",
		"pubkey-sha512":       "pubkey  [rsa-sha512 rsa/pss-sha512 ecdsa-sha512]",
		"ed25519":             "pubkey ed25519 []",
		"RSA-SHA2_256":        "pubkey rsa [rsa-sha256]",
	} {
		m, err := ParseAuthMethod(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := sprint(m.Kind, m.Family, m.Schemes); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"eap", "rsa-md5", "ed25519-sha256", "pubkey-"} {
		if _, err := ParseAuthMethod(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	m, _ := ParseAuthMethod("rsa")
	if acc := m.Accepted(); len(acc) != 4 || acc[0] != pki.RSAPKCS1SHA1 {
		t.Errorf("rsa accepts %v", acc)
	}
	if m, _ := ParseAuthMethod("pubkey"); m.Accepted() != nil {
		t.Errorf("pubkey constrains the peer")
	}
}

func sprint(v ...any) string { return strings.TrimSpace(fmt.Sprintln(v...)) }

func TestSameConnIgnoresLoadedCredentials(t *testing.T) {
	dir := t.TempDir()
	lab(t, dir, labca.ECDSAP256)
	p := write(t, dir, "iked.yaml", strings.Replace(certConf, "auth: rsa/pss", "auth: pubkey", 1), 0o644)
	a, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A renewed certificate and key: the same configuration.
	lab(t, dir, labca.ECDSAP256)
	b, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Connections["site-b"].Local.Credentials[0].Leaf.Equal(b.Connections["site-b"].Local.Credentials[0].Leaf) {
		t.Fatal("the certificate was not renewed")
	}
	if !SameConn(a.Connections["site-b"], b.Connections["site-b"]) {
		t.Error("a renewed certificate makes the connection differ")
	}
	write(t, dir, "iked.yaml", strings.Replace(certConf, "auth: rsa/pss", "auth: ecdsa", 1), 0o644)
	if b, err = Load(p, nil); err != nil {
		t.Fatal(err)
	}
	if SameConn(a.Connections["site-b"], b.Connections["site-b"]) {
		t.Error("another auth value is the same connection")
	}
}

// TestDNIdentityIsTheSubject: a DN written as an identity encodes to the
// very bytes of the subject of a certificate issued for it (the lab CA
// encodes subjects with pki.ParseDN as well), so the ID payload iked sends
// equals the certificate's subject: printable and UTF-8 values, e-mail and
// domain components, strongSwan's and OpenSSL's spellings, dotted OIDs.
func TestDNIdentityIsTheSubject(t *testing.T) {
	root, err := labca.NewRoot(labca.Template{Subject: "C=CH, O=lab, CN=root"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"CN=gw-a.example",
		"C=CH, O=spugate, OU=Zürich Büro, CN=gw-a",
		"C=CH, O=spugate, CN=gw-b, E=ops@gw-b.example",
		"DC=example, DC=spugate, UID=gw7, CN=gw-7",
		"/C=CH/O=spugate/CN=gw-c",
		"C=CH, 2.5.4.97=VATCH-123, CN=gw-d",
	} {
		c, err := root.Issue(labca.Template{Subject: s})
		if err != nil {
			t.Errorf("%s: issue: %v", s, err)
			continue
		}
		id, err := ParseIdentity(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if id.Type != IDDN || string(id.Data) != string(c.Cert.RawSubject) {
			t.Errorf("%s: identity % x, certificate subject % x", s, id.Data, c.Cert.RawSubject)
		}
	}
}
