package message

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"github.com/spugate/spugate/ipsec"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/suite"
)

func mustIKE(t testing.TB, s string) []suite.Proposal {
	t.Helper()
	ps, err := suite.ParseIKE(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func testCiphers(t testing.TB, ike string) (out, in *suite.SKCipher) {
	t.Helper()
	p := mustIKE(t, ike)[0]
	a, err := p.Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	k, err := suite.DeriveIKEKeys(a, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), []byte("g^ir"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = k.Ciphers(true)
	if err != nil {
		t.Fatal(err)
	}
	_, in, _ = k.Ciphers(false)
	return out, in
}

// allPayloads has one of every payload type, with the variants worth a
// round trip.
func allPayloads(t testing.TB) []Payload {
	return []Payload{
		&SA{Proposals: mustIKE(t, "aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256,aes256-sha256-modp2048")},
		&KE{Group: suite.GroupCurve25519, Data: bytes.Repeat([]byte{9}, 32)},
		&ID{IDType: IDFQDN, Data: []byte("a.spugate.test")},
		NewID(true, netip.MustParseAddr("2001:db8::1")),
		&Cert{Encoding: CertX509Signature, Data: []byte{0x30, 0x82, 1, 2}},
		&CertReq{Encoding: CertX509Signature, Data: bytes.Repeat([]byte{7}, 40)},
		&Auth{Method: AuthSharedKeyMIC, Data: bytes.Repeat([]byte{5}, 32)},
		&Nonce{Data: bytes.Repeat([]byte{3}, 32)},
		&Notify{NotifyType: NATDetectionSourceIP, Data: bytes.Repeat([]byte{1}, 20)},
		&Notify{Protocol: suite.ProtocolESP, SPI: []byte{1, 2, 3, 4}, NotifyType: RekeySA, Data: []byte{}},
		&Delete{Protocol: suite.ProtocolIKE},
		&Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{0xc0010001, 0xc0010002}},
		&VendorID{Data: []byte("spugate")},
		&TS{Selectors: []ipsec.Selector{
			{FromPort: 0, ToPort: 65535, From: netip.MustParseAddr("198.18.10.0"), To: netip.MustParseAddr("198.18.10.255")},
			{Proto: 17, FromPort: 500, ToPort: 500, From: netip.MustParseAddr("2001:db8::"), To: netip.MustParseAddr("2001:db8::ffff")},
		}},
		&TS{Responder: true, Selectors: []ipsec.Selector{{ToPort: 65535, From: netip.MustParseAddr("0.0.0.0"), To: netip.MustParseAddr("255.255.255.255")}}},
		&CP{CfgType: CfgRequest, Attributes: []CPAttribute{{Type: InternalIP4Address, Value: []byte{}}, {Type: InternalIP4DNS, Value: []byte{}}}},
		&EAP{Data: []byte{1, 7, 0, 5, 1}},
		&Unknown{PayloadType: 99, Body: []byte("skip me")},
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	ps := allPayloads(t)
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKEAuth, Flags: FlagInitiator, MessageID: 1}, Payloads: ps}
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Header.Length != uint32(len(b)) || d.Header.NextPayload != PayloadSA || d.Header.Version != Version {
		t.Errorf("header %+v", d.Header)
	}
	if len(d.Payloads) != len(ps) {
		t.Fatalf("%d payloads, want %d", len(d.Payloads), len(ps))
	}
	for i := range ps {
		if !reflect.DeepEqual(normalize(ps[i]), normalize(d.Payloads[i])) {
			t.Errorf("payload %d (%s): got %+v, want %+v", i+1, ps[i].Type(), d.Payloads[i], ps[i])
		}
	}
	// And inside SK.
	out, in := testCiphers(t, "aes128gcm16-prfsha256-x25519")
	m = &Message{Header: m.Header, Inner: ps}
	b, err = m.Encode(out)
	if err != nil {
		t.Fatal(err)
	}
	d, err = Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Header.NextPayload != PayloadSK || d.Encrypted == nil || d.Encrypted.NextPayload != PayloadSA {
		t.Fatalf("SK not found: %+v", d.Encrypted)
	}
	if err := d.Decrypt(in); err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if !reflect.DeepEqual(normalize(ps[i]), normalize(d.Inner[i])) {
			t.Errorf("inner payload %d (%s) differs", i+1, ps[i].Type())
		}
	}
}

