package suite

import (
	"fmt"
	"strings"
)

// This file reads strongSwan's proposal syntax (swanctl.conf "proposals"
// and "esp_proposals"): algorithm keywords joined by '-' form one
// proposal, several algorithms of one kind are listed in order of
// preference, proposals are separated by ',' and "default" stands for the
// default proposals. The keywords and the completion rules follow
// strongSwan 5.9 (docs.strongswan.org, "Algorithm Proposals"):
//   - IKE: without a PRF keyword the PRF follows each integrity algorithm
//     (sha256 means HMAC-SHA2-256-128 integrity and PRF-HMAC-SHA2-256); an
//     AEAD therefore needs an explicit prf keyword. A key exchange method
//     is mandatory; "none" is dropped.
//   - ESP: PRFs are dropped; a key exchange method means PFS; without esn
//     or noesn, noesn is added.
//   - AEAD and classic encryption cannot share a proposal; integrity
//     algorithms next to an AEAD are dropped.
// Keywords strongSwan knows but this package does not implement (3des,
// modp1024, aes128ccm16...) are reported as not supported rather than
// unknown.

type keyword struct {
	t Transform
	// impl reports whether we implement the algorithm for IKE (ike) and
	// ESP (esp).
	ike, esp bool
}

var keywords = buildKeywords()

func buildKeywords() map[string]keyword {
	k := map[string]keyword{}
	add := func(name string, typ TransformType, id uint16, bits uint16, ike, esp bool) {
		k[name] = keyword{t: Transform{Type: typ, ID: id, KeyLength: bits}, ike: ike, esp: esp}
	}
	encr := func(name string, id EncrID, bits uint16, ike, esp bool) {
		add(name, TransformEncr, uint16(id), bits, ike, esp)
	}
	add("null", TransformEncr, uint16(EncrNull), 0, false, false)
	encr("des", EncrDES, 0, false, false)
	encr("3des", Encr3DES, 0, false, false)
	encr("cast128", EncrCAST, 128, false, false)
	encr("aes", EncrAESCBC, 128, true, true)
	for _, bits := range []uint16{128, 192, 256} {
		b := fmt.Sprint(bits)
		espOK := bits != 192
		encr("aes"+b, EncrAESCBC, bits, true, espOK)
		encr("aes"+b+"ctr", EncrAESCTR, bits, false, false)
		for _, icv := range []struct {
			names []string
			ccm   EncrID
			gcm   EncrID
		}{
			{[]string{"8", "64"}, EncrAESCCM8, EncrAESGCM8},
			{[]string{"12", "96"}, EncrAESCCM12, EncrAESGCM12},
			{[]string{"16", "128", ""}, EncrAESCCM16, EncrAESGCM16},
		} {
			for _, n := range icv.names {
				encr("aes"+b+"ccm"+n, icv.ccm, bits, false, false)
				gcmOK := icv.gcm == EncrAESGCM16
				encr("aes"+b+"gcm"+n, icv.gcm, bits, gcmOK, gcmOK && espOK)
			}
		}
		encr("aes"+b+"gmac", EncrNullAuthAESGMAC, bits, false, false)
		encr("camellia"+b, EncrCamelliaCBC, bits, false, false)
		encr("camellia"+b+"ctr", EncrCamelliaCTR, bits, false, false)
		for _, c := range []struct {
			names []string
			id    EncrID
		}{{[]string{"8", "64"}, EncrCamelliaCCM8}, {[]string{"12", "96"}, EncrCamelliaCCM12}, {[]string{"16", "128"}, EncrCamelliaCCM16}} {
			for _, n := range c.names {
				encr("camellia"+b+"ccm"+n, c.id, bits, false, false)
			}
		}
		encr("blowfish"+b, EncrBlowfish, bits, false, false)
		encr("serpent"+b, 0, bits, false, false)
		encr("twofish"+b, 0, bits, false, false)
	}
	encr("camellia", EncrCamelliaCBC, 128, false, false)
	encr("blowfish", EncrBlowfish, 128, false, false)
	encr("serpent", 0, 128, false, false)
	encr("twofish", 0, 128, false, false)
	encr("chacha20poly1305", EncrChaCha20Poly1305, 0, true, true)
	encr("chacha20poly1305compat", EncrChaCha20Poly1305, 256, false, false)

	integ := func(name string, id IntegID, ike, esp bool) { add(name, TransformInteg, uint16(id), 0, ike, esp) }
	integ("sha", IntegHMACSHA196, true, false)
	integ("sha1", IntegHMACSHA196, true, false)
	integ("sha1_160", IntegHMACSHA1160, false, false)
	integ("sha256", IntegHMACSHA256128, true, true)
	integ("sha2_256", IntegHMACSHA256128, true, true)
	integ("sha256_96", 0, false, false)
	integ("sha2_256_96", 0, false, false)
	integ("sha384", IntegHMACSHA384192, true, false)
	integ("sha2_384", IntegHMACSHA384192, true, false)
	integ("sha512", IntegHMACSHA512256, true, false)
	integ("sha2_512", IntegHMACSHA512256, true, false)
	integ("md5", IntegHMACMD596, false, false)
	integ("md5_128", IntegHMACMD5128, false, false)
	integ("aesxcbc", IntegAESXCBC96, false, false)
	integ("camelliaxcbc", 0, false, false)
	integ("aescmac", IntegAESCMAC96, false, false)

	prf := func(name string, id PRFID, ok bool) { add(name, TransformPRF, uint16(id), 0, ok, false) }
	prf("prfsha1", PRFHMACSHA1, true)
	prf("prfsha256", PRFHMACSHA256, true)
	prf("prfsha384", PRFHMACSHA384, true)
	prf("prfsha512", PRFHMACSHA512, true)
	prf("prfmd5", PRFHMACMD5, false)
	prf("prfaesxcbc", PRFAES128XCBC, false)
	prf("prfcamelliaxcbc", PRFCamellia128, false)
	prf("prfaescmac", PRFAES128CMAC, false)

	ke := func(name string, id GroupID) {
		ok := GroupSupported(id) || id == GroupNone
		add(name, TransformKE, uint16(id), 0, ok, ok)
	}
	ke("none", GroupNone)
	ke("modpnone", GroupNone)
	for name, id := range map[string]GroupID{
		"modp768": GroupMODP768, "modp1024": GroupMODP1024, "modp1536": GroupMODP1536,
		"modp2048": GroupMODP2048, "modp3072": GroupMODP3072, "modp4096": GroupMODP4096,
		"modp6144": GroupMODP6144, "modp8192": GroupMODP8192, "ecp192": GroupECP192, "ecp224": GroupECP224,
		"ecp256": GroupECP256, "ecp384": GroupECP384, "ecp521": GroupECP521,
		"modp1024s160": GroupMODP1024S1, "modp2048s224": GroupMODP2048S2, "modp2048s256": GroupMODP2048S3,
		"ecp224bp": GroupBP224, "ecp256bp": GroupBP256, "ecp384bp": GroupBP384, "ecp512bp": GroupBP512,
		"curve25519": GroupCurve25519, "x25519": GroupCurve25519, "curve448": GroupCurve448, "x448": GroupCurve448,
	} {
		ke(name, id)
	}
	// Post-quantum and test methods of strongSwan; never implemented here.
	for _, name := range []string{"modpnull", "ntru112", "ntru128", "ntru192", "ntru256", "newhope128",
		"kyber1", "kyber3", "kyber5", "mlkem512", "mlkem768", "mlkem1024"} {
		add(name, TransformKE, 0, 0, false, false)
	}
	add("noesn", TransformESN, uint16(ESNNo), 0, false, true)
	add("esn", TransformESN, uint16(ESNYes), 0, false, true)
	return k
}

