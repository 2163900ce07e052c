package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

func writeKey(t *testing.T, dir, name, typ string, der []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// secretFragments returns pieces of the key's encodings that must never
// appear in an error or a printout.
func secretFragments(t *testing.T, key crypto.Signer) []string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	b64 := base64.StdEncoding.EncodeToString(der)
	hx := hex.EncodeToString(der)
	for i := 16; i+12 <= len(b64); i += 24 {
		out = append(out, b64[i:i+12])
	}
	for i := 16; i+16 <= len(hx); i += 32 {
		out = append(out, hx[i:i+16])
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		out = append(out, k.D.String()[:20], k.Primes[0].String()[:20], k.D.Text(16)[:16])
	case *ecdsa.PrivateKey:
		b, _ := k.Bytes()
		out = append(out, hex.EncodeToString(b)[:16])
	}
	return out
}

func checkNoSecret(t *testing.T, s string, frags []string) {
	t.Helper()
	for _, f := range frags {
		if strings.Contains(s, f) {
			t.Fatalf("key material %q in %q", f, s)
		}
	}
}

func TestLoadPrivateKeyFormats(t *testing.T) {
	dir := t.TempDir()
	rk, _ := labca.GenerateKey(labca.RSA2048)
	ek, _ := labca.GenerateKey(labca.ECDSAP384)
	ed, _ := labca.GenerateKey(labca.Ed25519)
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ek.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, typ string
		der       []byte
		pub       crypto.PublicKey
		desc      string
	}{
		{"rsa-pkcs8", "PRIVATE KEY", pkcs8(rk), rk.Public(), "RSA-2048 private key"},
		{"rsa-pkcs1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk.(*rsa.PrivateKey)), rk.Public(), "RSA-2048 private key"},
		{"ec-pkcs8", "PRIVATE KEY", pkcs8(ek), ek.Public(), "ECDSA P-384 private key"},
		{"ec-sec1", "EC PRIVATE KEY", sec1, ek.Public(), "ECDSA P-384 private key"},
		{"ed25519-pkcs8", "PRIVATE KEY", pkcs8(ed), ed.Public(), "Ed25519 private key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeKey(t, dir, c.name, c.typ, c.der, 0o600)
			k, err := pki.LoadPrivateKey(p)
			if err != nil {
				t.Fatal(err)
			}
			type eq interface{ Equal(crypto.PublicKey) bool }
			if !k.Public().(eq).Equal(c.pub) {
				t.Fatal("public key differs")
			}
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
				if got := fmt.Sprintf(verb, k); got != c.desc {
					t.Fatalf("%s prints %q", verb, got)
				}
			}
		})
	}
	// Read-only for the owner is fine too.
	p := writeKey(t, dir, "ro", "PRIVATE KEY", pkcs8(ek), 0o400)
	if _, err := pki.LoadPrivateKey(p); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPrivateKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	rk, _ := labca.GenerateKey(labca.RSA2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	frags := secretFragments(t, rk)

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		p := writeKey(t, dir, fmt.Sprintf("k%o", mode), "PRIVATE KEY", der, mode)
		_, err := pki.LoadPrivateKey(p)
		if err == nil {
			t.Fatalf("mode %04o accepted", mode)
		}
		want := fmt.Sprintf("mode %04o", mode)
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Fatalf("error %q does not name %q and the fix", err, want)
		}
		checkNoSecret(t, err.Error(), frags)
	}

	broken := append([]byte(nil), der...)
	for i := 40; i < len(broken); i += 7 {
		broken[i] ^= 0xff
	}
	cases := map[string][]byte{
		"garbage PKCS#8": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: broken}),
		"truncated":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der[:len(der)/2]}),
		"encrypted":      pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}),
		"legacy encrypted": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: der}),
		"no key":           []byte("just text " + base64.StdEncoding.EncodeToString(der)),
		"certificate only": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := pki.LoadPrivateKey(p)
			if err == nil {
				t.Fatal("accepted")
			}
			checkNoSecret(t, err.Error(), frags)
		})
	}

	// A 1024 bit key is refused.
	weak := writeKey(t, dir, "weak", "PRIVATE KEY", mustPKCS8(t, 1024), 0o600)
	if _, err := pki.LoadPrivateKey(weak); err == nil || !strings.Contains(err.Error(), "1024 bit") {
		t.Fatalf("weak key: %v", err)
	}
}

func mustPKCS8(t *testing.T, bits int) []byte {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return der
}

func TestLoadPrivateKeyOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	ek, _ := labca.GenerateKey(labca.ECDSAP256)
	der, _ := x509.MarshalPKCS8PrivateKey(ek)
	p := writeKey(t, dir, "other", "PRIVATE KEY", der, 0o600)
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Skipf("chown: %v", err)
	}
	if _, err := pki.LoadPrivateKey(p); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("foreign key file: %v", err)
	}
}

func TestLoadCredential(t *testing.T) {
	l := newLab(t, labca.RSA2048)
	certFile := filepath.Join(l.dir, "gw.pem")
	keyFile := filepath.Join(l.dir, "gw.key")
	if err := labca.WriteCertPEM(certFile, l.leaf.Cert); err != nil {
		t.Fatal(err)
	}
	if err := labca.WriteKeyPEM(keyFile, l.leaf.Key); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("WriteKeyPEM mode %v %v", st.Mode(), err)
	}
	s := l.store(t, pki.StoreConfig{IntermediateFiles: []string{l.imFile}})
	c, err := pki.LoadCredential(certFile, keyFile, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Intermediates) != 1 || !c.Intermediates[0].Equal(l.im.Cert) || c.Root == nil || !c.Root.Equal(l.root.Cert) {
		t.Fatalf("chain: %v root %v", c.Intermediates, c.Root)
	}
	// A bundle file with the intermediate, no store.
	if err := labca.WriteCertPEM(certFile, l.leaf.Cert, l.im.Cert); err != nil {
		t.Fatal(err)
	}
	c, err = pki.LoadCredential(certFile, keyFile, nil)
	if err != nil || len(c.Intermediates) != 1 || c.Root != nil {
		t.Fatalf("bundle: %v %+v", err, c)
	}
	// The key of another certificate.
	other, _ := labca.GenerateKey(labca.RSA2048)
	if err := labca.WriteKeyPEM(keyFile, other); err != nil {
		t.Fatal(err)
	}
	_, err = pki.LoadCredential(certFile, keyFile, s)
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched key: %v", err)
	}
	checkNoSecret(t, err.Error(), secretFragments(t, other))
}
