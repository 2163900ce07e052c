package suite

import (
	"fmt"
	"strings"
)

// Proposal is one proposal substructure of an SA payload: a protocol, the
// sender's SPI and a list of transforms, several per type in order of
// preference (RFC 7296 section 3.3.1).
type Proposal struct {
	// Number is the Proposal Num; the encoder numbers proposals 1, 2, ...
	// when it is 0.
	Number   uint8
	Protocol Protocol
	// SPI is empty in IKE_SA_INIT, the 8-byte new IKE SPI when rekeying an
	// IKE SA, the 4-byte inbound SPI of an ESP or AH Child SA.
	SPI        []byte
	Transforms []Transform
}

// Of returns the transforms of type t in order.
func (p *Proposal) Of(t TransformType) []Transform { return p.appendOf(nil, t) }

// appendOf appends the transforms of type t to dst in order: negotiation
// gives it a buffer on its stack, as it looks at each type of each pair of
// proposals (Of allocated for each, a few percent of a setup's garbage).
func (p *Proposal) appendOf(dst []Transform, t TransformType) []Transform {
	for _, tr := range p.Transforms {
		if tr.Type == t {
			dst = append(dst, tr)
		}
	}
	return dst
}

// Has reports whether p offers transform type t with the given ID.
func (p *Proposal) Has(t TransformType, id uint16) bool {
	for _, tr := range p.Transforms {
		if tr.Type == t && tr.ID == id {
			return true
		}
	}
	return false
}

// Groups returns the key exchange groups p offers, in order.
func (p *Proposal) Groups() []GroupID {
	var out []GroupID
	for _, tr := range p.Transforms {
		if tr.Type == TransformKE {
			out = append(out, GroupID(tr.ID))
		}
	}
	return out
}

// Clone returns a deep copy of p.
func (p Proposal) Clone() Proposal {
	c := p
	c.SPI = append([]byte(nil), p.SPI...)
	c.Transforms = make([]Transform, len(p.Transforms))
	for i, t := range p.Transforms {
		t.Attributes = append([]Attribute(nil), t.Attributes...)
		c.Transforms[i] = t
	}
	return c
}

// typeOrder is the order strongSwan prints transform types in.
var typeOrder = []TransformType{TransformEncr, TransformInteg, TransformPRF, TransformKE, TransformESN}

// String formats p the way strongSwan logs proposals, e.g.
// "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384".
func (p Proposal) String() string {
	var b strings.Builder
	b.WriteString(p.Protocol.String())
	b.WriteByte(':')
	first := true
	emit := func(t Transform) {
		if !first {
			b.WriteByte('/')
		}
		first = false
		b.WriteString(t.String())
	}
	known := map[TransformType]bool{}
	for _, typ := range typeOrder {
		known[typ] = true
		for _, t := range p.Transforms {
			if t.Type == typ {
				emit(t)
			}
		}
	}
	for _, t := range p.Transforms {
		if !known[t.Type] {
			emit(t)
		}
	}
	return b.String()
}

// FormatProposals joins proposals with ", " as strongSwan logs them, cut
// after maxFormatted bytes.
func FormatProposals(ps []Proposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	out := strings.Join(s, ", ")
	if len(out) > maxFormatted {
		// A peer may offer hundreds of transforms; logs and errors name
		// enough of them to see the mismatch, not all.
		out = fmt.Sprintf("%s... (%d proposals, %d bytes, cut)", out[:maxFormatted], len(ps), len(out))
	}
	return out
}

// maxFormatted bounds what FormatProposals writes: a proposal whose text
// is longer is cut there.
const maxFormatted = 512

// Algorithms is a negotiated suite: exactly one algorithm of each type, as
// chosen from a proposal. Fields that do not apply are zero: no PRF for ESP,
// IntegNone with an AEAD, GroupNone for a Child SA without PFS.
type Algorithms struct {
	Protocol Protocol
	Encr     EncrID
	// EncrKeyBits is the Key Length attribute in bits (0 for ChaCha20-Poly1305).
	EncrKeyBits int
	Integ       IntegID
	PRF         PRFID
	Group       GroupID
	ESN         bool
}