// integPRF maps integrity algorithms to the PRF of the same hash, the PRF
// strongSwan adds to an IKE proposal that names none.
var integPRF = map[IntegID]PRFID{
	IntegHMACSHA196:    PRFHMACSHA1,
	IntegHMACSHA1160:   PRFHMACSHA1,
	IntegHMACSHA256128: PRFHMACSHA256,
	IntegHMACSHA384192: PRFHMACSHA384,
	IntegHMACSHA512256: PRFHMACSHA512,
	IntegHMACMD596:     PRFHMACMD5,
	IntegHMACMD5128:    PRFHMACMD5,
	IntegAESXCBC96:     PRFAES128XCBC,
	IntegAESCMAC96:     PRFAES128CMAC,
}

// DefaultIKE is what the keyword "default" stands for in IKE proposals:
// this package's implemented suites, AEAD first. strongSwan's own default
// list depends on its loaded plugins and contains more algorithms.
const DefaultIKE = "aes128gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512-x25519-ecp256-ecp384-ecp521-modp2048," +
	"aes128-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-ecp521-modp2048"

// DefaultESP is what "default" stands for in ESP proposals: the suites of
// spugate's data plane.
const DefaultESP = "aes128gcm16-aes256gcm16-chacha20poly1305,aes128-aes256-sha256"

// ParseIKE parses IKE proposals in strongSwan syntax, e.g.
// "aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048" or "default".
func ParseIKE(s string) ([]Proposal, error) { return ParseProposals(ProtocolIKE, s) }

// ParseESP parses ESP proposals in strongSwan syntax, e.g.
// "aes128gcm16,aes256-sha256" or "aes256gcm16-x25519-esn" (PFS with X25519).
func ParseESP(s string) ([]Proposal, error) { return ParseProposals(ProtocolESP, s) }