// normalize makes nil and empty slices compare equal and numbers the
// proposals as the wire does.
func normalize(p Payload) Payload {
	switch v := p.(type) {
	case *SA:
		c := &SA{}
		for i, pr := range v.Proposals {
			pr = pr.Clone()
			if pr.Number == 0 {
				pr.Number = uint8(i + 1)
			}
			if len(pr.SPI) == 0 {
				pr.SPI = nil
			}
			for j := range pr.Transforms {
				if len(pr.Transforms[j].Attributes) == 0 {
					pr.Transforms[j].Attributes = nil
				}
			}
			c.Proposals = append(c.Proposals, pr)
		}
		return c
	case *Notify:
		c := *v
		if len(c.SPI) == 0 {
			c.SPI = nil
		}
		if len(c.Data) == 0 {
			c.Data = nil
		}
		return &c
	case *CP:
		c := *v
		c.Attributes = nil
		for _, a := range v.Attributes {
			if len(a.Value) == 0 {
				a.Value = nil
			}
			c.Attributes = append(c.Attributes, a)
		}
		return &c
	}
	return p
}

// build makes a message from a header and raw payload bytes, each given as
// (type, body); next payload fields and lengths are filled in.
func build(h Header, payloads ...rawPayload) []byte {
	b := make([]byte, HeaderLen)
	if len(payloads) > 0 {
		h.NextPayload = payloads[0].typ
	}
	for i, p := range payloads {
		next := PayloadNone
		if i+1 < len(payloads) {
			next = payloads[i+1].typ
		}
		if p.next != 0 {
			next = p.next
		}
		l := 4 + len(p.body)
		if p.length != 0 {
			l = p.length
		}
		b = append(b, byte(next), p.flags, byte(l>>8), byte(l))
		b = append(b, p.body...)
	}
	h.Version = Version
	h.Length = uint32(len(b))
	h.put(b)
	return b
}

type rawPayload struct {
	typ    PayloadType
	next   PayloadType
	flags  byte
	length int
	body   []byte
}

