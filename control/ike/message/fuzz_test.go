package message

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/suite"
)

// charonSeeds returns every datagram of the recorded strongSwan exchanges,
// without the non-ESP marker.
func charonSeeds(f *testing.F) [][]byte {
	files, _ := filepath.Glob("testdata/charon/*/packets.txt")
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fs := strings.Fields(l)
			d, err := hex.DecodeString(fs[len(fs)-1])
			if err != nil {
				f.Fatal(err)
			}
			if s, err := StripNonESPMarker(d); err == nil {
				d = s
			}
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		f.Fatal("no seeds")
	}
	return out
}

// FuzzDecode feeds arbitrary datagrams to the decoder. It must not panic,
// and whatever it accepts must encode to a message that decodes to the same
// payloads (the encoder writes what the decoder reads).
func FuzzDecode(f *testing.F) {
	for _, s := range charonSeeds(f) {
		f.Add(s)
	}
	m := &Message{Header: Header{SPIi: 1, Exchange: IKEAuth}, Payloads: allPayloads(f)}
	if b, err := m.Encode(nil); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			NotifyFor(err)
			return
		}
		_ = Validate(m)
		again, err := (&Message{Header: m.Header, Payloads: m.Payloads}).Encode(nil)
		if err != nil {
			t.Fatalf("decoded payloads do not encode: %v", err)
		}
		m2, err := Decode(again)
		if err != nil {
			t.Fatalf("our encoding does not decode: %v", err)
		}
		if len(m2.Payloads) != len(m.Payloads) {
			t.Fatalf("%d payloads after re-encoding, %d before", len(m2.Payloads), len(m.Payloads))
		}
		for i := range m.Payloads {
			if !reflect.DeepEqual(normalize(m.Payloads[i]), normalize(m2.Payloads[i])) {
				t.Fatalf("payload %d (%s) changed by re-encoding", i+1, m.Payloads[i].Type())
			}
		}
		if m.Encrypted == nil {
			// Without SK, re-encoding is idempotent byte for byte.
			third, _ := (&Message{Header: m2.Header, Payloads: m2.Payloads}).Encode(nil)
			if !bytes.Equal(third, again) {
				t.Fatal("re-encoding is not stable")
			}
		}
	})
}

