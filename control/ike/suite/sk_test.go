package suite

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

var ikeSuites = []Algorithms{
	{Protocol: ProtocolIKE, Encr: EncrAESGCM16, EncrKeyBits: 128, PRF: PRFHMACSHA256, Group: GroupCurve25519},
	{Protocol: ProtocolIKE, Encr: EncrAESGCM16, EncrKeyBits: 256, PRF: PRFHMACSHA384, Group: GroupECP384},
	{Protocol: ProtocolIKE, Encr: EncrChaCha20Poly1305, PRF: PRFHMACSHA256, Group: GroupCurve25519},
	{Protocol: ProtocolIKE, Encr: EncrAESCBC, EncrKeyBits: 128, Integ: IntegHMACSHA256128, PRF: PRFHMACSHA256, Group: GroupECP256},
	{Protocol: ProtocolIKE, Encr: EncrAESCBC, EncrKeyBits: 192, Integ: IntegHMACSHA384192, PRF: PRFHMACSHA384, Group: GroupECP384},
	{Protocol: ProtocolIKE, Encr: EncrAESCBC, EncrKeyBits: 256, Integ: IntegHMACSHA512256, PRF: PRFHMACSHA512, Group: GroupMODP2048},
	{Protocol: ProtocolIKE, Encr: EncrAESCBC, EncrKeyBits: 256, Integ: IntegHMACSHA196, PRF: PRFHMACSHA1, Group: GroupECP521},
}

func testKeys(t testing.TB, a Algorithms) *IKEKeys {
	t.Helper()
	k, err := DeriveIKEKeys(a, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32), 0x1111, 0x2222)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSKRoundTripAndTamper(t *testing.T) {
	for _, a := range ikeSuites {
		t.Run(a.String(), func(t *testing.T) {
			k := testKeys(t, a)
			iOut, iIn, err := k.Ciphers(true)
			if err != nil {
				t.Fatal(err)
			}
			rOut, rIn, _ := k.Ciphers(false)
			for _, n := range []int{0, 1, 15, 16, 17, 100, 1000} {
				aad := bytes.Repeat([]byte{0xa5}, 32)
				plain := bytes.Repeat([]byte{0x5a}, n)
				sealed, err := iOut.Seal(append([]byte(nil), aad...), plain)
				if err != nil {
					t.Fatal(err)
				}
				body := sealed[len(aad):]
				if len(body) != iOut.SealedLen(n) {
					t.Fatalf("n=%d: body %d bytes, SealedLen %d", n, len(body), iOut.SealedLen(n))
				}
				got, err := rIn.Open(aad, body)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("n=%d: open: %v", n, err)
				}
				// The initiator's own inbound cipher must not open it:
				// the directions have different keys.
				if _, err := iIn.Open(aad, body); err == nil {
					t.Fatal("message opened with the other direction's keys")
				}
				// Every single-bit change of the associated data or the
				// body is caught.
				for i := 0; i < len(aad)+len(body); i++ {
					a2, b2 := append([]byte(nil), aad...), append([]byte(nil), body...)
					if i < len(a2) {
						a2[i] ^= 0x01
					} else {
						b2[i-len(a2)] ^= 0x80
					}
					if _, err := rIn.Open(a2, b2); err == nil {
						t.Fatalf("n=%d: tampered byte %d accepted", n, i)
					}
				}
				if _, err := rIn.Open(aad, body[:len(body)-1]); err == nil {
					t.Fatal("truncated body accepted")
				}
			}
			// And the other direction.
			sealed, _ := rOut.Seal(nil, []byte("hello"))
			if got, err := iIn.Open(nil, sealed); err != nil || string(got) != "hello" {
				t.Fatalf("responder to initiator: %v", err)
			}
		})
	}
}

func TestSKAEADIVNeverRepeats(t *testing.T) {
	k := testKeys(t, ikeSuites[0])
	out, _, _ := k.Ciphers(true)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s, _ := out.Seal(nil, []byte("x"))
		iv := string(s[:8])
		if seen[iv] {
			t.Fatalf("IV %x repeated", iv)
		}
		seen[iv] = true
	}
}

// TestSKAEADNonceLayout checks the layout of RFC 5282 and RFC 7634 against
// the primitives directly: nonce = salt (last 4 key bytes) | 8-byte IV,
// associated data = the message through the SK header, no padding and a
// zero Pad Length.
func TestSKAEADNonceLayout(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 36)
	for _, e := range []EncrID{EncrAESGCM16, EncrChaCha20Poly1305} {
		a := Algorithms{Protocol: ProtocolIKE, Encr: e, EncrKeyBits: 256, PRF: PRFHMACSHA256, Group: GroupCurve25519}
		if e == EncrChaCha20Poly1305 {
			a.EncrKeyBits = 0
		}
		c, err := NewSKCipher(a, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		aad := []byte("header and SK payload header")
		s, _ := c.Seal(append([]byte(nil), aad...), []byte("inner"))
		body := s[len(aad):]
		var ref cipher.AEAD
		if e == EncrAESGCM16 {
			b, _ := aes.NewCipher(key[:32])
			ref, _ = cipher.NewGCM(b)
		} else {
			ref, _ = chacha20poly1305.New(key[:32])
		}
		nonce := append(append([]byte(nil), key[32:]...), body[:8]...)
		plain, err := ref.Open(nil, nonce, body[8:], aad)
		if err != nil || string(plain) != "inner\x00" {
			t.Errorf("%s: reference open %q, %v", e, plain, err)
		}
	}
}