func saBody(t testing.TB) []byte {
	b, err := (&SA{Proposals: mustIKE(t, "aes128-sha256-ecp256")}).appendBody(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	h := Header{SPIi: 1, Exchange: IKESAInit, Flags: FlagInitiator}
	sa := saBody(t)
	// Transform 2 of proposal 1 announces 6 bytes.
	badTransform := append([]byte(nil), sa...)
	binary.BigEndian.PutUint16(badTransform[8+12+2:], 6)
	nonce := bytes.Repeat([]byte{1}, 16)
	cases := []struct {
		name string
		msg  []byte
		want string
	}{
		{"short header", make([]byte, 20), "ike: header: message of 20 bytes below minimum 28"},
		{"transform length", build(h, rawPayload{typ: PayloadNonce, body: nonce}, rawPayload{typ: PayloadKE, body: []byte{0, 19, 0, 0, 1}}, rawPayload{typ: PayloadSA, body: badTransform}),
			"ike: payload 3 (SA): proposal 1: transform 2: length 6 below minimum 8"},
		{"payload length below 4", build(h, rawPayload{typ: PayloadNonce, length: 3}), "ike: payload 1 (Nonce): length 3 below minimum 4"},
		{"payload length beyond message", build(h, rawPayload{typ: PayloadNonce, length: 400, body: nonce}), "ike: payload 1 (Nonce): length 400 exceeds the 20 bytes left"},
		{"truncated chain", build(h, rawPayload{typ: PayloadNonce, next: PayloadKE, body: nonce}), "ike: payload 2 (KE): truncated: 0 bytes left, need 4"},
		{"short nonce", build(h, rawPayload{typ: PayloadNonce, body: nonce[:8]}), "ike: payload 1 (Nonce): nonce of 8 bytes outside 16..256"},
		{"short KE", build(h, rawPayload{typ: PayloadKE, body: []byte{0, 19, 0}}), "ike: payload 1 (KE): length 7 below minimum 9"},
		{"SK not last", build(h, rawPayload{typ: PayloadSK, body: []byte{1, 2}}, rawPayload{typ: PayloadNonce, body: nonce}), "ike: payload 1 (SK): not the last payload: 20 bytes follow"},
		{"empty SK", build(h, rawPayload{typ: PayloadSK}), "ike: payload 1 (SK): no encrypted data"},
		{"SKF 3 of 2", build(h, rawPayload{typ: PayloadSKF, body: []byte{0, 3, 0, 2, 9}}), "ike: payload 1 (SKF): fragment 3 of 2"},
		{"ID IPv4 of 3 bytes", build(h, rawPayload{typ: PayloadIDi, body: []byte{1, 0, 0, 0, 1, 2, 3}}), "ike: payload 1 (IDi): ID_IPV4_ADDR of 3 bytes"},
		{"IKE delete with SPIs", build(h, rawPayload{typ: PayloadDelete, body: []byte{1, 8, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}}), "ike: payload 1 (D): IKE SA delete with SPI size 8, 1 SPIs, 12 bytes"},
		{"ESP delete SPI count", build(h, rawPayload{typ: PayloadDelete, body: []byte{3, 4, 0, 2, 1, 2, 3, 4}}), "ike: payload 1 (D): 2 SPIs in 4 bytes"},
		{"TS bad type", build(h, rawPayload{typ: PayloadTSi, body: []byte{1, 0, 0, 0, 9, 0, 0, 16, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}}), "ike: payload 1 (TSi): selector 1: unsupported TS type 9"},
		{"TS trailing", build(h, rawPayload{typ: PayloadTSi, body: []byte{1, 0, 0, 0, 7, 0, 0, 16, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 0}}), "ike: payload 1 (TSi): 1 bytes after 1 selectors"},
		{"notify SPI size", build(h, rawPayload{typ: PayloadNotify, body: []byte{3, 8, 0x40, 0x09, 1, 2}}), "ike: payload 1 (N): SPI size 8 exceeds the 2 bytes left"},
		{"EAP length", build(h, rawPayload{typ: PayloadEAP, body: []byte{1, 1, 0, 9, 1}}), "ike: payload 1 (EAP): EAP length field 9 but 5 bytes"},
		{"CP reserved bit", build(h, rawPayload{typ: PayloadCP, body: []byte{1, 0, 0, 0, 0x80, 1, 0, 0}}), "ike: payload 1 (CP): attribute 1: reserved bit set"},
		{"trailing bytes", append(build(h, rawPayload{typ: PayloadNonce, body: nonce}), 0), "ike: header: length field 48 but datagram of 49 bytes"},
	}
	for _, c := range cases {
		_, err := Decode(c.msg)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got  %v\n want %s", c.name, err, c.want)
		}
		if n, _ := NotifyFor(err); n != InvalidSyntax && err != nil {
			t.Errorf("%s: maps to %s, want INVALID_SYNTAX", c.name, n)
		}
	}
}

func TestDecodeSAErrors(t *testing.T) {
	sa := saBody(t)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), sa...)) }
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "no proposals"},
		{"last substruc", mod(func(b []byte) []byte { b[0] = 1; return b }), "proposal 1: last substruc 1, want 0 or 2"},
		{"more proposals announced", mod(func(b []byte) []byte { b[0] = 2; return b }), "proposal 2: truncated: 0 bytes left, need 8"},
		{"proposal number 0", mod(func(b []byte) []byte { b[4] = 0; return b }), "proposal 1: number 0"},
		{"ESP SPI size", mod(func(b []byte) []byte { b[5] = 3; return b }), "proposal 1: ESP SPI size 0, want 4"},
		{"no transforms", mod(func(b []byte) []byte { b[7] = 0; return b }), "proposal 1: no transforms"},
		{"fewer transforms announced", mod(func(b []byte) []byte { b[7]--; return b }), "proposal 1: transform 3: last substruc 3 on the last transform"},
		{"transform attribute TLV key length", mod(func(b []byte) []byte { b[8+8] &^= 0x80; return b }), "proposal 1: transform 1: attribute 1: Key Length in TLV format"},
		{"key length 0", mod(func(b []byte) []byte { b[8+10], b[8+11] = 0, 0; return b }), "proposal 1: transform 1: attribute 1: Key Length 0"},
	}
	for _, c := range cases {
		_, err := decodeSA(c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n got  %v\n want %s", c.name, err, c.want)
		}
	}
}

