package strongswan

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestPKI(t *testing.T) *PKI {
	t.Helper()
	if _, err := os.Stat(PKIPath); err != nil {
		t.Skipf("pki tool missing (Debian package strongswan-pki): %v", err)
	}
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parseCert(t *testing.T, c *Cert) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(c.CertPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: not a PEM certificate: %q", c.Name, c.CertPEM)
	}
	x, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	return x
}

// TestPKIKeyTypes makes a root, an intermediate and a gateway certificate
// for every key type and checks them with Go's x509 (an independent
// parser) and with pki --verify.
func TestPKIKeyTypes(t *testing.T) {
	p := newTestPKI(t)
	for _, kt := range []KeyType{ECDSA256, ECDSA384, RSA2048, RSA3072, RSA4096, Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			name := strings.ReplaceAll(string(kt), "-", "")
			ca, err := p.NewCA("ca-"+name, CertOptions{Key: kt})
			if err != nil {
				t.Fatal(err)
			}
			im, err := p.NewIntermediate("im-"+name, ca, CertOptions{Key: kt})
			if err != nil {
				t.Fatal(err)
			}
			gw, err := p.NewCert("gw-"+name, im, CertOptions{Key: kt,
				SANs:  []string{"198.18.0.2", "2001:db8::2", "gw-b.lab.example", "ipsec@gw-b.lab.example"},
				Flags: []string{"serverAuth", "ikeIntermediate"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Verify(gw, ca); err != nil {
				t.Fatal(err)
			}
			xca, xim, xgw := parseCert(t, ca), parseCert(t, im), parseCert(t, gw)
			if !xca.IsCA || !xim.IsCA || xgw.IsCA {
				t.Errorf("CA flags: root %v intermediate %v gateway %v", xca.IsCA, xim.IsCA, xgw.IsCA)
			}
			pool, inter := x509.NewCertPool(), x509.NewCertPool()
			pool.AddCert(xca)
			inter.AddCert(xim)
			if _, err := xgw.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("Go x509 verify: %v", err)
			}
			switch pub := xgw.PublicKey.(type) {
			case *ecdsa.PublicKey:
				want := map[KeyType]int{ECDSA256: 256, ECDSA384: 384}[kt]
				if pub.Curve.Params().BitSize != want {
					t.Errorf("curve %d bits, want %d", pub.Curve.Params().BitSize, want)
				}
			case *rsa.PublicKey:
				want := map[KeyType]int{RSA2048: 2048, RSA3072: 3072, RSA4096: 4096}[kt]
				if pub.N.BitLen() != want {
					t.Errorf("RSA %d bits, want %d", pub.N.BitLen(), want)
				}
			case ed25519.PublicKey:
				if kt != Ed25519 {
					t.Errorf("Ed25519 key for %s", kt)
				}
			default:
				t.Errorf("key %T", pub)
			}
			if !slices.ContainsFunc(xgw.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("198.18.0.2")) }) ||
				!slices.ContainsFunc(xgw.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("2001:db8::2")) }) {
				t.Errorf("IP SANs %v", xgw.IPAddresses)
			}
			if !slices.Equal(xgw.DNSNames, []string{"gw-b.lab.example"}) || !slices.Equal(xgw.EmailAddresses, []string{"ipsec@gw-b.lab.example"}) {
				t.Errorf("DNS SANs %v, email SANs %v", xgw.DNSNames, xgw.EmailAddresses)
			}
			if !slices.Contains(xgw.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
				t.Errorf("EKU %v: no serverAuth", xgw.ExtKeyUsage)
			}
			if !slices.ContainsFunc(xgw.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.String() == "1.3.6.1.5.5.8.2.2" }) {
				t.Errorf("EKU %v: no ikeIntermediate (1.3.6.1.5.5.8.2.2)", xgw.UnknownExtKeyUsage)
			}
			if xgw.SerialNumber.Text(16) != gw.Serial {
				t.Errorf("serial %s, want %s", xgw.SerialNumber.Text(16), gw.Serial)
			}
			if got := gw.Chain(); len(got) != 2 || got[0] != gw || got[1] != im || gw.Root() != ca {
				t.Errorf("chain of gw: %v", got)
			}
		})
	}
}

