package iked

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/pki/labca"
	"github.com/spugate/spugate/control/vici"
)

func credDaemon() (*Daemon, viciBackend) {
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), fileCfg: &config.Config{}}
	return d, viciBackend{d: d}
}

// TestVICILoadKey: load-key takes a key as swanctl sends it (DER:
// PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8; or the file's PEM), gives the
// same id for the same key however encoded, checks the type against the
// data and never quotes a malformed key.
func TestVICILoadKey(t *testing.T) {
	_, b := credDaemon()
	ids := map[string]bool{}
	for _, kt := range []labca.KeyType{labca.RSA2048, labca.ECDSAP256, labca.Ed25519} {
		k, err := labca.GenerateKey(kt)
		if err != nil {
			t.Fatal(err)
		}
		p8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		encs := map[string][]byte{"pkcs8": p8, "pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})}
		typ := "ed25519"
		switch k := k.(type) {
		case *rsa.PrivateKey:
			typ, encs["pkcs1"] = "rsa", x509.MarshalPKCS1PrivateKey(k)
		case *ecdsa.PrivateKey:
			typ = "ecdsa"
			if encs["sec1"], err = x509.MarshalECPrivateKey(k); err != nil {
				t.Fatal(err)
			}
		case ed25519.PrivateKey:
		}
		id := ""
		for name, data := range encs {
			for _, ty := range []string{typ, "any"} {
				got, err := b.LoadKey(ty, data)
				if err != nil {
					t.Fatalf("%s %s as %s: %v", kt, name, ty, err)
				}
				if id == "" {
					id = got
				} else if got != id {
					t.Errorf("%s %s: id %s, another encoding had %s", kt, name, got, id)
				}
			}
		}
		if len(id) != 40 || ids[id] {
			t.Errorf("%s: id %q", kt, id)
		}
		ids[id] = true
		wrong := "rsa"
		if typ == "rsa" {
			wrong = "ecdsa"
		}
		if _, err := b.LoadKey(wrong, p8); err == nil || !strings.Contains(err.Error(), "type "+wrong+" but the data is an ") {
			t.Errorf("%s as %s: %v", kt, wrong, err)
		}
	}
	if got := b.KeyIDs(); len(got) != 3 {
		t.Errorf("KeyIDs %v, want 3 (one per key)", got)
	}
	junk := []byte("\x30\x82\x01\x00secret-looking bytes")
	if _, err := b.LoadKey("rsa", junk); err == nil || !strings.Contains(err.Error(), "malformed private key") || strings.Contains(err.Error(), "secret") {
		t.Errorf("junk key: %v", err)
	}
	if err := b.UnloadKey("00"); err == nil || err.Error() != "private key '00' not found" {
		t.Errorf("unload unknown: %v", err)
	}
}

// TestVICICertsMalformed: malformed certificates and CRLs are refused,
// saying what they are.
func TestVICICertsMalformed(t *testing.T) {
	_, b := credDaemon()
	for kind, want := range map[vici.CertKind]string{vici.CertEndEntity: "malformed certificate", vici.CertCA: "malformed certificate", vici.CertCRL: "malformed CRL"} {
		for _, data := range [][]byte{[]byte("\x30\x03\x02\x01\x00"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
			if err := b.LoadCert(kind, data); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("kind %d %q: %v", kind, data[:8], err)
			}
		}
	}
	if err := b.LoadAuthority("lab", []byte("junk")); err == nil || !strings.Contains(err.Error(), "cacert: malformed certificate") {
		t.Errorf("authority junk: %v", err)
	}
}

// TestVICIConnCerts: a connection loaded over VICI with certs (the
// file's data) gets its credential from the key VICI loaded; a
// certificate whose key was not loaded is refused naming it; remote
// pubkey needs a trust anchor.
func TestVICIConnCerts(t *testing.T) {
	ca, err := labca.NewRoot(labca.Template{Subject: "CN=lab root"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ca.Issue(labca.Template{Subject: "CN=gw-a.example", DNS: []string{"gw-a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := labca.GenerateKey(labca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	gwPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gw.Cert.Raw}))
	tree := func(id string, certs ...string) *vici.Section {
		if certs == nil {
			certs = []string{gwPEM}
		}
		c := &vici.Section{}
		c.SetList("local_addrs", []string{"198.18.0.1"}).SetList("remote_addrs", []string{"198.18.0.2"})
		l := c.AddSection("local").Set("auth", "pubkey").SetList("certs", certs)
		if id != "" {
			l.Set("id", id)
		}
		c.AddSection("remote").Set("auth", "pubkey").Set("id", "gw-b.example")
		c.AddSection("children").AddSection("net").SetList("local_ts", []string{"198.18.1.0/24"})
		return c
	}
	parse := func(t *testing.T, c *vici.Section) (*config.Conn, map[string][][]byte) {
		t.Helper()
		c, blobs := viciCertBlobs(c)
		cfg, err := viciConn("site", c)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Connections["site"], blobs
	}

	d, b := credDaemon()
	p8, _ := x509.MarshalPKCS8PrivateKey(other)
	if _, err := b.LoadKey("any", p8); err != nil {
		t.Fatal(err)
	}
	conn, blobs := parse(t, tree(""))
	if err := d.viciConnCreds(conn, blobs); err == nil || !strings.Contains(err.Error(), `local certs[0]: no private key for "CN=gw-a.example" loaded over VICI`) {
		t.Errorf("without its key: %v", err)
	}
	p8, _ = x509.MarshalPKCS8PrivateKey(gw.Key)
	if _, err := b.LoadKey("ecdsa", p8); err != nil {
		t.Fatal(err)
	}
	conn, blobs = parse(t, tree(""))
	if err := d.viciConnCreds(conn, blobs); err == nil || !strings.Contains(err.Error(), "remote: no trust anchor") {
		t.Errorf("without a CA: %v", err)
	}
	d.overlay.creds.cas = append(d.overlay.creds.cas, ca.Cert) // as load-cert x509ca does
	conn, blobs = parse(t, tree(""))
	if err := d.viciConnCreds(conn, blobs); err != nil {
		t.Fatal(err)
	}
	if len(conn.Local.Credentials) != 1 || conn.Local.Credentials[0].Root == nil || conn.Local.Identity.Text != "CN=gw-a.example" || conn.Remote.Policy == nil {
		t.Errorf("credentials %+v identity %s policy %+v", conn.Local.Credentials, conn.Local.Identity, conn.Remote.Policy)
	}
	c := tree("")
	c.Sub("local").Elements[0].Value = "rsa"
	conn, blobs = parse(t, c)
	if err := d.viciConnCreds(conn, blobs); err == nil || !strings.Contains(err.Error(), "local auth rsa needs an RSA key, certs[0]'s is an ECDSA P-256 private key") {
		t.Errorf("auth rsa with an ECDSA key: %v", err)
	}
	conn, blobs = parse(t, tree("gw-x.example"))
	if err := d.viciConnCreds(conn, blobs); err == nil || !strings.Contains(err.Error(), "local id: gw-x.example is not in certs[0]") {
		t.Errorf("id not in the certificate: %v", err)
	}
	conn, blobs = parse(t, tree("", "\x30\x03\x02\x01\x00"))
	if err := d.viciConnCreds(conn, blobs); err == nil || !strings.Contains(err.Error(), "local certs[0]: malformed certificate") {
		t.Errorf("malformed cert: %v", err)
	}
}