func TestCriticalBit(t *testing.T) {
	h := Header{SPIi: 1, Exchange: Informational}
	nonce := bytes.Repeat([]byte{1}, 16)
	// Unknown and critical: the message is rejected, and the error maps to
	// UNSUPPORTED_CRITICAL_PAYLOAD with the type.
	b := build(h, rawPayload{typ: PayloadNonce, body: nonce}, rawPayload{typ: 99, flags: 0x80, body: []byte("x")})
	_, err := Decode(b)
	var uc *UnsupportedCriticalError
	if !errors.As(err, &uc) || uc.PayloadType != 99 || uc.Index != 2 {
		t.Fatalf("got %v", err)
	}
	if err.Error() != "ike: payload 2 (type 99): unsupported critical payload" {
		t.Errorf("message %q", err)
	}
	if n, data := NotifyFor(err); n != UnsupportedCriticalPayload || !bytes.Equal(data, []byte{99}) {
		t.Errorf("NotifyFor: %s %x", n, data)
	}
	// Unknown, not critical: skipped (kept as Unknown), the rest decodes.
	b = build(h, rawPayload{typ: 99, body: []byte("x")}, rawPayload{typ: PayloadNonce, body: nonce})
	m, err := Decode(b)
	if err != nil || len(m.Payloads) != 2 || m.Payloads[0].(*Unknown).PayloadType != 99 {
		t.Fatalf("non-critical unknown: %v", err)
	}
	// A known payload with the critical bit is simply understood.
	b = build(h, rawPayload{typ: PayloadNonce, flags: 0x80, body: nonce})
	if _, err := Decode(b); err != nil {
		t.Errorf("critical known payload: %v", err)
	}
}

func TestHeader(t *testing.T) {
	h := Header{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Exchange: IKEAuth, Flags: FlagInitiator | FlagResponse, MessageID: 7}
	b, _ := (&Message{Header: h}).Encode(nil)
	got, err := DecodeHeader(b)
	if err != nil || got.SPIi != h.SPIi || got.SPIr != h.SPIr || got.MessageID != 7 || !got.IsResponse() || !got.IsInitiator() || got.Exchange != IKEAuth {
		t.Fatalf("%+v %v", got, err)
	}
	b[17] = 0x30
	_, err = DecodeHeader(b)
	var mv *MajorVersionError
	if !errors.As(err, &mv) {
		t.Fatalf("version 3: %v", err)
	}
	if n, _ := NotifyFor(err); n != InvalidMajorVersion {
		t.Errorf("maps to %s", n)
	}
	b[17] = 0x21 // a higher minor version is fine
	if _, err := DecodeHeader(b); err != nil {
		t.Errorf("minor version 1: %v", err)
	}
	if !strings.Contains(h.String(), "IKE_AUTH response 7") {
		t.Errorf("String %q", h)
	}
}

func TestNonESPMarker(t *testing.T) {
	msg := []byte("ike message")
	d := AddNonESPMarker(msg)
	got, err := StripNonESPMarker(d)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatal(err)
	}
	for _, esp := range [][]byte{{0xff}, {0, 0, 0, 1, 2}, {0xc0, 1, 0, 1}} {
		if _, err := StripNonESPMarker(esp); !errors.Is(err, ErrESP) {
			t.Errorf("%x: %v", esp, err)
		}
	}
}

func TestTooManyPayloads(t *testing.T) {
	h := Header{Exchange: Informational}
	var ps []rawPayload
	for i := 0; i < MaxPayloads+1; i++ {
		ps = append(ps, rawPayload{typ: PayloadVendorID})
	}
	_, err := Decode(build(h, ps...))
	if err == nil || !strings.Contains(err.Error(), "more than 128 payloads") {
		t.Fatalf("got %v", err)
	}
}

func TestSKInsideSK(t *testing.T) {
	inner := []byte{0, 0, 0, 8, 1, 2, 3, 4}
	_, err := DecodeInner(inner, PayloadSK)
	if err == nil || err.Error() != "ike: encrypted payload 1 (SK): encrypted payload inside an encrypted payload" {
		t.Fatalf("got %v", err)
	}
}

