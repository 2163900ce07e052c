package suite

import (
	"bytes"
	"crypto/hmac"
	"testing"
)

// refPRFPlus is prf+ of RFC 7296 2.13 with crypto/hmac, as the package
// computed it before keying a pooled hash once per call.
func refPRFPlus(s *hmacSpec, key, seed []byte, n int) []byte {
	var out, t []byte
	for i := 1; len(out) < n; i++ {
		m := hmac.New(s.hash, key)
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

// TestPRFMatchesCryptoHMAC checks the pooled HMAC against crypto/hmac for
// keys shorter than, equal to and longer than the block (hashed first),
// and prf+ for lengths that end inside a block.
func TestPRFMatchesCryptoHMAC(t *testing.T) {
	data := bytes.Repeat([]byte("spugate"), 40)
	for _, p := range []PRFID{PRFHMACSHA1, PRFHMACSHA256, PRFHMACSHA384, PRFHMACSHA512} {
		s := prfSpec(p)
		for _, kl := range []int{0, 1, 16, s.size, s.block - 1, s.block, s.block + 1, 300} {
			key := bytes.Repeat([]byte{byte(kl) | 1}, kl)
			m := hmac.New(s.hash, key)
			m.Write(data[:17])
			m.Write(data[17:])
			want := m.Sum(nil)
			got, err := p.Compute(key, data[:17], data[17:])
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s key %d: prf %x, want %x (%v)", p, kl, got, want, err)
			}
			for _, n := range []int{0, 1, s.size - 1, s.size, s.size + 5, 3*s.size + 7} {
				got, err := PRFPlus(p, key, data[:33], n)
				if want := refPRFPlus(s, key, data[:33], n); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s key %d: prf+ of %d bytes %x, want %x (%v)", p, kl, n, got, want, err)
				}
				if len(got) != n || cap(got) != n {
					t.Errorf("%s: prf+ of %d bytes has length %d, capacity %d", p, n, len(got), cap(got))
				}
			}
		}
	}
}

// TestPRFAllocs guards the pooled HMAC: prf allocates its output only, and
// prf+ its output only, however many blocks it computes.
func TestPRFAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts")
	}
	key, seed := make([]byte, 32), make([]byte, 80)
	PRFHMACSHA256.Compute(key, seed) // fill the pool
	if n := testing.AllocsPerRun(100, func() { PRFHMACSHA256.Compute(key, seed) }); n > 1 {
		t.Errorf("prf allocates %v times, want 1 (its output)", n)
	}
	if n := testing.AllocsPerRun(100, func() { PRFPlus(PRFHMACSHA256, key, seed, 200) }); n > 1 {
		t.Errorf("prf+ allocates %v times, want 1 (its output)", n)
	}
}

// TestPSKAuthParts checks IKEKeys.PSKAuth and VerifyPSK against PSKAuth
// over SignedOctets, for both sides and a secret longer than the block.
func TestPSKAuthParts(t *testing.T) {
	for _, p := range []PRFID{PRFHMACSHA1, PRFHMACSHA256, PRFHMACSHA512} {
		k, err := NewIKEKeys(Algorithms{PRF: p}, nil, nil, nil, nil, nil, bytes.Repeat([]byte{1}, p.Size()), bytes.Repeat([]byte{2}, p.Size()))
		if err != nil {
			t.Fatal(err)
		}
		msg, nonce, id := bytes.Repeat([]byte{3}, 300), bytes.Repeat([]byte{4}, 32), []byte{2, 0, 0, 0, 'g', 'w'}
		for _, secret := range [][]byte{[]byte("s3cret"), bytes.Repeat([]byte{5}, 200)} {
			for _, initiator := range []bool{true, false} {
				octets, _ := k.SignedOctets(initiator, msg, nonce, id)
				want, _ := PSKAuth(p, secret, octets)
				got, err := k.PSKAuth(initiator, secret, msg, nonce, id)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s initiator %v: AUTH %x, want %x (%v)", p, initiator, got, want, err)
				}
				if !k.VerifyPSK(initiator, secret, msg, nonce, id, want) || k.VerifyPSK(!initiator, secret, msg, nonce, id, want) {
					t.Errorf("%s initiator %v: VerifyPSK does not tell the right AUTH from the other side's", p, initiator)
				}
			}
		}
	}
}

// TestSelectAllocs guards negotiation's scratch: choosing a proposal
// allocates the chosen one only (its transforms and SPI), however many
// pairs and types it compares.
func TestSelectAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts")
	}
	ours, _ := ParseIKE("aes256gcm16-prfsha384-ecp384,aes128gcm16-prfsha256-x25519")
	offered, _ := ParseIKE("aes128-sha256-modp2048,aes128gcm16-prfsha256-x25519")
	offered = WithSPI(offered, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if _, err := Select(ours, offered, SelectPolicy{KEGroup: GroupCurve25519}); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { Select(ours, offered, SelectPolicy{KEGroup: GroupCurve25519}) }); n > 2 {
		t.Errorf("Select allocates %v times, want at most 2 (the chosen transforms and SPI)", n)
	}
}