func TestSKCBCPadding(t *testing.T) {
	a := ikeSuites[3]
	k := testKeys(t, a)
	out, _, _ := k.Ciphers(true)
	_, in, _ := k.Ciphers(false)
	for n := 0; n < 40; n++ {
		s, _ := out.Seal(nil, make([]byte, n))
		// IV, whole blocks, 16-byte ICV.
		if (len(s)-16-16)%16 != 0 {
			t.Fatalf("n=%d: ciphertext not whole blocks", n)
		}
		if got, err := in.Open(nil, s); err != nil || len(got) != n {
			t.Fatalf("n=%d: %v", n, err)
		}
	}
	if _, err := in.Open(nil, make([]byte, 16+8+16)); err == nil {
		t.Error("partial block accepted")
	}
}

func TestSKOpenErrorIsICV(t *testing.T) {
	k := testKeys(t, ikeSuites[0])
	_, in, _ := k.Ciphers(true)
	_, err := in.Open(nil, make([]byte, 40))
	if !errors.Is(err, ErrICV) {
		t.Errorf("got %v, want ErrICV", err)
	}
}

func TestNewSKCipherKeyLengths(t *testing.T) {
	a := ikeSuites[0]
	if _, err := NewSKCipher(a, make([]byte, 16), nil); err == nil {
		t.Error("GCM key without salt accepted")
	}
	if _, err := NewSKCipher(a, make([]byte, 20), make([]byte, 32)); err == nil {
		t.Error("integrity key with an AEAD accepted")
	}
	if _, err := NewSKCipher(ikeSuites[3], make([]byte, 16), make([]byte, 20)); err == nil {
		t.Error("short HMAC-SHA2-256 key accepted")
	}
}