func TestDecryptErrors(t *testing.T) {
	out, in := testCiphers(t, "aes256-sha256-ecp256")
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: Informational, Flags: FlagInitiator}, Inner: []Payload{&Delete{Protocol: suite.ProtocolIKE}}}
	b, _ := m.Encode(out)
	b[len(b)-1] ^= 1
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Decrypt(in)
	if !errors.Is(err, suite.ErrICV) {
		t.Fatalf("tampered ICV: %v", err)
	}
	// Cleartext message: no SK.
	plain, _ := (&Message{Header: m.Header}).Encode(nil)
	d, _ = Decode(plain)
	if err := d.Decrypt(in); err == nil {
		t.Error("decrypting a message without SK")
	}
	if _, err := (&Message{Header: m.Header, Inner: m.Inner}).Encode(nil); err == nil {
		t.Error("inner payloads encoded without a cipher")
	}
}

func TestEmptyInformational(t *testing.T) {
	out, in := testCiphers(t, "chacha20poly1305-prfsha256-x25519")
	m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: Informational, Flags: FlagInitiator, MessageID: 3}}
	b, err := m.Encode(out)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil || d.Encrypted == nil || d.Encrypted.NextPayload != PayloadNone {
		t.Fatalf("%v %+v", err, d)
	}
	if err := d.Decrypt(in); err != nil || len(d.Inner) != 0 {
		t.Fatalf("%v %v", err, d.Inner)
	}
	if err := Validate(d); err != nil {
		t.Error(err)
	}
}

