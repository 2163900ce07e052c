package suite

import (
	"errors"
	"strings"
	"testing"
)

func TestParseIKE(t *testing.T) {
	cases := []struct{ in, want string }{
		{"aes128gcm16-prfsha256-x25519", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519"},
		{"aes256gcm16-prfsha384-ecp384", "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384"},
		// sha256 with aes-cbc is integrity HMAC-SHA2-256-128 and PRF HMAC-SHA2-256.
		{"aes256-sha256-modp2048", "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"},
		{"chacha20poly1305-prfsha256-x25519", "IKE:CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519"},
		{"aes128-sha256-ecp256", "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256"},
		{"aes-sha1-ecp521", "IKE:AES_CBC_128/HMAC_SHA1_96/PRF_HMAC_SHA1/ECP_521"},
		// An explicit PRF is kept; the order of kinds does not matter.
		{"ecp256-sha384-prfsha256-aes192", "IKE:AES_CBC_192/HMAC_SHA2_384_192/PRF_HMAC_SHA2_256/ECP_256"},
		// Several of a kind, in order; PRFs follow the integrity order.
		{"aes256-aes128-sha384-sha256-modp2048-x25519",
			"IKE:AES_CBC_256/AES_CBC_128/HMAC_SHA2_384_192/HMAC_SHA2_256_128/PRF_HMAC_SHA2_384/PRF_HMAC_SHA2_256/MODP_2048/CURVE_25519"},
		// Integrity next to an AEAD is dropped, as strongSwan does.
		{"aes128gcm16-sha256-prfsha256-ecp256", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256"},
		{"aes128gcm-prfsha256-curve25519", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519"},
		{" AES256GCM128 - PRFSHA512 - ECP521 ", "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_512/ECP_521"},
		{"aes128gcm16-prfsha256-x25519-none", "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519"},
	}
	for _, c := range cases {
		ps, err := ParseIKE(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if len(ps) != 1 || ps[0].String() != c.want || ps[0].Number != 1 {
			t.Errorf("%q: got %s, want %s", c.in, FormatProposals(ps), c.want)
		}
	}
}

func TestParseESP(t *testing.T) {
	cases := []struct{ in, want string }{
		{"aes128gcm16", "ESP:AES_GCM_16_128/NO_EXT_SEQ"},
		{"aes256gcm16", "ESP:AES_GCM_16_256/NO_EXT_SEQ"},
		{"chacha20poly1305", "ESP:CHACHA20_POLY1305/NO_EXT_SEQ"},
		{"aes256-sha256", "ESP:AES_CBC_256/HMAC_SHA2_256_128/NO_EXT_SEQ"},
		{"aes128-sha256", "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ"},
		{"aes128gcm16-x25519", "ESP:AES_GCM_16_128/CURVE_25519/NO_EXT_SEQ"},
		{"aes128gcm16-esn", "ESP:AES_GCM_16_128/EXT_SEQ"},
		{"aes128gcm16-esn-noesn", "ESP:AES_GCM_16_128/EXT_SEQ/NO_EXT_SEQ"},
		{"aes128gcm16-x25519-modpnone", "ESP:AES_GCM_16_128/CURVE_25519/NONE/NO_EXT_SEQ"},
		// PRFs mean nothing for ESP and are dropped.
		{"aes128gcm16-prfsha256", "ESP:AES_GCM_16_128/NO_EXT_SEQ"},
	}
	for _, c := range cases {
		ps, err := ParseESP(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if len(ps) != 1 || ps[0].String() != c.want {
			t.Errorf("%q: got %s, want %s", c.in, FormatProposals(ps), c.want)
		}
	}
}

func TestParseLists(t *testing.T) {
	ps, err := ParseIKE("aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048")
	if err != nil || len(ps) != 2 || ps[0].Number != 1 || ps[1].Number != 2 {
		t.Fatalf("%s, %v", FormatProposals(ps), err)
	}
	def, err := ParseIKE("default")
	if err != nil || len(def) != 2 {
		t.Fatalf("default: %s, %v", FormatProposals(def), err)
	}
	mixed, err := ParseIKE("aes128-sha256-ecp256,default")
	if err != nil || len(mixed) != 3 || mixed[2].Number != 3 {
		t.Fatalf("with default: %s, %v", FormatProposals(mixed), err)
	}
	esp, err := ParseESP("default")
	if err != nil || len(esp) != 2 {
		t.Fatalf("ESP default: %v", err)
	}
	// Every algorithm of the default proposals is implemented: each
	// combination of one transform per type passes Algorithms.
	for _, p := range append(def, esp...) {
		combos := []Proposal{{Protocol: p.Protocol}}
		for _, typ := range typeOrder {
			ts := p.Of(typ)
			if len(ts) == 0 {
				continue
			}
			var next []Proposal
			for _, c := range combos {
				for _, tr := range ts {
					n := c.Clone()
					n.Transforms = append(n.Transforms, tr)
					next = append(next, n)
				}
			}
			combos = next
		}
		for _, c := range combos {
			if _, err := c.Algorithms(); err != nil {
				t.Errorf("default %s: %v", c, err)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		proto    Protocol
		in, want string
	}{
		{ProtocolIKE, "aes-gcm", `proposal "aes-gcm": unknown algorithm "gcm"`},
		{ProtocolIKE, "aes128gcm16-x25519", `proposal "aes128gcm16-x25519": a PRF algorithm is mandatory in IKE proposals`},
		{ProtocolIKE, "aes128-sha256", `proposal "aes128-sha256": a DH group is mandatory in IKE proposals`},
		{ProtocolIKE, "aes128-prfsha256-x25519", `integrity algorithm is mandatory`},
		{ProtocolIKE, "sha256-x25519", `an encryption algorithm is mandatory in IKE proposals`},
		{ProtocolIKE, "aes128-aes128gcm16-sha256-x25519", `classic and combined-mode (AEAD)`},
		{ProtocolIKE, "3des-sha1-modp1024", `algorithm "3des" not supported for IKE`},
		{ProtocolIKE, "aes128-sha256-modp1024", `algorithm "modp1024" not supported for IKE`},
		{ProtocolIKE, "aes128ccm16-prfsha256-x25519", `algorithm "aes128ccm16" not supported`},
		{ProtocolIKE, "aes128-sha256-x25519-esn", `"esn" is not an IKE algorithm`},
		{ProtocolIKE, "aes128-sha256-x25519,", `empty proposal`},
		{ProtocolESP, "aes192gcm16", `algorithm "aes192gcm16" not supported for ESP`},
		{ProtocolESP, "aes128-sha1", `algorithm "sha1" not supported for ESP`},
		{ProtocolESP, "aes128", `integrity algorithm is required`},
		{ProtocolESP, "aes128gcm16-ecp192", `algorithm "ecp192" not supported for ESP`},
	}
	for _, c := range cases {
		_, err := ParseProposals(c.proto, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q: got %v, want %q", c.proto, c.in, err, c.want)
		}
	}
}

func mustIKE(t *testing.T, s string) []Proposal {
	t.Helper()
	ps, err := ParseIKE(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func mustESP(t *testing.T, s string) []Proposal {
	t.Helper()
	ps, err := ParseESP(s)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestSelect(t *testing.T) {
	ours := mustIKE(t, "aes256gcm16-prfsha384-ecp384,aes128-sha256-x25519-ecp256")
	peer := mustIKE(t, "aes128-aes256-sha256-ecp256-x25519,aes256gcm16-aes128gcm16-prfsha256-prfsha384-x25519-ecp384")
	// Ours first (strongSwan's default): our first proposal matches the
	// peer's second.
	sel, err := Select(ours, peer, SelectPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if sel.String() != "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384" || sel.Number != 2 {
		t.Errorf("ours first: %s (#%d)", sel, sel.Number)
	}
	// Peer first: the peer's first proposal, with the peer's transform order.
	sel, _ = Select(ours, peer, SelectPolicy{PreferPeer: true})
	if sel.String() != "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/ECP_256" || sel.Number != 1 {
		t.Errorf("peer first: %s (#%d)", sel, sel.Number)
	}
	// With the KE the peer sent (x25519), a proposal allowing it wins over
	// our preferred group, avoiding INVALID_KE_PAYLOAD.
	sel, _ = Select(ours, peer, SelectPolicy{KEGroup: GroupCurve25519})
	if sel.String() != "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519" {
		t.Errorf("KE group preferred: %s", sel)
	}
	// A KE group no proposal allows falls back to the normal choice.
	sel, _ = Select(ours, peer, SelectPolicy{KEGroup: GroupMODP2048})
	if sel.String() != "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384" {
		t.Errorf("KE group fallback: %s", sel)
	}
	a, err := sel.Algorithms()
	if err != nil || a.Encr != EncrAESGCM16 || a.EncrKeyBits != 256 || a.PRF != PRFHMACSHA384 || a.Group != GroupECP384 {
		t.Errorf("Algorithms: %+v %v", a, err)
	}

	_, err = Select(ours, mustIKE(t, "aes128-sha1-ecp521"), SelectPolicy{})
	if !errors.Is(err, ErrNoProposalChosen) {
		t.Errorf("no match: %v", err)
	}
}

func TestSelectESP(t *testing.T) {
	ours := mustESP(t, "aes128gcm16-aes256gcm16,aes256-sha256")
	peer := mustESP(t, "aes256-sha256,aes256gcm16")
	peer[0].SPI = []byte{1, 2, 3, 4}
	peer[1].SPI = []byte{5, 6, 7, 8}
	sel, err := Select(ours, peer, SelectPolicy{})
	if err != nil || sel.String() != "ESP:AES_GCM_16_256/NO_EXT_SEQ" || string(sel.SPI) != "\x05\x06\x07\x08" || sel.Number != 2 {
		t.Fatalf("%s %x %v", sel, sel.SPI, err)
	}
	// PFS: a peer offering a group and NONE matches us without PFS; a peer
	// requiring a group does not.
	withNone := mustESP(t, "aes128gcm16-x25519-none")
	if sel, err := Select(ours, withNone, SelectPolicy{}); err != nil || len(sel.Of(TransformKE)) != 0 {
		t.Errorf("optional PFS: %s %v", sel, err)
	}
	if _, err := Select(ours, mustESP(t, "aes128gcm16-x25519"), SelectPolicy{}); err == nil {
		t.Error("required PFS matched a proposal without PFS")
	}
	pfs := mustESP(t, "aes128gcm16-ecp256-x25519")
	if sel, err := Select(pfs, mustESP(t, "aes128gcm16-x25519"), SelectPolicy{}); err != nil || sel.String() != "ESP:AES_GCM_16_128/CURVE_25519/NO_EXT_SEQ" {
		t.Errorf("PFS: %s %v", sel, err)
	}
	// ESN must agree.
	if _, err := Select(ours, mustESP(t, "aes128gcm16-esn"), SelectPolicy{}); err == nil {
		t.Error("ESN-only peer matched no-ESN config")
	}
	// IKE proposals never match ESP ones.
	if _, err := Select(ours, mustIKE(t, "aes128gcm16-prfsha256-x25519"), SelectPolicy{}); err == nil {
		t.Error("protocol mismatch matched")
	}
}

func TestSelectRejectsUnknown(t *testing.T) {
	ours := mustIKE(t, "aes128-sha256-ecp256")
	peer := mustIKE(t, "aes128-sha256-ecp256")
	// A transform with an attribute we do not understand never matches.
	peer[0].Transforms[0].Attributes = []Attribute{{Type: 99, TV: true, Value: []byte{0, 1}}}
	if _, err := Select(ours, peer, SelectPolicy{}); err == nil {
		t.Error("transform with unknown attribute matched")
	}
	// A proposal with an unknown transform type is unacceptable.
	peer = mustIKE(t, "aes128-sha256-ecp256")
	peer[0].Transforms = append(peer[0].Transforms, Transform{Type: 9, ID: 1})
	if _, err := Select(ours, peer, SelectPolicy{}); err == nil {
		t.Error("proposal with unknown transform type matched")
	}
	// Key lengths must agree.
	peer = mustIKE(t, "aes256-sha256-ecp256")
	if _, err := Select(ours, peer, SelectPolicy{}); err == nil {
		t.Error("AES-128 matched AES-256")
	}
}

func TestCheckResponse(t *testing.T) {
	offered := mustIKE(t, "aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-x25519,aes256-sha256-modp2048")
	good := []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
		{Type: TransformEncr, ID: uint16(EncrAESGCM16), KeyLength: 128},
		{Type: TransformPRF, ID: uint16(PRFHMACSHA256)},
		{Type: TransformKE, ID: uint16(GroupCurve25519)},
	}}}
	if c, err := CheckResponse(offered, good); err != nil || c.String() != "IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519" {
		t.Errorf("good answer: %s %v", c, err)
	}
	lie := func(mod func(p *Proposal)) []Proposal {
		p := good[0].Clone()
		mod(&p)
		return []Proposal{p}
	}
	bad := map[string][]Proposal{
		"two proposals":      append(append([]Proposal(nil), good...), good...),
		"no proposal":        nil,
		"unoffered number":   lie(func(p *Proposal) { p.Number = 3 }),
		"wrong number":       lie(func(p *Proposal) { p.Number = 2 }),
		"unoffered group":    lie(func(p *Proposal) { p.Transforms[2].ID = uint16(GroupECP256) }),
		"unoffered keylen":   lie(func(p *Proposal) { p.Transforms[0].KeyLength = 192 }),
		"missing KE":         lie(func(p *Proposal) { p.Transforms = p.Transforms[:2] }),
		"two ENCR":           lie(func(p *Proposal) { p.Transforms = append(p.Transforms, p.Transforms[0]) }),
		"extra INTEG":        lie(func(p *Proposal) { p.Transforms = append(p.Transforms, Transform{Type: TransformInteg, ID: 12}) }),
		"SPI in IKE_SA_INIT": lie(func(p *Proposal) { p.SPI = []byte{1, 2, 3, 4, 5, 6, 7, 8} }),
		"ESP answer":         lie(func(p *Proposal) { p.Protocol = ProtocolESP }),
	}
	for name, resp := range bad {
		if _, err := CheckResponse(offered, resp); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// ESP: the responder's 4-byte SPI is required and returned.
	esp := mustESP(t, "aes128gcm16")
	esp[0].SPI = []byte{1, 1, 1, 1}
	resp := []Proposal{{Number: 1, Protocol: ProtocolESP, SPI: []byte{9, 9, 9, 9}, Transforms: esp[0].Transforms}}
	if c, err := CheckResponse(esp, resp); err != nil || string(c.SPI) != "\x09\x09\x09\x09" {
		t.Errorf("ESP: %v", err)
	}
	resp[0].SPI = nil
	if _, err := CheckResponse(esp, resp); err == nil {
		t.Error("ESP answer without SPI accepted")
	}
}

func TestSelectSkipKE(t *testing.T) {
	ours := mustESP(t, "aes128gcm16-x25519")
	peer := WithoutKE(mustESP(t, "aes128gcm16-x25519"))
	if len(peer[0].Of(TransformKE)) != 0 {
		t.Fatal("WithoutKE kept a KE transform")
	}
	if _, err := Select(ours, peer, SelectPolicy{}); err == nil {
		t.Error("PFS proposal matched one without KE outside IKE_AUTH")
	}
	sel, err := Select(ours, peer, SelectPolicy{SkipKE: true})
	if err != nil || sel.String() != "ESP:AES_GCM_16_128/NO_EXT_SEQ" {
		t.Errorf("IKE_AUTH Child SA: %s %v", sel, err)
	}
}