func TestKeyLengths(t *testing.T) {
	cases := []struct {
		a           Algorithms
		encr, integ int
	}{
		{Algorithms{Protocol: ProtocolESP, Encr: EncrAESGCM16, EncrKeyBits: 128}, 20, 0},
		{Algorithms{Protocol: ProtocolESP, Encr: EncrAESGCM16, EncrKeyBits: 256}, 36, 0},
		{Algorithms{Protocol: ProtocolESP, Encr: EncrChaCha20Poly1305}, 36, 0},
		{Algorithms{Protocol: ProtocolESP, Encr: EncrAESCBC, EncrKeyBits: 128, Integ: IntegHMACSHA256128}, 16, 32},
		{Algorithms{Protocol: ProtocolESP, Encr: EncrAESCBC, EncrKeyBits: 256, Integ: IntegHMACSHA256128}, 32, 32},
	}
	for _, c := range cases {
		if err := c.a.Check(); err != nil {
			t.Errorf("%s: %v", c.a, err)
		}
		if c.a.EncrKeyLen() != c.encr || c.a.IntegKeyLen() != c.integ {
			t.Errorf("%s: key lengths %d/%d, want %d/%d", c.a, c.a.EncrKeyLen(), c.a.IntegKeyLen(), c.encr, c.integ)
		}
	}
	for _, bad := range []Algorithms{
		{Protocol: ProtocolESP, Encr: EncrAESGCM16, EncrKeyBits: 192},
		{Protocol: ProtocolESP, Encr: EncrAESCBC, EncrKeyBits: 128, Integ: IntegHMACSHA196},
		{Protocol: ProtocolESP, Encr: EncrAESCBC, EncrKeyBits: 128},
		{Protocol: ProtocolESP, Encr: Encr3DES, Integ: IntegHMACSHA256128},
		{Protocol: ProtocolIKE, Encr: EncrAESGCM16, EncrKeyBits: 128, PRF: PRFHMACSHA256},
		{Protocol: ProtocolIKE, Encr: EncrAESGCM16, EncrKeyBits: 128, PRF: PRFAES128XCBC, Group: GroupECP256},
		{Protocol: ProtocolIKE, Encr: EncrAESCBC, EncrKeyBits: 128, PRF: PRFHMACSHA256, Group: GroupECP256},
		{Protocol: ProtocolAH, Integ: IntegHMACSHA256128},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestPSKAuth(t *testing.T) {
	// No published IKEv2 AUTH vector exists; this checks the formula of
	// RFC 7296 section 2.15 step by step. The interop test in message
	// checks it against strongSwan's AUTH payloads.
	secret, octets := []byte("secret"), []byte("octets")
	inner, _ := PRFHMACSHA256.Compute(secret, []byte("Key Pad for IKEv2"))
	want, _ := PRFHMACSHA256.Compute(inner, octets)
	got, err := PSKAuth(PRFHMACSHA256, secret, octets)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatal("PSK AUTH formula")
	}
	if !VerifyPSKAuth(PRFHMACSHA256, secret, octets, got) || VerifyPSKAuth(PRFHMACSHA256, []byte("other"), octets, got) {
		t.Fatal("VerifyPSKAuth")
	}
	k := testKeys(t, ikeSuites[0])
	so, _ := k.SignedOctets(true, []byte("msg1"), []byte("nonceR"), []byte("idbody"))
	maced, _ := PRFHMACSHA256.Compute(k.SKpi(), []byte("idbody"))
	if !bytes.Equal(so, cat([]byte("msg1"), []byte("nonceR"), maced)) {
		t.Fatal("initiator signed octets")
	}
	so, _ = k.SignedOctets(false, []byte("msg2"), []byte("nonceI"), []byte("idbody"))
	maced, _ = PRFHMACSHA256.Compute(k.SKpr(), []byte("idbody"))
	if !bytes.Equal(so, cat([]byte("msg2"), []byte("nonceI"), maced)) {
		t.Fatal("responder signed octets")
	}
}

// TestDropAuthKeys: an authenticated IKE SA's keys without SK_pi and
// SK_pr keep every other key as it was, in a buffer of their own (the
// one with SK_pi and SK_pr can go), and signed octets are refused rather
// than computed with an empty key; ciphers made before and after agree.
func TestDropAuthKeys(t *testing.T) {
	for _, a := range ikeSuites {
		t.Run(a.String(), func(t *testing.T) {
			k := testKeys(t, a)
			want := testKeys(t, a)
			before, _, err := k.Ciphers(true)
			if err != nil {
				t.Fatal(err)
			}
			old := &k.SKd()[0]
			k.DropAuthKeys()
			if k.SKpi() != nil || k.SKpr() != nil {
				t.Fatal("SK_pi and SK_pr kept")
			}
			for i, p := range [][2][]byte{{k.SKd(), want.SKd()}, {k.SKai(), want.SKai()}, {k.SKar(), want.SKar()}, {k.SKei(), want.SKei()}, {k.SKer(), want.SKer()}} {
				if !bytes.Equal(p[0], p[1]) || cap(p[0]) != len(p[0]) {
					t.Errorf("key %d: %x (cap %d), want %x", i, p[0], cap(p[0]), p[1])
				}
			}
			if &k.SKd()[0] == old {
				t.Error("the keys stay in the buffer that holds SK_pi and SK_pr")
			}
			for _, initiator := range []bool{true, false} {
				if _, err := k.SignedOctets(initiator, []byte("msg"), []byte("nonce"), []byte("id")); err == nil {
					t.Errorf("signed octets (initiator %v) without SK_p", initiator)
				}
				if _, err := k.PSKAuth(initiator, []byte("secret"), []byte("msg"), []byte("nonce"), []byte("id")); err == nil {
					t.Errorf("PSK AUTH (initiator %v) without SK_p", initiator)
				}
				if k.VerifyPSK(initiator, []byte("secret"), []byte("msg"), []byte("nonce"), []byte("id"), make([]byte, 32)) {
					t.Errorf("PSK AUTH (initiator %v) verified without SK_p", initiator)
				}
			}
			_, in, err := k.Ciphers(false)
			if err != nil {
				t.Fatal(err)
			}
			aad := []byte("header and SK payload header")
			sealed, err := before.Seal(append([]byte(nil), aad...), []byte("inner"))
			if err != nil {
				t.Fatal(err)
			}
			if p, err := in.Open(aad, sealed[len(aad):]); err != nil || string(p) != "inner" {
				t.Errorf("opened %q, %v", p, err)
			}
			k.DropAuthKeys() // again: nothing to do
			if !bytes.Equal(k.SKd(), want.SKd()) {
				t.Error("a second DropAuthKeys changed SK_d")
			}
		})
	}
}

func BenchmarkSKSeal(b *testing.B) {
	for _, a := range []Algorithms{ikeSuites[0], ikeSuites[3]} {
		b.Run(a.String(), func(b *testing.B) {
			k := testKeys(b, a)
			out, _, _ := k.Ciphers(true)
			plain := make([]byte, 500)
			buf := make([]byte, 64, 64+out.SealedLen(len(plain)))
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				out.Seal(buf[:64], plain)
			}
		})
	}
}

func TestSKSealConcurrent(t *testing.T) {
	k := testKeys(t, ikeSuites[2])
	out, _, _ := k.Ciphers(true)
	_, in, _ := k.Ciphers(false)
	ivs := make(chan string, 400)
	done := make(chan bool)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 100; i++ {
				s, err := out.Seal(nil, []byte("concurrent"))
				if err != nil {
					t.Error(err)
				}
				if _, err := in.Open(nil, s); err != nil {
					t.Error(err)
				}
				ivs <- string(s[:8])
			}
			done <- true
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	close(ivs)
	seen := map[string]bool{}
	for iv := range ivs {
		if seen[iv] {
			t.Fatal("IV repeated across goroutines")
		}
		seen[iv] = true
	}
}