func TestFragments(t *testing.T) {
	for _, ike := range []string{"aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp384", "chacha20poly1305-prfsha256-x25519"} {
		out, in := testCiphers(t, ike)
		inner := []Payload{
			&ID{IDType: IDFQDN, Data: []byte("a.spugate.test")},
			&Cert{Encoding: CertX509Signature, Data: bytes.Repeat([]byte{0x42}, 1500)},
			&Auth{Method: AuthRSASig, Data: bytes.Repeat([]byte{0x17}, 384)},
			&Notify{NotifyType: InitialContact},
		}
		m := &Message{Header: Header{SPIi: 1, SPIr: 2, Exchange: IKEAuth, Flags: FlagInitiator, MessageID: 1}, Inner: inner}
		for _, maxLen := range []int{300, 576, 1228} {
			dgrams, err := m.EncodeFragments(out, maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if len(dgrams) < 2 {
				t.Fatalf("%s/%d: %d fragments", ike, maxLen, len(dgrams))
			}
			var frags []*Fragment
			for i, d := range dgrams {
				if len(d) > maxLen {
					t.Fatalf("%s/%d: fragment %d of %d bytes", ike, maxLen, i+1, len(d))
				}
				dm, err := Decode(d)
				if err != nil {
					t.Fatal(err)
				}
				e := dm.Encrypted
				if !e.Fragment || int(e.FragmentNumber) != i+1 || int(e.TotalFragments) != len(dgrams) {
					t.Fatalf("fragment %d: %+v", i+1, e)
				}
				if (i == 0) != (e.NextPayload == PayloadIDi) {
					t.Fatalf("fragment %d: next payload %s", i+1, e.NextPayload)
				}
				if i == 0 {
					// A whole message cannot be decrypted as a fragment.
					if err := dm.Decrypt(in); err == nil {
						t.Fatal("Decrypt accepted a fragment")
					}
				}
				f, err := dm.DecryptFragment(in)
				if err != nil {
					t.Fatal(err)
				}
				frags = append(frags, f)
			}
			rand.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
			got, err := Reassemble(frags)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(inner) {
				t.Fatalf("%s/%d: %d payloads reassembled", ike, maxLen, len(got))
			}
			for i := range got {
				if !reflect.DeepEqual(normalize(got[i]), normalize(inner[i])) {
					t.Fatalf("%s/%d: reassembled payload %d differs", ike, maxLen, i+1)
				}
			}
			if _, err := Reassemble(frags[1:]); err == nil {
				t.Error("reassembly with a missing fragment")
			}
			dup := append(append([]*Fragment(nil), frags...), frags[0])
			if _, err := Reassemble(dup); err == nil {
				t.Error("reassembly with a duplicate fragment")
			}
			// The Fragment Number is authenticated: changing it breaks the ICV.
			d := append([]byte(nil), dgrams[1]...)
			d[HeaderLen+5] ^= 3
			dm, _ := Decode(d)
			if dm != nil {
				if _, err := dm.DecryptFragment(in); err == nil {
					t.Error("fragment with a changed number authenticated")
				}
			}
		}
		if _, err := m.EncodeFragments(out, 60); err == nil {
			t.Error("fragment size with no room accepted")
		}
	}
}

func TestValidate(t *testing.T) {
	nonce := &Nonce{Data: bytes.Repeat([]byte{1}, 32)}
	ke := &KE{Group: suite.GroupCurve25519, Data: make([]byte, 32)}
	sa := &SA{Proposals: mustIKE(t, "aes128gcm16-prfsha256-x25519")}
	ts := &TS{Selectors: []ipsec.Selector{{ToPort: 65535, From: netip.MustParseAddr("198.18.0.0"), To: netip.MustParseAddr("198.18.255.255")}}}
	tsr := &TS{Responder: true, Selectors: ts.Selectors}
	cookie := &Notify{NotifyType: Cookie, Data: []byte("cookie")}
	init := Header{Exchange: IKESAInit, Flags: FlagInitiator}
	initR := Header{Exchange: IKESAInit, Flags: FlagResponse}
	auth := Header{Exchange: IKEAuth, Flags: FlagInitiator}
	child := Header{Exchange: CreateChildSA, Flags: FlagInitiator}
	childR := Header{Exchange: CreateChildSA, Flags: FlagResponse}
	enc := &Encrypted{}
	cases := []struct {
		name string
		m    *Message
		want string // "" for valid
	}{
		{"init request", &Message{Header: init, Payloads: []Payload{sa, ke, nonce, &Notify{NotifyType: NATDetectionSourceIP}}}, ""},
		{"init request with cookie first", &Message{Header: init, Payloads: []Payload{cookie, sa, ke, nonce}}, ""},
		{"init request cookie second", &Message{Header: init, Payloads: []Payload{sa, cookie, ke, nonce}}, "ike: IKE_SA_INIT request: N(COOKIE) is payload 2, must be the first"},
		{"init request without KE", &Message{Header: init, Payloads: []Payload{sa, nonce}}, "ike: IKE_SA_INIT request: KE payload missing"},
		{"init request two KE", &Message{Header: init, Payloads: []Payload{sa, ke, ke, nonce}}, "ike: IKE_SA_INIT request: 2 KE payloads, at most 1"},
		{"init request with SK", &Message{Header: init, Payloads: []Payload{sa, ke, nonce}, Encrypted: enc}, "ike: IKE_SA_INIT request: SK payload not allowed"},
		{"init request with AUTH", &Message{Header: init, Payloads: []Payload{sa, ke, nonce, &Auth{}}}, "ike: IKE_SA_INIT request: AUTH payload not allowed"},
		{"init request notify only", &Message{Header: init, Payloads: []Payload{cookie}}, "ike: IKE_SA_INIT request: SA payload missing"},
		{"init response cookie", &Message{Header: initR, Payloads: []Payload{cookie}}, ""},
		{"init response INVALID_KE", &Message{Header: initR, Payloads: []Payload{&Notify{NotifyType: InvalidKEPayload, Data: []byte{0, 19}}}}, ""},
		{"init response partial", &Message{Header: initR, Payloads: []Payload{sa, nonce}}, "ike: IKE_SA_INIT response: KE payload missing"},
		{"init response with CERTREQ", &Message{Header: initR, Payloads: []Payload{sa, ke, nonce, &CertReq{}}}, ""},
		{"auth request", &Message{Header: auth, Encrypted: enc, Inner: []Payload{&ID{}, &Auth{}, sa, ts, tsr}}, ""},
		{"auth childless", &Message{Header: auth, Encrypted: enc, Inner: []Payload{&ID{}, &Auth{}}}, ""},
		{"auth SA without TS", &Message{Header: auth, Encrypted: enc, Inner: []Payload{&ID{}, &Auth{}, sa}}, "ike: IKE_AUTH request: SA without TSi, TSr"},
		{"auth two IDi", &Message{Header: auth, Encrypted: enc, Inner: []Payload{&ID{}, &ID{}, &Auth{}}}, "ike: IKE_AUTH request: 2 IDi payloads, at most 1"},
		{"auth in clear", &Message{Header: auth, Payloads: []Payload{&ID{}, &Auth{}}, Encrypted: enc}, "ike: IKE_AUTH request: IDi payload outside SK"},
		{"auth without SK", &Message{Header: auth}, "ike: IKE_AUTH request: no SK payload"},
		{"auth with KE", &Message{Header: auth, Encrypted: enc, Inner: []Payload{&ID{}, &Auth{}, ke}}, "ike: IKE_AUTH request: KE payload not allowed"},
		{"create child", &Message{Header: child, Encrypted: enc, Inner: []Payload{&Notify{NotifyType: RekeySA}, sa, nonce, ke, ts, tsr}}, ""},
		{"rekey IKE", &Message{Header: child, Encrypted: enc, Inner: []Payload{sa, nonce, ke}}, ""},
		{"create child without nonce", &Message{Header: child, Encrypted: enc, Inner: []Payload{sa, ts, tsr}}, "ike: CREATE_CHILD_SA request: Nonce payload missing"},
		{"create child TSi only", &Message{Header: child, Encrypted: enc, Inner: []Payload{sa, nonce, ts}}, "ike: CREATE_CHILD_SA request: TSi without TSr"},
		{"create child error response", &Message{Header: childR, Encrypted: enc, Inner: []Payload{&Notify{NotifyType: NoProposalChosen}}}, ""},
		{"informational delete", &Message{Header: Header{Exchange: Informational}, Encrypted: enc, Inner: []Payload{&Delete{Protocol: suite.ProtocolIKE}}}, ""},
		{"informational SA", &Message{Header: Header{Exchange: Informational}, Encrypted: enc, Inner: []Payload{sa}}, "ike: INFORMATIONAL request: SA payload not allowed"},
		{"unknown exchange", &Message{Header: Header{Exchange: 99}}, "ike: EXCHANGE_99 request: exchange type not supported"},
		{"unknown payload skipped", &Message{Header: init, Payloads: []Payload{sa, ke, nonce, &Unknown{PayloadType: 99}}}, ""},
	}
	for _, c := range cases {
		err := Validate(c.m)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
	}
}

func TestNATDetectionHash(t *testing.T) {
	ap := netip.MustParseAddrPort("198.18.0.1:500")
	var b []byte
	b = binary.BigEndian.AppendUint64(b, 0x1122334455667788)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(b, 198, 18, 0, 1, 0x01, 0xf4)
	if NATDetectionHash(0x1122334455667788, 0, ap) != sha1.Sum(b) {
		t.Error("IPv4")
	}
	// An IPv4-mapped address hashes as the IPv4 address it is.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), 500)
	if NATDetectionHash(0x1122334455667788, 0, mapped) != sha1.Sum(b) {
		t.Error("IPv4-mapped")
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:4500")
	a := v6.Addr().As16()
	b = append(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 1), 2), a[:]...)
	b = append(b, 0x11, 0x94)
	if NATDetectionHash(1, 2, v6) != sha1.Sum(b) {
		t.Error("IPv6")
	}
}