// ParseProposals parses a comma-separated list of proposals for proto (IKE
// or ESP) and numbers them from 1.
func ParseProposals(proto Protocol, s string) ([]Proposal, error) {
	if proto != ProtocolIKE && proto != ProtocolESP {
		return nil, fmt.Errorf("proposals for protocol %s not supported", proto)
	}
	var out []Proposal
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("proposals %q: empty proposal", s)
		}
		if strings.EqualFold(item, "default") {
			def := DefaultIKE
			if proto == ProtocolESP {
				def = DefaultESP
			}
			ps, err := ParseProposals(proto, def)
			if err != nil {
				panic("suite: bad default proposals: " + err.Error())
			}
			out = append(out, ps...)
			continue
		}
		p, err := parseOne(proto, item)
		if err != nil {
			return nil, fmt.Errorf("proposal %q: %w", item, err)
		}
		out = append(out, p)
	}
	if len(out) > 255 {
		return nil, fmt.Errorf("proposals %q: %d proposals, at most 255", s, len(out))
	}
	for i := range out {
		out[i].Number = uint8(i + 1)
	}
	return out, nil
}

func parseOne(proto Protocol, s string) (Proposal, error) {
	p := Proposal{Protocol: proto}
	add := func(t Transform) {
		for _, have := range p.Transforms {
			if have.same(t) {
				return
			}
		}
		p.Transforms = append(p.Transforms, t)
	}
	for _, tok := range strings.Split(s, "-") {
		name := strings.ToLower(strings.TrimSpace(tok))
		kw, ok := keywords[name]
		if !ok {
			return p, fmt.Errorf("unknown algorithm %q", tok)
		}
		// PRFs mean nothing in ESP (strongSwan drops them), nor ESN in IKE.
		if proto == ProtocolESP && kw.t.Type == TransformPRF {
			continue
		}
		if proto == ProtocolIKE && kw.t.Type == TransformESN {
			return p, fmt.Errorf("%q is not an IKE algorithm", tok)
		}
		supported := kw.ike
		if proto == ProtocolESP {
			supported = kw.esp
		}
		if !supported {
			return p, fmt.Errorf("algorithm %q not supported for %s", tok, proto)
		}
		add(kw.t)
	}
	encrs := p.Of(TransformEncr)
	if len(encrs) == 0 {
		return p, fmt.Errorf("an encryption algorithm is mandatory in %s proposals", proto)
	}
	aead := 0
	for _, e := range encrs {
		if EncrID(e.ID).IsAEAD() {
			aead++
		}
	}
	if aead != 0 && aead != len(encrs) {
		return p, fmt.Errorf("classic and combined-mode (AEAD) encryption algorithms can't be contained in the same %s proposal", proto)
	}
	if aead != 0 {
		p.Transforms = without(p.Transforms, TransformInteg)
	} else if len(p.Of(TransformInteg)) == 0 {
		if proto == ProtocolIKE {
			return p, fmt.Errorf("an integrity algorithm is mandatory in IKE proposals with classic (non-AEAD) encryption algorithms")
		}
		return p, fmt.Errorf("an integrity algorithm is required with classic encryption (ESP without integrity is not supported)")
	}
	switch proto {
	case ProtocolIKE:
		if len(p.Of(TransformPRF)) == 0 {
			for _, i := range p.Of(TransformInteg) {
				if prf, ok := integPRF[IntegID(i.ID)]; ok {
					add(Transform{Type: TransformPRF, ID: uint16(prf)})
				}
			}
		}
		if len(p.Of(TransformPRF)) == 0 {
			return p, fmt.Errorf("a PRF algorithm is mandatory in IKE proposals")
		}
		var kept []Transform
		for _, t := range p.Transforms {
			if t.Type != TransformKE || t.ID != uint16(GroupNone) {
				kept = append(kept, t)
			}
		}
		p.Transforms = kept
		if len(p.Of(TransformKE)) == 0 {
			return p, fmt.Errorf("a DH group is mandatory in IKE proposals")
		}
	case ProtocolESP:
		if len(p.Of(TransformESN)) == 0 {
			add(Transform{Type: TransformESN, ID: uint16(ESNNo)})
		}
	}
	p.Transforms = sortByType(p.Transforms)
	return p, nil
}

func without(ts []Transform, typ TransformType) []Transform {
	var out []Transform
	for _, t := range ts {
		if t.Type != typ {
			out = append(out, t)
		}
	}
	return out
}

// sortByType groups transforms by type in the order strongSwan sends them
// (ENCR, INTEG, PRF, KE, ESN), keeping the preference order within a type,
// so that a parsed proposal encodes to the bytes charon would send.
func sortByType(ts []Transform) []Transform {
	out := make([]Transform, 0, len(ts))
	for _, typ := range []TransformType{TransformEncr, TransformInteg, TransformPRF, TransformKE, TransformESN} {
		for _, t := range ts {
			if t.Type == typ {
				out = append(out, t)
			}
		}
	}
	return out
}
