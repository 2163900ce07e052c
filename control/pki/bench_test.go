package pki_test

import (
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// BenchmarkVerifyPeer measures a peer's chain check (leaf and intermediate
// received, anchor in the store, one CRL loaded): the per-handshake cost of
// certificate authentication before the AUTH signature.
func BenchmarkVerifyPeer(b *testing.B) {
	for _, kt := range []labca.KeyType{labca.ECDSAP256, labca.RSA2048, labca.Ed25519} {
		b.Run(string(kt), func(b *testing.B) {
			l := newLab(b, kt)
			s := l.store(b, pki.StoreConfig{})
			p := payloads(l.leaf.Cert, l.im.Cert)
			id := fqdn(leafFQDN)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.VerifyPeer(p, id, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuth measures signing and verifying AUTH octets per scheme.
func BenchmarkAuth(b *testing.B) {
	octets := make([]byte, 600) // about a real IKE_SA_INIT message plus nonce and prf
	for _, c := range []struct {
		kt labca.KeyType
		s  pki.Scheme
	}{
		{labca.RSA2048, pki.RSAPKCS1SHA256},
		{labca.RSA2048, pki.RSAPSSSHA256},
		{labca.ECDSAP256, pki.ECDSASHA256},
		{labca.ECDSAP384, pki.ECDSA384},
		{labca.Ed25519, pki.Ed25519},
	} {
		k, err := labca.GenerateKey(c.kt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("sign/"+c.s.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := pki.Sign(k, octets, c.s); err != nil {
					b.Fatal(err)
				}
			}
		})
		m, data, err := pki.Sign(k, octets, c.s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("verify/"+c.s.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := pki.VerifyKey(k.Public(), m, data, octets, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