func TestIDBody(t *testing.T) {
	id := &ID{IDType: IDFQDN, Data: []byte("x.test")}
	if !bytes.Equal(id.Body(), append([]byte{2, 0, 0, 0}, "x.test"...)) {
		t.Errorf("%x", id.Body())
	}
	if id.String() != "x.test" || NewID(false, netip.MustParseAddr("198.18.0.1")).String() != "198.18.0.1" {
		t.Error("String")
	}
}

func TestEncodeErrors(t *testing.T) {
	h := Header{Exchange: IKEAuth}
	bad := []Payload{
		&SA{},
		&TS{},
		&TS{Selectors: []ipsec.Selector{{From: netip.MustParseAddr("198.18.0.1"), To: netip.MustParseAddr("2001:db8::1")}}},
		&Delete{Protocol: suite.ProtocolIKE, SPIs: []uint32{1}},
		&VendorID{Data: make([]byte, 70000)},
	}
	for _, p := range bad {
		if _, err := (&Message{Header: h, Payloads: []Payload{p}}).Encode(nil); err == nil {
			t.Errorf("%T %+v encoded", p, p)
		}
	}
}

// hostile returns 64 KiB messages built to cost the decoder the most.
func hostile(t testing.TB) map[string][]byte {
	h := Header{SPIi: 1, Exchange: IKESAInit, Flags: FlagInitiator}
	out := map[string][]byte{}
	var tiny []rawPayload
	for i := 0; i < 16000; i++ {
		tiny = append(tiny, rawPayload{typ: PayloadVendorID})
	}
	out["16000 empty payloads"] = build(h, tiny...)
	// One SA payload with as many 8-byte transforms as fit.
	var sa []byte
	for p := 0; p < 32; p++ {
		nt := 250
		last := byte(2)
		if p == 31 {
			last = 0
		}
		sa = append(sa, last, 0, byte((8+nt*8)>>8), byte(8+nt*8), byte(p+1), 1, 0, byte(nt))
		for i := 0; i < nt; i++ {
			l := byte(3)
			if i == nt-1 {
				l = 0
			}
			sa = append(sa, l, 0, 0, 8, 1, 0, 0, 12)
		}
	}
	out["SA with 8000 transforms"] = build(h, rawPayload{typ: PayloadSA, body: sa})
	cp := []byte{1, 0, 0, 0}
	for len(cp) < 65000 {
		cp = append(cp, 0, 1, 0, 0)
	}
	out["CP with 16000 attributes"] = build(Header{Exchange: Informational}, rawPayload{typ: PayloadCP, body: cp})
	return out
}