// FuzzDecrypt exercises SK decryption and the inner decoder with fixed
// keys. mode selects what data is:
//   - 0: the body of an SK payload (IV | ciphertext | ICV) as received:
//     Open must fail cleanly on anything not sealed with the key;
//   - 1: an inner payload chain, which we seal and then decrypt: the inner
//     decoder sees arbitrary plaintext behind a valid ICV;
//   - 2: AES-CBC ciphertext (IV | blocks) given a valid HMAC, so that the
//     padding checks see arbitrary decrypted bytes.
func FuzzDecrypt(f *testing.F) {
	gcmOut, gcmIn := testCiphers(f, "aes128gcm16-prfsha256-x25519")
	cbcOut, cbcIn := testCiphers(f, "aes128-sha256-ecp256")
	macKey := func() []byte {
		// The CBC cipher's integrity key for the initiator direction,
		// rebuilt from the same derivation as testCiphers.
		p := mustIKE(f, "aes128-sha256-ecp256")[0]
		a, _ := p.Algorithms()
		k, _ := suite.DeriveIKEKeys(a, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), []byte("g^ir"), 1, 2)
		return k.SKai()
	}()
	h := Header{SPIi: 1, SPIr: 2, Exchange: IKEAuth, Flags: FlagInitiator, MessageID: 1}
	for _, inner := range [][]Payload{allPayloads(f), nil, {&Notify{NotifyType: InitialContact}}} {
		plain, _ := appendChain(nil, inner, PayloadNone)
		for mode := byte(0); mode < 3; mode++ {
			f.Add(mode, byte(firstType(inner)), plain)
		}
		b, _ := (&Message{Header: h, Inner: inner}).Encode(gcmOut)
		if d, err := Decode(b); err == nil {
			f.Add(byte(0), byte(d.Encrypted.NextPayload), d.Encrypted.Body)
		}
	}
	f.Fuzz(func(t *testing.T, mode, first byte, data []byte) {
		aad := []byte("IKE header through the SK payload header")
		switch mode % 3 {
		case 0:
			for _, c := range []*suite.SKCipher{gcmIn, cbcIn} {
				if _, err := c.Open(aad, data); err == nil {
					t.Fatal("forged SK payload accepted")
				}
			}
		case 1:
			for i, c := range []*suite.SKCipher{gcmOut, cbcOut} {
				sealed, err := c.Seal(append([]byte(nil), aad...), data)
				if err != nil {
					t.Fatal(err)
				}
				plain, err := []*suite.SKCipher{gcmIn, cbcIn}[i].Open(aad, sealed[len(aad):])
				if err != nil || !bytes.Equal(plain, data) {
					t.Fatalf("round trip: %v", err)
				}
				if ps, err := DecodeInner(plain, PayloadType(first)); err == nil {
					if enc, err := appendChain(nil, ps, PayloadNone); err != nil || len(enc) > len(plain)+4*len(ps) {
						t.Fatalf("decoded inner payloads do not re-encode (%v)", err)
					}
				}
			}
		case 2:
			m := hmac.New(sha256.New, macKey)
			m.Write(aad)
			m.Write(data)
			body := append(append([]byte(nil), data...), m.Sum(nil)[:16]...)
			plain, err := cbcIn.Open(aad, body)
			if err == nil && len(plain) >= len(data) {
				t.Fatal("padding not removed")
			}
		}
	})
}

// FuzzSelect decodes an SA payload body and runs the responder's choice on
// it. Whatever Select chooses from a peer's offer must pass the check the
// peer, as initiator, makes of our answer (CheckResponse): the responder
// and initiator halves of proposal handling must agree.
func FuzzSelect(f *testing.F) {
	for _, s := range charonSeeds(f) {
		m, err := Decode(s)
		if err != nil {
			continue
		}
		if sa, ok := Find(m.Payloads, PayloadSA).(*SA); ok {
			b, _ := sa.appendBody(nil)
			f.Add(b)
		}
	}
	for _, s := range []string{"aes128gcm16-x25519-none", "aes256-sha256-esn-noesn", "chacha20poly1305,aes128-sha256"} {
		ps, err := suite.ParseESP(s)
		if err == nil {
			b, _ := (&SA{Proposals: suite.WithSPI(ps, []byte{1, 2, 3, 4})}).appendBody(nil)
			f.Add(b)
		}
	}
	var ours []suite.Proposal
	for _, s := range []string{"default", "aes128-sha1-modp2048,aes256gcm16-prfsha512-ecp521"} {
		ps, _ := suite.ParseIKE(s)
		ours = append(ours, ps...)
	}
	for _, s := range []string{"default", "aes128gcm16-x25519-esn", "aes256gcm16-ecp256-none"} {
		ps, _ := suite.ParseESP(s)
		ours = append(ours, ps...)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeSA(body)
		if err != nil {
			return
		}
		offered := p.(*SA).Proposals
		for _, pol := range []suite.SelectPolicy{{}, {PreferPeer: true}, {KEGroup: suite.GroupCurve25519}} {
			sel, err := suite.Select(ours, offered, pol)
			if err != nil {
				continue
			}
			if _, err := suite.CheckResponse(offered, []suite.Proposal{sel}); err != nil {
				t.Fatalf("Select chose %s from %s, which CheckResponse refuses: %v", sel, suite.FormatProposals(offered), err)
			}
			if _, err := sel.Algorithms(); err != nil {
				t.Fatalf("Select chose %s, which is not implemented: %v", sel, err)
			}
		}
	})
}