// String formats a in the style of Proposal.String.
func (a Algorithms) String() string {
	p := Proposal{Protocol: a.Protocol}
	p.Transforms = append(p.Transforms, Transform{Type: TransformEncr, ID: uint16(a.Encr), KeyLength: uint16(a.EncrKeyBits)})
	if a.Integ != IntegNone {
		p.Transforms = append(p.Transforms, Transform{Type: TransformInteg, ID: uint16(a.Integ)})
	}
	if a.Protocol == ProtocolIKE {
		p.Transforms = append(p.Transforms, Transform{Type: TransformPRF, ID: uint16(a.PRF)})
	}
	if a.Group != GroupNone {
		p.Transforms = append(p.Transforms, Transform{Type: TransformKE, ID: uint16(a.Group)})
	}
	if a.Protocol == ProtocolESP || a.Protocol == ProtocolAH {
		esn := ESNNo
		if a.ESN {
			esn = ESNYes
		}
		p.Transforms = append(p.Transforms, Transform{Type: TransformESN, ID: uint16(esn)})
	}
	return p.String()
}

// AEAD reports whether the encryption algorithm is combined-mode.
func (a Algorithms) AEAD() bool { return a.Encr.IsAEAD() }

// Algorithms extracts the negotiated suite from a proposal that holds one
// transform per type (a chosen proposal, from Select or CheckResponse), and
// checks that this package implements it for the proposal's protocol: the
// IKE SA suites for IKE, the data plane's ESP suites for ESP.
func (p *Proposal) Algorithms() (Algorithms, error) {
	a := Algorithms{Protocol: p.Protocol}
	seen := map[TransformType]bool{}
	for _, t := range p.Transforms {
		if seen[t.Type] {
			return a, fmt.Errorf("suite: proposal %s: more than one %s transform", p, t.Type)
		}
		seen[t.Type] = true
		if len(t.Attributes) != 0 {
			return a, fmt.Errorf("suite: proposal %s: transform %s has unknown attributes", p, t)
		}
		switch t.Type {
		case TransformEncr:
			a.Encr, a.EncrKeyBits = EncrID(t.ID), int(t.KeyLength)
		case TransformInteg:
			a.Integ = IntegID(t.ID)
		case TransformPRF:
			a.PRF = PRFID(t.ID)
		case TransformKE:
			a.Group = GroupID(t.ID)
		case TransformESN:
			switch ESNID(t.ID) {
			case ESNNo:
			case ESNYes:
				a.ESN = true
			default:
				return a, fmt.Errorf("suite: proposal %s: unknown ESN value %d", p, t.ID)
			}
		default:
			return a, fmt.Errorf("suite: proposal %s: unknown transform type %d", p, t.Type)
		}
	}
	if err := a.Check(); err != nil {
		return a, fmt.Errorf("suite: proposal %s: %w", p, err)
	}
	return a, nil
}

// Check reports whether a is a complete suite this package implements.
func (a Algorithms) Check() error {
	switch a.Protocol {
	case ProtocolIKE:
		if err := checkIKEEncr(a.Encr, a.EncrKeyBits); err != nil {
			return err
		}
		if a.AEAD() {
			if a.Integ != IntegNone {
				return fmt.Errorf("integrity algorithm %s with AEAD %s", a.Integ, a.Encr)
			}
		} else if integSpec(a.Integ) == nil {
			return fmt.Errorf("integrity algorithm %s not supported", a.Integ)
		}
		if prfSpec(a.PRF) == nil {
			return fmt.Errorf("PRF %s not supported", a.PRF)
		}
		if !GroupSupported(a.Group) {
			return fmt.Errorf("key exchange %s not supported", a.Group)
		}
		if a.ESN {
			return fmt.Errorf("ESN in an IKE proposal")
		}
	case ProtocolESP:
		if err := checkESPEncr(a.Encr, a.EncrKeyBits, a.Integ); err != nil {
			return err
		}
		if a.PRF != 0 {
			return fmt.Errorf("PRF %s in an ESP proposal", a.PRF)
		}
		if a.Group != GroupNone && !GroupSupported(a.Group) {
			return fmt.Errorf("key exchange %s not supported", a.Group)
		}
	default:
		return fmt.Errorf("protocol %s not supported", a.Protocol)
	}
	return nil
}