// TestPKIRSAPSS signs an RSA-3072 chain with RSASSA-PSS.
func TestPKIRSAPSS(t *testing.T) {
	p := newTestPKI(t)
	ca, err := p.NewCA("ca", CertOptions{Key: RSA3072, PSS: true})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := p.NewCert("gw", ca, CertOptions{Key: RSA3072, PSS: true, SANs: []string{"gw.lab.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(gw, ca); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Cert{ca, gw} {
		if alg := parseCert(t, c).SignatureAlgorithm; alg != x509.SHA256WithRSAPSS && alg != x509.SHA384WithRSAPSS && alg != x509.SHA512WithRSAPSS {
			t.Errorf("%s signed with %v, want RSA-PSS", c.Name, alg)
		}
	}
	if _, err := p.NewCert("bad", ca, CertOptions{Key: RSA2048, PSS: true}); err != nil {
		t.Errorf("PSS by an RSA issuer for an RSA key: %v", err)
	}
	eca, err := p.NewCA("eca", CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.NewCert("bad2", eca, CertOptions{PSS: true}); err == nil {
		t.Error("PSS by an ECDSA issuer accepted")
	}
}

// TestPKIValidity makes expired and not-yet-valid certificates.
func TestPKIValidity(t *testing.T) {
	p := newTestPKI(t)
	ca, err := p.NewCA("ca", CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	cases := []struct {
		name   string
		nb, na time.Time
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)},
		{"future", now.Add(24 * time.Hour), now.Add(48 * time.Hour)},
	}
	for _, tc := range cases {
		c, err := p.NewCert(tc.name, ca, CertOptions{NotBefore: tc.nb, NotAfter: tc.na})
		if err != nil {
			t.Fatal(err)
		}
		x := parseCert(t, c)
		if !x.NotBefore.Equal(tc.nb) || !x.NotAfter.Equal(tc.na) {
			t.Errorf("%s: validity %v..%v, want %v..%v", tc.name, x.NotBefore, x.NotAfter, tc.nb, tc.na)
		}
		if err := p.Verify(c, ca); err == nil {
			t.Errorf("%s: pki --verify accepted it", tc.name)
		}
	}
	c, err := p.NewCert("short", ca, CertOptions{Lifetime: 2 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if x := parseCert(t, c); x.NotAfter.Sub(x.NotBefore) != 48*time.Hour {
		t.Errorf("lifetime %v, want 48h", x.NotAfter.Sub(x.NotBefore))
	}
}

// TestPKICRL revokes one of two certificates.
func TestPKICRL(t *testing.T) {
	p := newTestPKI(t)
	ca, err := p.NewCA("ca", CertOptions{Key: Ed25519})
	if err != nil {
		t.Fatal(err)
	}
	good, err := p.NewCert("good", ca, CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := p.NewCert("bad", ca, CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := p.NewCRL("ca", ca, []*Cert{bad}, CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(crl.PEM)
	if blk == nil || blk.Type != "X509 CRL" {
		t.Fatalf("not a PEM CRL: %q", crl.PEM)
	}
	rl, err := x509.ParseRevocationList(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Text(16) != bad.Serial {
		t.Errorf("CRL entries %+v, want serial %s", rl.RevokedCertificateEntries, bad.Serial)
	}
	if err := rl.CheckSignatureFrom(parseCert(t, ca)); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if err := p.Verify(good, ca, crl); err != nil {
		t.Errorf("good certificate: %v", err)
	}
	if err := p.Verify(bad, ca, crl); err == nil {
		t.Error("revoked certificate verified")
	}
	other, err := p.NewCA("other", CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.NewCRL("x", other, []*Cert{bad}, CRLOptions{}); err == nil {
		t.Error("CRL by another CA accepted")
	}
}

func TestFilesAddIdentity(t *testing.T) {
	ca := &Cert{Name: "ca", CertPEM: []byte("ca")}
	im := &Cert{Name: "im", Issuer: ca, CertPEM: []byte("im")}
	gw := &Cert{Name: "gw", Issuer: im, CertPEM: []byte("gw"), KeyPEM: []byte("key")}
	var f Files
	if got := f.AddIdentity(gw); got != "gw.pem" {
		t.Errorf("AddIdentity = %q", got)
	}
	if string(f.X509["gw.pem"]) != "gw" || string(f.Private["gw.key"]) != "key" || string(f.X509CA["im.pem"]) != "im" || f.X509CA["ca.pem"] != nil {
		t.Errorf("files %+v", f)
	}
	if got := f.AddCA(ca); got != "ca.pem" || string(f.X509CA["ca.pem"]) != "ca" {
		t.Errorf("AddCA = %q, %+v", got, f)
	}
}
