package suite

import (
	"fmt"
	"strings"
	"testing"
)

// TestNames pins the text of the enums' String methods, the unknown-value
// fallbacks included: logs and the proposal strings the tests compare with
// strongSwan's use them.
func TestNames(t *testing.T) {
	for _, c := range []struct {
		v    fmt.Stringer
		want string
	}{
		{ProtocolNone, "NONE"}, {ProtocolIKE, "IKE"}, {ProtocolAH, "AH"}, {ProtocolESP, "ESP"}, {Protocol(9), "PROTO_9"},
		{TransformEncr, "ENCR"}, {TransformPRF, "PRF"}, {TransformInteg, "INTEG"}, {TransformKE, "KE"},
		{TransformESN, "ESN"}, {TransformType(0), "TRANSFORM_0"}, {TransformType(6), "TRANSFORM_6"},
		{ESNNo, "NO_EXT_SEQ"}, {ESNYes, "EXT_SEQ"}, {ESNID(2), "ESN_2"},
		{EncrAESGCM16, "AES_GCM_16"}, {EncrChaCha20Poly1305, "CHACHA20_POLY1305"}, {EncrID(1), "ENCR_1"},
		{PRFHMACSHA256, "PRF_HMAC_SHA2_256"}, {PRFID(0), "PRF_0"},
		{IntegNone, "NONE"}, {IntegHMACSHA256128, "HMAC_SHA2_256_128"}, {IntegID(99), "INTEG_99"},
		{GroupNone, "NONE"}, {GroupCurve25519, "CURVE_25519"}, {GroupID(3), "KE_3"},
		{Transform{Type: TransformEncr, ID: uint16(EncrAESCBC), KeyLength: 256}, "AES_CBC_256"},
		{Transform{Type: TransformType(7), ID: 3}, "TRANSFORM_7_3"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%T(%v): String() = %q, want %q", c.v, c.v, got, c.want)
		}
	}
}

// A peer's offer of hundreds of transforms is cut in logs and errors.
func TestFormatProposalsIsBounded(t *testing.T) {
	p := Proposal{Number: 1, Protocol: ProtocolIKE}
	for i := range 500 {
		p.Transforms = append(p.Transforms, Transform{Type: TransformEncr, ID: uint16(1000 + i)})
	}
	got := FormatProposals([]Proposal{p, p})
	if len(got) > maxFormatted+64 || !strings.HasSuffix(got, "cut)") {
		t.Errorf("%d bytes: %.80s...%s", len(got), got, got[max(0, len(got)-40):])
	}
	short := FormatProposals([]Proposal{{Number: 1, Protocol: ProtocolESP, Transforms: []Transform{{Type: TransformEncr, ID: 20, KeyLength: 128}}}})
	if strings.Contains(short, "cut") {
		t.Errorf("a short offer was cut: %s", short)
	}
}

// CheckPeerKE refuses what SharedSecret would, without a key pair.
func TestCheckPeerKE(t *testing.T) {
	good := func(g GroupID) []byte {
		k, err := NewKeyExchange(g)
		if err != nil {
			t.Fatal(err)
		}
		return k.PublicKey()
	}
	one := make([]byte, 256)
	one[255] = 1
	pMinus1 := modp2048.FillBytes(make([]byte, 256))
	pMinus1[255]--
	offCurve := good(GroupECP256)
	offCurve[63] ^= 1
	for _, c := range []struct {
		name string
		g    GroupID
		data []byte
		ok   bool
	}{
		{"modp2048", GroupMODP2048, good(GroupMODP2048), true},
		{"modp2048 short", GroupMODP2048, make([]byte, 255), false},
		{"modp2048 1", GroupMODP2048, one, false},
		{"modp2048 p-1", GroupMODP2048, pMinus1, false},
		{"ecp256", GroupECP256, good(GroupECP256), true},
		{"ecp256 off the curve", GroupECP256, offCurve, false},
		{"ecp384 long", GroupECP384, make([]byte, 97), false},
		{"x25519", GroupCurve25519, good(GroupCurve25519), true},
		{"x25519 short", GroupCurve25519, make([]byte, 31), false},
		{"unsupported", GroupID(1), make([]byte, 96), false},
	} {
		err := CheckPeerKE(c.g, c.data)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
