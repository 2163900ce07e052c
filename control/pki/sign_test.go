package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// rfcHex reads a hex dump as RFC 7427 Appendix A prints it
// ("0000: 300d 0609 ..."), offsets and spaces ignored.
func rfcHex(t testing.TB, dump string) []byte {
	t.Helper()
	var h strings.Builder
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		if _, rest, ok := strings.Cut(line, ":"); ok {
			line = rest
		}
		h.WriteString(strings.ReplaceAll(line, " ", ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known answers: RFC 7427 Appendix A (A.1.2-A.1.4, A.3.2-A.3.4, A.4.3) and
// RFC 8420 section 2 (id-Ed25519, no parameters). The PSS SHA-384 and
// SHA-512 forms are A.4.3 with the hash OID's last arc and the salt length
// changed; they are cross-checked below against an encoding/asn1 build of
// RSASSA-PSS-params.
func TestAlgorithmIdentifierKnownAnswers(t *testing.T) {
	cases := []struct {
		s    pki.Scheme
		dump string
	}{
		{pki.RSAPKCS1SHA256, "0000: 300d 0609 2a86 4886 f70d 0101 0b05 00"},
		{pki.RSAPKCS1SHA384, "0000: 300d 0609 2a86 4886 f70d 0101 0c05 00"},
		{pki.RSAPKCS1SHA512, "0000: 300d 0609 2a86 4886 f70d 0101 0d05 00"},
		{pki.ECDSASHA256, "0000: 300a 0608 2a86 48ce 3d04 0302"},
		{pki.ECDSASHA384, "0000: 300a 0608 2a86 48ce 3d04 0303"},
		{pki.ECDSASHA512, "0000: 300a 0608 2a86 48ce 3d04 0304"},
		{pki.RSAPSSSHA256, `0000: 3041 0609 2a86 4886 f70d 0101 0a30 34a0
			0010: 0f30 0d06 0960 8648 0165 0304 0201 0500
			0020: a11c 301a 0609 2a86 4886 f70d 0101 0830
			0030: 0d06 0960 8648 0165 0304 0201 0500 a203
			0040: 0201 20`},
		{pki.Ed25519, "0000: 3005 0603 2b65 70"},
	}
	for _, c := range cases {
		want := rfcHex(t, c.dump)
		if got := c.s.AlgorithmIdentifier(); !bytes.Equal(got, want) {
			t.Errorf("%v: AlgorithmIdentifier\n got %x\nwant %x", c.s, got, want)
		}
	}
	if pki.RSAPKCS1SHA1.AlgorithmIdentifier() != nil || pki.ECDSA256.AlgorithmIdentifier() != nil {
		t.Error("classic methods have no AlgorithmIdentifier")
	}

	// RSASSA-PSS-params built by encoding/asn1, as RFC 4055 defines them.
	type algID struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	null := asn1.RawValue{Tag: asn1.TagNull, FullBytes: []byte{5, 0}}
	for _, c := range []struct {
		s    pki.Scheme
		hash asn1.ObjectIdentifier
		salt int
	}{
		{pki.RSAPSSSHA256, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, 32},
		{pki.RSAPSSSHA384, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, 48},
		{pki.RSAPSSSHA512, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, 64},
	} {
		hashAlg := algID{c.hash, null}
		mgfParams, _ := asn1.Marshal(hashAlg)
		params, err := asn1.Marshal(struct {
			Hash algID `asn1:"explicit,tag:0"`
			MGF  algID `asn1:"explicit,tag:1"`
			Salt int   `asn1:"explicit,tag:2"`
		}{hashAlg, algID{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}, asn1.RawValue{FullBytes: mgfParams}}, c.salt})
		if err != nil {
			t.Fatal(err)
		}
		want, err := asn1.Marshal(algID{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}, asn1.RawValue{FullBytes: params}})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.s.AlgorithmIdentifier(); !bytes.Equal(got, want) {
			t.Errorf("%v:\n got %x\nwant %x", c.s, got, want)
		}
	}
}

type keyCase struct {
	name    string
	key     crypto.Signer
	schemes []pki.Scheme
}

func keyCases(t testing.TB) []keyCase {
	gen := func(kt labca.KeyType) crypto.Signer {
		k, err := labca.GenerateKey(kt)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaSchemes := []pki.Scheme{pki.RSAPKCS1SHA1, pki.RSAPKCS1SHA256, pki.RSAPKCS1SHA384, pki.RSAPKCS1SHA512, pki.RSAPSSSHA256, pki.RSAPSSSHA384, pki.RSAPSSSHA512}
	ecSchemes := []pki.Scheme{pki.ECDSASHA256, pki.ECDSASHA384, pki.ECDSASHA512}
	return []keyCase{
		{"rsa2048", gen(labca.RSA2048), rsaSchemes},
		{"rsa3072", gen(labca.RSA3072), rsaSchemes},
		{"ecdsa-p256", gen(labca.ECDSAP256), append([]pki.Scheme{pki.ECDSA256}, ecSchemes...)},
		{"ecdsa-p384", gen(labca.ECDSAP384), append([]pki.Scheme{pki.ECDSA384}, ecSchemes...)},
		{"ecdsa-p521", p521, append([]pki.Scheme{pki.ECDSA521}, ecSchemes...)},
		{"ed25519", gen(labca.Ed25519), []pki.Scheme{pki.Ed25519}},
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	octets := []byte("InitiatorSignedOctets: RealMessage1 | NonceRData | prf(SK_pi, IDi')")
	for _, kc := range keyCases(t) {
		for _, s := range kc.schemes {
			t.Run(kc.name+"/"+s.String(), func(t *testing.T) {
				method, data, err := pki.Sign(kc.key, octets, s)
				if err != nil {
					t.Fatal(err)
				}
				if method != s.Method() {
					t.Fatalf("method %d, want %d", method, s.Method())
				}
				pub := kc.key.Public()
				if err := pki.VerifyKey(pub, method, data, octets, nil); err != nil {
					t.Fatal(err)
				}
				got, sig, err := pki.ParseAuth(method, data)
				if err != nil || got != s || len(sig) == 0 {
					t.Fatalf("ParseAuth: %v %v", got, err)
				}
				if method == pki.AuthDigitalSignature && !bytes.HasPrefix(data, append([]byte{byte(len(s.AlgorithmIdentifier()))}, s.AlgorithmIdentifier()...)) {
					t.Fatalf("AUTH data does not start with the length-prefixed AlgorithmIdentifier")
				}
				// Tampered octets and signatures fail.
				bad := bytes.Clone(octets)
				bad[0] ^= 1
				wantReason(t, pki.VerifyKey(pub, method, data, bad, nil), pki.ReasonBadSignature)
				tampered := bytes.Clone(data)
				tampered[len(tampered)-1] ^= 0x40
				wantReason(t, pki.VerifyKey(pub, method, tampered, octets, nil), pki.ReasonBadSignature)
				// A scheme outside the allowed set is refused.
				other := pki.Ed25519
				if s == pki.Ed25519 {
					other = pki.ECDSASHA256
				}
				wantReason(t, pki.VerifyKey(pub, method, data, octets, []pki.Scheme{other}), pki.ReasonSchemeNotAllowed)
				if err := pki.VerifyKey(pub, method, data, octets, []pki.Scheme{other, s}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestSignRefusesMismatch(t *testing.T) {
	ec, _ := labca.GenerateKey(labca.ECDSAP256)
	if _, _, err := pki.Sign(ec, []byte("x"), pki.RSAPSSSHA256); pki.ReasonOf(err) != pki.ReasonUnsupportedScheme {
		t.Fatalf("ECDSA key with an RSA scheme: %v", err)
	}
	if _, _, err := pki.Sign(ec, []byte("x"), pki.ECDSA384); pki.ReasonOf(err) != pki.ReasonUnsupportedScheme {
		t.Fatalf("P-256 key with method 10: %v", err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.Sign(weak, []byte("x"), pki.RSAPKCS1SHA256); pki.ReasonOf(err) != pki.ReasonWeakKey {
		t.Fatalf("1024 bit key: %v", err)
	}
	// Verifying: a signature under a scheme that does not fit the key.
	_, data, err := pki.Sign(ec, []byte("x"), pki.ECDSASHA256)
	if err != nil {
		t.Fatal(err)
	}
	rk, _ := labca.GenerateKey(labca.RSA2048)
	wantReason(t, pki.VerifyKey(rk.Public(), pki.AuthDigitalSignature, data, []byte("x"), nil), pki.ReasonUnsupportedScheme)
	ec384, _ := labca.GenerateKey(labca.ECDSAP384)
	_, data, _ = pki.Sign(ec, []byte("x"), pki.ECDSA256)
	wantReason(t, pki.VerifyKey(ec384.Public(), pki.AuthECDSA256, data, []byte("x"), nil), pki.ReasonUnsupportedScheme)
	// A 1024 bit peer key.
	wsig, _ := rsa.SignPKCS1v15(rand.Reader, weak, crypto.SHA1, sha1Sum([]byte("x")))
	wantReason(t, pki.VerifyKey(&weak.PublicKey, pki.AuthRSA, wsig, []byte("x"), nil), pki.ReasonWeakKey)
}

func sha1Sum(b []byte) []byte {
	h := crypto.SHA1.New()
	h.Write(b)
	return h.Sum(nil)
}

func TestParseAuthMalformed(t *testing.T) {
	pss := pki.RSAPSSSHA256.AlgorithmIdentifier()
	withPrefix := func(ai []byte, sig ...byte) []byte {
		return append(append([]byte{byte(len(ai))}, ai...), sig...)
	}
	hexb := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	cases := []struct {
		name   string
		method uint8
		data   []byte
		want   pki.Reason
	}{
		{"psk method", pki.AuthPSK, []byte{1, 2, 3}, pki.ReasonUnsupportedScheme},
		{"unknown method", 13, []byte{1, 2, 3}, pki.ReasonUnsupportedScheme},
		{"empty", pki.AuthDigitalSignature, nil, pki.ReasonMalformed},
		{"zero length", pki.AuthDigitalSignature, []byte{0, 1, 2}, pki.ReasonMalformed},
		{"length past end", pki.AuthDigitalSignature, []byte{20, 0x30, 0}, pki.ReasonMalformed},
		{"no signature", pki.AuthDigitalSignature, withPrefix(pss), pki.ReasonMalformed},
		{"not DER", pki.AuthDigitalSignature, withPrefix([]byte{0x31, 0x02, 0, 0}, 1), pki.ReasonMalformed},
		{"trailing in AlgorithmIdentifier", pki.AuthDigitalSignature, withPrefix(append(pki.ECDSASHA256.AlgorithmIdentifier(), 0), 1), pki.ReasonMalformed},
		{"sha1WithRSAEncryption", pki.AuthDigitalSignature, withPrefix(hexb("300d06092a864886f70d0101050500"), 1), pki.ReasonUnsupportedScheme},
		{"ecdsa-with-SHA1", pki.AuthDigitalSignature, withPrefix(hexb("300906072a8648ce3d0401"), 1), pki.ReasonUnsupportedScheme},
		{"PSS, empty parameters (SHA-1)", pki.AuthDigitalSignature, withPrefix(hexb("300d06092a864886f70d01010a3000"), 1), pki.ReasonUnsupportedScheme},
		{"PSS, no parameters", pki.AuthDigitalSignature, withPrefix(hexb("300b06092a864886f70d01010a"), 1), pki.ReasonUnsupportedScheme},
		{"ECDSA with odd parameters", pki.AuthDigitalSignature, withPrefix(hexb("300d06082a8648ce3d0403020101ff"), 1), pki.ReasonUnsupportedScheme},
	}
	// PSS with MGF1-SHA-384 under SHA-256, and with trailer 2.
	mgfMismatch := bytes.Clone(pss)
	mgfMismatch[0x3b] = 0x02 // the MGF1 hash OID's last arc
	cases = append(cases, struct {
		name   string
		method uint8
		data   []byte
		want   pki.Reason
	}{"PSS MGF1 hash differs", pki.AuthDigitalSignature, withPrefix(mgfMismatch, 1), pki.ReasonUnsupportedScheme})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := pki.ParseAuth(c.method, c.data)
			wantReason(t, err, c.want)
		})
	}
}

func TestPSSDeclaredSaltLength(t *testing.T) {
	k, _ := labca.GenerateKey(labca.RSA2048)
	octets := []byte("octets")
	d := sha256Sum(octets)
	// A signer that declares salt 20 under SHA-256 is verified with 20.
	sig, err := rsa.SignPSS(rand.Reader, k.(*rsa.PrivateKey), crypto.SHA256, d, &rsa.PSSOptions{SaltLength: 20})
	if err != nil {
		t.Fatal(err)
	}
	ai := pki.RSAPSSSHA256.AlgorithmIdentifier()
	ai[len(ai)-1] = 20
	data := append(append([]byte{byte(len(ai))}, ai...), sig...)
	if err := pki.VerifyKey(k.Public(), pki.AuthDigitalSignature, data, octets, nil); err != nil {
		t.Fatal(err)
	}
	// Declaring 32 for a signature salted with 20 fails.
	ai[len(ai)-1] = 32
	data = append(append([]byte{byte(len(ai))}, ai...), sig...)
	wantReason(t, pki.VerifyKey(k.Public(), pki.AuthDigitalSignature, data, octets, nil), pki.ReasonBadSignature)
}

func sha256Sum(b []byte) []byte {
	h := crypto.SHA256.New()
	h.Write(b)
	return h.Sum(nil)
}

func TestChooseScheme(t *testing.T) {
	gen := func(kt labca.KeyType) crypto.PublicKey {
		k, err := labca.GenerateKey(kt)
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	rsa2048, rsa4096 := gen(labca.RSA2048), gen(labca.RSA4096)
	p256, p384, ed := gen(labca.ECDSAP256), gen(labca.ECDSAP384), gen(labca.Ed25519)
	p521k, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	all := []uint16{pki.HashSHA256, pki.HashSHA384, pki.HashSHA512, pki.HashIdentity}
	pss := pki.SignOptions{RSAPSS: true}
	cases := []struct {
		name    string
		pub     crypto.PublicKey
		rfc7427 bool
		peer    []uint16
		opt     pki.SignOptions
		want    pki.Scheme
	}{
		{"rsa classic", rsa2048, false, nil, pki.SignOptions{}, pki.RSAPKCS1SHA1},
		{"rsa classic ignores pss", rsa2048, false, nil, pss, pki.RSAPKCS1SHA1},
		{"rsa2048 pkcs1", rsa2048, true, all, pki.SignOptions{}, pki.RSAPKCS1SHA256},
		{"rsa2048 pss", rsa2048, true, all, pss, pki.RSAPSSSHA256},
		{"rsa2048 pss peer sha384+", rsa2048, true, []uint16{pki.HashSHA384, pki.HashSHA512}, pss, pki.RSAPSSSHA384},
		{"rsa2048 peer sha512 only", rsa2048, true, []uint16{pki.HashSHA512}, pki.SignOptions{}, pki.RSAPKCS1SHA512},
		{"rsa2048 peer order ignored", rsa2048, true, []uint16{pki.HashSHA512, pki.HashSHA256}, pki.SignOptions{}, pki.RSAPKCS1SHA256},
		{"rsa4096 starts at sha384", rsa4096, true, all, pki.SignOptions{}, pki.RSAPKCS1SHA384},
		{"rsa4096 pss starts at sha384", rsa4096, true, all, pss, pki.RSAPSSSHA384},
		{"rsa4096 falls back to sha256", rsa4096, true, []uint16{pki.HashSHA256}, pss, pki.RSAPKCS1SHA256},
		{"rsa peer sha1 only", rsa2048, true, []uint16{pki.HashSHA1}, pki.SignOptions{}, pki.SchemeNone},
		{"p256 classic", p256, false, nil, pki.SignOptions{}, pki.ECDSA256},
		{"p384 classic", p384, false, nil, pki.SignOptions{}, pki.ECDSA384},
		{"p521 classic", p521k.Public(), false, nil, pki.SignOptions{}, pki.ECDSA521},
		{"p256", p256, true, all, pki.SignOptions{}, pki.ECDSASHA256},
		{"p256 peer sha512", p256, true, []uint16{pki.HashSHA512}, pki.SignOptions{}, pki.ECDSASHA512},
		{"p384", p384, true, all, pki.SignOptions{}, pki.ECDSASHA384},
		{"p384 peer sha256 only", p384, true, []uint16{pki.HashSHA256}, pki.SignOptions{}, pki.SchemeNone},
		{"p521", p521k.Public(), true, all, pki.SignOptions{}, pki.ECDSASHA512},
		{"ed25519", ed, true, all, pki.SignOptions{}, pki.Ed25519},
		{"ed25519 without identity", ed, true, []uint16{pki.HashSHA256, pki.HashSHA512}, pki.SignOptions{}, pki.SchemeNone},
		{"ed25519 classic", ed, false, nil, pki.SignOptions{}, pki.SchemeNone},
		{"configured", rsa2048, true, all, pki.SignOptions{Schemes: []pki.Scheme{pki.ECDSASHA256, pki.RSAPSSSHA512, pki.RSAPKCS1SHA256}}, pki.RSAPSSSHA512},
		{"configured, peer lacks", rsa2048, true, []uint16{pki.HashSHA256}, pki.SignOptions{Schemes: []pki.Scheme{pki.RSAPSSSHA512}}, pki.SchemeNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := pki.ChooseScheme(c.pub, c.rfc7427, c.peer, c.opt)
			if got != c.want {
				t.Fatalf("got %v (%v), want %v", got, err, c.want)
			}
			if (err != nil) != (c.want == pki.SchemeNone) {
				t.Fatalf("error %v with scheme %v", err, got)
			}
		})
	}
}

func TestHashAlgorithmsNotify(t *testing.T) {
	b := pki.HashAlgorithmsNotify()
	if !bytes.Equal(b, []byte{0, 2, 0, 3, 0, 4, 0, 5}) {
		t.Fatalf("notify data %x", b)
	}
	got, err := pki.ParseHashAlgorithms(b)
	if err != nil || len(got) != 4 || got[3] != pki.HashIdentity {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0}, {0, 2, 0}, make([]byte, 2*pki.MaxHashAlgorithms+2)} {
		if _, err := pki.ParseHashAlgorithms(bad); pki.ReasonOf(err) != pki.ReasonMalformed {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

func TestVerifyWithCertificate(t *testing.T) {
	l := newLab(t, labca.ECDSAP384)
	octets := []byte("ResponderSignedOctets")
	s, err := pki.ChooseScheme(l.leaf.Key.Public(), true, pki.AnnouncedHashes, pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, data, err := pki.Sign(l.leaf.Key, octets, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.Verify(l.leaf.Cert, m, data, octets, nil); err != nil {
		t.Fatal(err)
	}
	wantReason(t, pki.Verify(l.im.Cert, m, data, octets, nil), pki.ReasonBadSignature)
	wantReason(t, pki.Verify((*x509.Certificate)(nil), m, data, octets, nil), pki.ReasonMalformed)
}
