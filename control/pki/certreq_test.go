package pki_test

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

func credential(t *testing.T, l *lab) *pki.Credential {
	t.Helper()
	key, err := pki.NewPrivateKey(l.leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.NewCredential(l.leaf.Cert, []*x509.Certificate{l.im.Cert, l.root.Cert}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Intermediates) != 1 || c.Root == nil {
		t.Fatalf("chain not completed: %+v", c)
	}
	return c
}

func TestSelectCredential(t *testing.T) {
	a, b := newLab(t, labca.ECDSAP256), newLab(t, labca.RSA2048)
	ca, cb := credential(t, a), credential(t, b)
	creds := []*pki.Credential{ca, cb}
	// labca's subjectKeyIdentifier is the SHA-1 of the subjectPublicKey,
	// the hash some peers send in CERTREQ instead of the SPKI's.
	spk := func(c *x509.Certificate) (h [20]byte) {
		copy(h[:], c.SubjectKeyId)
		return h
	}
	cases := []struct {
		name  string
		req   [][20]byte
		want  *pki.Credential
		certs []*x509.Certificate
	}{
		{"no request", nil, ca, []*x509.Certificate{a.leaf.Cert, a.im.Cert}},
		{"unknown CA", [][20]byte{{1, 2, 3}}, ca, []*x509.Certificate{a.leaf.Cert, a.im.Cert}},
		{"b's root", [][20]byte{{9}, pki.KeyHash(b.root.Cert)}, cb, []*x509.Certificate{b.leaf.Cert, b.im.Cert}},
		{"b's root by subjectPublicKey hash", [][20]byte{spk(b.root.Cert)}, cb, []*x509.Certificate{b.leaf.Cert, b.im.Cert}},
		{"b's intermediate", [][20]byte{pki.KeyHash(b.im.Cert)}, cb, []*x509.Certificate{b.leaf.Cert}},
		{"a's root", [][20]byte{pki.KeyHash(a.root.Cert), pki.KeyHash(b.root.Cert)}, ca, []*x509.Certificate{a.leaf.Cert, a.im.Cert}},
		{"end entity is no CA", [][20]byte{pki.KeyHash(b.leaf.Cert)}, ca, []*x509.Certificate{a.leaf.Cert, a.im.Cert}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, certs := pki.SelectCredential(creds, c.req)
			if got != c.want {
				t.Fatalf("picked %v", pki.FormatDN(got.Leaf.RawSubject))
			}
			if len(certs) != len(c.certs) {
				t.Fatalf("%d certificates, want %d", len(certs), len(c.certs))
			}
			for i := range certs {
				if !bytes.Equal(certs[i], c.certs[i].Raw) {
					t.Fatalf("certificate %d differs", i)
				}
			}
		})
	}
	if c, certs := pki.SelectCredential(nil, nil); c != nil || certs != nil {
		t.Fatal("no credentials")
	}
}

func TestCertReqData(t *testing.T) {
	a, b := newLab(t, labca.ECDSAP256), newLab(t, labca.Ed25519)
	s, err := pki.NewStore(pki.StoreConfig{CAFiles: []string{a.caFile, b.caFile}, IntermediateFiles: []string{a.imFile}})
	if err != nil {
		t.Fatal(err)
	}
	ha, hb, him := pki.KeyHash(a.root.Cert), pki.KeyHash(b.root.Cert), pki.KeyHash(a.im.Cert)
	want := append(append(ha[:], hb[:]...), him[:]...)
	if got := s.CertReq(nil); !bytes.Equal(got, want) {
		t.Fatalf("CERTREQ of the store %x, want %x", got, want)
	}
	if got := s.CertReq(&pki.Policy{CACerts: []*x509.Certificate{b.root.Cert, b.root.Cert}}); !bytes.Equal(got, hb[:]) {
		t.Fatalf("CERTREQ for cacerts %x", got)
	}
	hs, err := pki.ParseCertReq(want)
	if err != nil || len(hs) != 3 || hs[1] != hb {
		t.Fatalf("ParseCertReq: %v %v", hs, err)
	}
	if hs, err := pki.ParseCertReq(nil); err != nil || len(hs) != 0 {
		t.Fatalf("empty CERTREQ: %v %v", hs, err)
	}
	for _, bad := range [][]byte{make([]byte, 19), make([]byte, 41), make([]byte, 20*(pki.MaxCertReqHashes+1))} {
		if _, err := pki.ParseCertReq(bad); pki.ReasonOf(err) != pki.ReasonMalformed {
			t.Errorf("%d bytes: %v", len(bad), err)
		}
	}
}
