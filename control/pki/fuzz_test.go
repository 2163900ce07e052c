package pki_test

import (
	"crypto/x509"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// FuzzCertPayloads feeds arbitrary CERT payload data (encoding 4) to the
// chain verifier: no panic, and every refusal has a Reason.
func FuzzCertPayloads(f *testing.F) {
	l := newLab(f, labca.ECDSAP256)
	r := newLab(f, labca.RSA2048)
	s := l.store(f, pki.StoreConfig{})
	f.Add(l.leaf.Cert.Raw, l.im.Cert.Raw)
	f.Add(r.leaf.Cert.Raw, r.im.Cert.Raw)
	f.Add(l.leaf.Cert.Raw, []byte{})
	f.Add(l.leaf.Cert.Raw[:200], l.im.Cert.Raw[10:])
	f.Add([]byte{0x30, 0x82, 0xff, 0xff}, []byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, leaf, im []byte) {
		p := []pki.CertPayload{{Encoding: pki.CertX509Signature, Data: leaf}}
		if len(im) > 0 {
			p = append(p, pki.CertPayload{Encoding: pki.CertX509Signature, Data: im})
		}
		pc, err := s.VerifyPeer(p, fqdn(leafFQDN), nil)
		if err != nil && pki.ReasonOf(err) == pki.ReasonNone {
			t.Fatalf("error without a reason: %v", err)
		}
		if err == nil && (pc == nil || pc.Leaf == nil) {
			t.Fatal("success without a chain")
		}
		if c, err := x509.ParseCertificate(leaf); err == nil {
			// The identity checks on whatever parsed.
			_ = pki.MatchCert(c, pki.ID{Type: pki.IDDN, Data: im})
			_ = pki.CheckUsage(c)
			_ = pki.FormatDN(c.RawSubject)
		}
	})
}

// FuzzAuthData feeds arbitrary AUTH payloads (method and data, method 14's
// AlgorithmIdentifier prefix above all) to the verifier with RSA, ECDSA and
// Ed25519 keys: no panic, never a success on fuzzed data that is not a
// seed's, and every refusal has a Reason.
func FuzzAuthData(f *testing.F) {
	octets := []byte("InitiatorSignedOctets")
	var keys []*x509.Certificate
	for _, kt := range []labca.KeyType{labca.RSA2048, labca.ECDSAP256, labca.Ed25519} {
		l := newLab(f, kt)
		keys = append(keys, l.leaf.Cert)
		for _, s := range []pki.Scheme{pki.RSAPKCS1SHA1, pki.RSAPKCS1SHA256, pki.RSAPSSSHA256, pki.RSAPSSSHA512, pki.ECDSA256, pki.ECDSASHA256, pki.ECDSASHA512, pki.Ed25519} {
			if m, data, err := pki.Sign(l.leaf.Key, octets, s); err == nil {
				f.Add(m, data)
			}
		}
	}
	f.Add(uint8(14), []byte{0})
	f.Add(uint8(14), []byte{0xff, 0x30})
	f.Add(uint8(14), append([]byte{13}, pki.RSAPSSSHA256.AlgorithmIdentifier()[:13]...))
	f.Fuzz(func(t *testing.T, method uint8, data []byte) {
		s, sig, err := pki.ParseAuth(method, data)
		if err != nil {
			if pki.ReasonOf(err) == pki.ReasonNone {
				t.Fatalf("error without a reason: %v", err)
			}
		} else if s == pki.SchemeNone || s.Method() != method || len(sig) > len(data) {
			t.Fatalf("ParseAuth: %v %d", s, len(sig))
		}
		for _, c := range keys {
			if err := pki.Verify(c, method, data, octets, nil); err != nil && pki.ReasonOf(err) == pki.ReasonNone {
				t.Fatalf("error without a reason: %v", err)
			}
		}
	})
}

// FuzzPatterns matches arbitrary configured identities against arbitrary
// peer identities and certificates.
func FuzzPatterns(f *testing.F) {
	l := newLab(f, labca.ECDSAP256)
	f.Add(uint8(pki.IDDN), l.leaf.Cert.RawSubject, uint8(pki.IDDN), l.leaf.Cert.RawSubject)
	f.Add(uint8(pki.IDFQDN), []byte("*.site.example"), uint8(pki.IDFQDN), []byte(leafFQDN))
	f.Add(uint8(pki.IDIPv4), []byte{198, 18, 0, 1}, uint8(pki.IDIPv6), []byte{1, 2})
	f.Fuzz(func(t *testing.T, pt uint8, pd []byte, it uint8, id []byte) {
		peer := pki.ID{Type: it, Data: id}
		_ = pki.MatchPattern(pki.ID{Type: pt, Data: pd}, peer)
		if err := pki.MatchCert(l.leaf.Cert, peer); err != nil && pki.ReasonOf(err) != pki.ReasonIDMismatch {
			t.Fatalf("MatchCert: %v", err)
		}
		_ = peer.String()
	})
}