func TestHostileRejectedCheaply(t *testing.T) {
	for name, b := range hostile(t) {
		allocs := testing.AllocsPerRun(10, func() {
			if _, err := Decode(b); err == nil {
				t.Fatalf("%s accepted", name)
			}
		})
		// The limits stop the decoder early: a few hundred allocations at
		// most, whatever the message size.
		if allocs > 1000 {
			t.Errorf("%s: %.0f allocations to reject", name, allocs)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	init := charonSeedsB(b)[0]
	cases := map[string][]byte{"charon IKE_SA_INIT": init}
	for k, v := range hostile(b) {
		cases["hostile "+k] = v
	}
	for name, msg := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				Decode(msg)
			}
		})
	}
}

func charonSeedsB(b *testing.B) [][]byte {
	data, err := os.ReadFile("testdata/charon/multi/packets.txt")
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		d, _ := hex.DecodeString(f[2])
		out = append(out, d)
	}
	return out
}

// zeroSealer seals by appending zeros, so that only Encode's own
// allocations are counted.
type zeroSealer struct{}

func (zeroSealer) SealedLen(n int) int { return n + 1 + 16 }
func (zeroSealer) Seal(msg, plain []byte) ([]byte, error) {
	return append(msg, make([]byte, len(plain)+1+16)...), nil
}

// TestEncodeAllocs guards Encode's buffers: one allocation, the message,
// whatever the payloads (they are encoded into pooled scratch).
func TestEncodeAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts")
	}
	h := Header{SPIi: 1, SPIr: 2, Exchange: IKEAuth, Flags: FlagInitiator, MessageID: 1}
	init := &Message{Header: h, Payloads: []Payload{&Nonce{Data: make([]byte, 32)}, &VendorID{Data: make([]byte, 16)}}}
	auth := &Message{Header: h, Inner: []Payload{&Nonce{Data: make([]byte, 32)}, &VendorID{Data: make([]byte, 600)}}}
	init.Encode(nil)
	auth.Encode(zeroSealer{})
	if n := testing.AllocsPerRun(100, func() { init.Encode(nil) }); n != 1 {
		t.Errorf("Encode without SK allocates %v times, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { auth.Encode(zeroSealer{}) }); n != 1 {
		t.Errorf("Encode with SK allocates %v times, want 1", n)
	}
}

// TestDecodeAllocs guards the payload slice of Decode: made at its size,
// so a message of n payloads allocates n payloads, the slice and the
// Message.
func TestDecodeAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts")
	}
	h := Header{SPIi: 1, SPIr: 2, Exchange: IKESAInit, Flags: FlagInitiator}
	m := &Message{Header: h, Payloads: []Payload{&Nonce{Data: make([]byte, 32)}, &VendorID{Data: make([]byte, 16)},
		&Notify{NotifyType: NATDetectionSourceIP, Data: make([]byte, 20)}, &Notify{NotifyType: NATDetectionDestinationIP, Data: make([]byte, 20)},
		&Notify{NotifyType: IKEv2FragmentationSupported}}}
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { Decode(b) }); n != 5+2 {
		t.Errorf("Decode of 5 payloads allocates %v times, want 7", n)
	}
}