func checkIKEEncr(e EncrID, bits int) error {
	switch e {
	case EncrAESCBC, EncrAESGCM16:
		if bits != 128 && bits != 192 && bits != 256 {
			return fmt.Errorf("%s key length %d not supported", e, bits)
		}
	case EncrChaCha20Poly1305:
		if bits != 0 && bits != 256 {
			return fmt.Errorf("%s key length %d not supported", e, bits)
		}
	default:
		return fmt.Errorf("encryption algorithm %s not supported", e)
	}
	return nil
}

// checkESPEncr admits the suites of spugate's data plane: AES-GCM-16 with
// 128 or 256-bit keys, ChaCha20-Poly1305, AES-CBC-128/256 with
// HMAC-SHA2-256-128.
func checkESPEncr(e EncrID, bits int, integ IntegID) error {
	switch e {
	case EncrAESGCM16:
		if bits != 128 && bits != 256 {
			return fmt.Errorf("ESP %s key length %d not supported", e, bits)
		}
	case EncrChaCha20Poly1305:
		if bits != 0 && bits != 256 {
			return fmt.Errorf("ESP %s key length %d not supported", e, bits)
		}
	case EncrAESCBC:
		if bits != 128 && bits != 256 {
			return fmt.Errorf("ESP %s key length %d not supported", e, bits)
		}
		if integ != IntegHMACSHA256128 {
			return fmt.Errorf("ESP integrity algorithm %s not supported", integ)
		}
		return nil
	default:
		return fmt.Errorf("ESP encryption algorithm %s not supported", e)
	}
	if integ != IntegNone {
		return fmt.Errorf("integrity algorithm %s with AEAD %s", integ, e)
	}
	return nil
}

// encrKeyLen is the length in bytes of the keying material an encryption
// algorithm takes from prf+: the key, plus the 4-byte salt for AES-GCM
// (RFC 5282 section 7.1, RFC 4106 section 8.1) and ChaCha20-Poly1305
// (RFC 7634 section 2, RFC 7634 section 3 for IKEv2).
func encrKeyLen(e EncrID, bits int) int {
	switch e {
	case EncrAESCBC:
		return bits / 8
	case EncrAESGCM16:
		return bits/8 + 4
	case EncrChaCha20Poly1305:
		return 32 + 4
	}
	return 0
}

// EncrKeyLen is the length in bytes of the encryption keying material
// (salt included) for a.
func (a Algorithms) EncrKeyLen() int { return encrKeyLen(a.Encr, a.EncrKeyBits) }

// IntegKeyLen is the length in bytes of the integrity key for a (0 for an AEAD).
func (a Algorithms) IntegKeyLen() int {
	if s := integSpec(a.Integ); s != nil {
		return s.keyLen
	}
	return 0
}

// WithSPI returns copies of ps carrying spi: our inbound ESP SPI (4 bytes)
// for a Child SA, our new IKE SPI (8 bytes) for an IKE SA rekey.
func WithSPI(ps []Proposal, spi []byte) []Proposal {
	out := make([]Proposal, len(ps))
	for i, p := range ps {
		out[i] = p.Clone()
		out[i].SPI = append([]byte(nil), spi...)
	}
	return out
}
