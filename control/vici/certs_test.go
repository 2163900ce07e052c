package vici_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/spugate/spugate/control/vici"
)

// testCerts are a CA and a gateway certificate it issued.
func testCerts(t testing.TB) []vici.Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	gw := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "gw-a.example"}, DNSNames: []string{"gw-a.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	gwDER, err := x509.CreateCertificate(rand.Reader, gw, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return []vici.Cert{{DER: gwDER, Subject: "CN=gw-a.example", SANs: []string{"gw-a.example"}, HasKey: true}, {DER: caDER, Subject: "CN=lab CA", CA: true}}
}

func TestGoviciListCerts(t *testing.T) {
	f := newFake(0)
	f.certs = testCerts(t)
	_, path := serve(t, f)
	s := session(t, path)
	all := stream(t, s, "list-certs", "list-cert", nil)
	if len(all) != 2 {
		t.Fatalf("list-certs: %d events", len(all))
	}
	gw := all[0]
	if gw.Get("type") != "X509" || gw.Get("flag") != "NONE" || gw.Get("has_privkey") != "yes" {
		t.Errorf("gateway's: %s", gw)
	}
	c, err := x509.ParseCertificate([]byte(gw.Get("data").(string)))
	if err != nil || c.Subject.CommonName != "gw-a.example" {
		t.Errorf("data: %v %v", c, err)
	}
	if ca := all[1]; ca.Get("flag") != "CA" || ca.Get("has_privkey") != nil {
		t.Errorf("CA's: %s", ca)
	}
	for _, x := range []struct {
		in   map[string]any
		want int
	}{
		{map[string]any{"flag": "ca"}, 1}, {map[string]any{"flag": "none"}, 1}, {map[string]any{"type": "x509_crl"}, 0},
		{map[string]any{"subject": "gw-a.example"}, 1}, {map[string]any{"subject": "CN=lab CA"}, 1}, {map[string]any{"subject": "nobody"}, 0},
	} {
		if n := len(stream(t, s, "list-certs", "list-cert", x.in)); n != x.want {
			t.Errorf("list-certs %v: %d, want %d", x.in, n, x.want)
		}
	}
	if e := fail(t, s, "list-certs", map[string]any{"flag": "bogus"}); e == "" {
		t.Error("flag bogus: no error")
	}
}
