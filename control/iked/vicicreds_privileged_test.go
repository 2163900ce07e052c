package iked_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedVICISwanctlCerts: Debian's swanctl --load-all from a
// swanctl.conf with certificate authentication (x509, x509ca and
// private folders beside it, a lab CA's) loads the certificates, the
// key and the connection into gw-a's iked over VICI; swanctl brings the
// tunnel up against gw-b (whose certificates come from its YAML's
// folders), a ping passes, and --list-certs shows what was loaded.
func TestPrivilegedVICISwanctlCerts(t *testing.T) {
	if _, err := os.Stat(swanctlPath); err != nil {
		t.Skipf("swanctl not installed (apt-get install strongswan-swanctl): %v", err)
	}
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	tmp := t.TempDir()
	caDir := filepath.Join(tmp, "ca")
	if _, err := labca.MakeCA(caDir, labca.CAOptions{}); err != nil {
		t.Fatal(err)
	}
	issue := func(id string) (cert, key []byte) {
		cp, kp, err := labca.IssueGateway(caDir, labca.IssueOptions{Identity: id})
		if err != nil {
			t.Fatal(err)
		}
		cert, err1 := os.ReadFile(cp)
		key, err2 := os.ReadFile(kp)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return cert, key
	}
	root, err := os.ReadFile(filepath.Join(caDir, labca.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, sub, name string, data []byte, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}

	// gw-b: certificates from its configuration's folders.
	bDir := filepath.Join(tmp, "gw-b")
	bCert, bKey := issue("gw-b.example")
	write(bDir, "x509", "gw-b.pem", bCert, 0o644)
	write(bDir, "private", "gw-b.key", bKey, 0o600)
	write(bDir, "x509ca", "root.pem", root, 0o644)
	ca, cb := tb.confs()
	cb.global = fmt.Sprintf("pki:\n  x509: %[1]s/x509\n  x509ca: %[1]s/x509ca\n  x509crl: %[1]s/x509crl\n  private: %[1]s/private\n", bDir)
	yb := strings.Replace(cb.yaml(), "    local:\n      auth: psk\n", "    local:\n      auth: pubkey\n      certs: gw-b.pem\n", 1)
	yb = strings.Replace(yb, "    remote:\n      auth: psk\n", "    remote:\n      auth: pubkey\n", 1)
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec) // its file's connection (PSK) stays down
	tb.b.start(t, yb, sec)
	sock := tb.a.iked.VICI
	must := func(args ...string) string {
		t.Helper()
		out, err := swanctl(t, sock, args...)
		if err != nil {
			t.Fatalf("swanctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// gw-a: a swanctl.conf and its folders, as on a charon gateway.
	sDir := filepath.Join(tmp, "swanctl")
	aCert, aKey := issue("gw-a.example")
	write(sDir, "x509", "gw-a.pem", aCert, 0o644)
	write(sDir, "private", "gw-a.key", aKey, 0o600)
	write(sDir, "x509ca", "root.pem", root, 0o644)
	for _, sub := range []string{"x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		os.Mkdir(filepath.Join(sDir, sub), 0o700)
	}
	conf := filepath.Join(sDir, "swanctl.conf")
	site := fmt.Sprintf(`connections {
  site {
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = pubkey
      certs = gw-a.pem
      id = gw-a.example
    }
    remote {
      auth = pubkey
      id = gw-b.example
    }
    children {
      lan {
        local_ts = %s
        remote_ts = %s
        esp_proposals = aes128gcm16
      }
    }
  }
}
authorities {
  lab {
    cacert = root.pem
  }
}
`, pl.GwAWan4, pl.GwBWan4, pl.LanA4, pl.LanB4)
	if err := os.WriteFile(conf, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	out := must("--load-all", "--file", conf)
	t.Logf("swanctl --load-all:\n%s", out)
	for _, want := range []string{"loaded certificate", "gw-a.pem", "root.pem", "loaded ", "gw-a.key", "loaded authority 'lab'", "loaded connection 'site'"} {
		if !strings.Contains(out, want) {
			t.Errorf("--load-all lacks %q", want)
		}
	}
	if strings.Contains(out, "failed") {
		t.Errorf("--load-all failed somewhere:\n%s", out)
	}
	certs := must("--list-certs")
	t.Logf("swanctl --list-certs:\n%s", certs)
	for _, want := range []string{"subject:  \"CN=gw-a.example\"", "has private key", "CN=spugate lab root CA"} {
		if !strings.Contains(certs, want) {
			t.Errorf("--list-certs lacks %q", want)
		}
	}
	auths := must("--list-authorities")
	t.Logf("swanctl --list-authorities:\n%s", auths)
	if !strings.Contains(auths, "lab:") || !strings.Contains(auths, "cacert: C=CH, O=spugate lab, CN=spugate lab root CA") {
		t.Errorf("--list-authorities:\n%s", auths)
	}
	if out := must("--initiate", "--ike", "site", "--child", "lan", "--timeout", "30"); !strings.Contains(out, "initiate completed successfully") {
		t.Errorf("--initiate --ike site:\n%s", out)
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	sas := must("--list-sas")
	t.Logf("swanctl --list-sas:\n%s", sas)
	if !strings.Contains(sas, "site: #") || !strings.Contains(sas, "ESTABLISHED") || !strings.Contains(sas, "lan: #") {
		t.Errorf("--list-sas of site:\n%s", sas)
	}
	must("--terminate", "--ike", "site")
	gone(t, tb.a, tb.b)

	// A CRL loaded over VICI (x509crl/) that revokes gw-b's certificate
	// serves the next verification: the tunnel no longer comes up.
	lab, err := labca.LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	bLeaf, err := pki.ParseCertificates(bCert)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := lab.CRL(bLeaf[:1], 1, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := labca.WriteCRLPEM(filepath.Join(sDir, "x509crl", "lab.crl"), crl); err != nil {
		t.Fatal(err)
	}
	if out := must("--load-creds", "--file", conf); !strings.Contains(out, "lab.crl") || strings.Contains(out, "failed") {
		t.Errorf("--load-creds with the CRL:\n%s", out)
	}
	if out, err := swanctl(t, sock, "--initiate", "--ike", "site", "--child", "lan", "--timeout", "20"); err == nil {
		t.Errorf("--initiate with gw-b revoked succeeded:\n%s", out)
	} else {
		t.Logf("--initiate with gw-b revoked: %v\n%s", err, out)
	}
	if log := tb.a.iked.Proc.Log(); !strings.Contains(log, "cert_revoked") {
		t.Errorf("gw-a's iked did not log cert_revoked")
	}
	gone(t, tb.a, tb.b)

	// --load-creds --clear drops what VICI loaded: the key is gone, so
	// loading the connection again without it is refused, naming why.
	if out := must("--load-creds", "--clear", "--file", conf); !strings.Contains(out, "gw-a.key") {
		t.Errorf("--load-creds --clear:\n%s", out)
	}
	os.Remove(filepath.Join(sDir, "private", "gw-a.key"))
	must("--load-creds", "--clear", "--file", conf)
	if out, err := swanctl(t, sock, "--load-conns", "--file", conf); err == nil || !strings.Contains(out, "no private key for") {
		t.Errorf("--load-conns without the key: %v\n%s", err, out)
	}
}
