package suite

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNoProposalChosen is wrapped by Select when no proposal matches; the
// responder answers with a NO_PROPOSAL_CHOSEN notify.
var ErrNoProposalChosen = errors.New("no proposal chosen")

// SelectPolicy tunes Select.
type SelectPolicy struct {
	// PreferPeer makes the peer's proposal order (and, inside a proposal,
	// its transform order) decide; by default ours decides. strongSwan
	// prefers its own configured proposals as responder by default
	// (charon.prefer_configured_proposals = yes), and RFC 7296 section
	// 3.3.6 lets the responder pick any acceptable proposal, so the default
	// here is the same as strongSwan's.
	PreferPeer bool
	// KEGroup is the group of the KE payload received with the SA payload
	// (IKE_SA_INIT, CREATE_CHILD_SA with PFS). When a matching proposal
	// also allows it, Select chooses it, so that the exchange does not
	// fail with INVALID_KE_PAYLOAD only because our preferred group is
	// another one (strongSwan does the same by promoting the KE's group in
	// the peer's proposals). GroupNone disables this.
	KEGroup GroupID
	// SkipKE ignores key exchange transforms on both sides: for the Child
	// SA created by IKE_AUTH, whose keys come from the IKE SA's exchange
	// (RFC 7296 section 1.2), so that a Child SA configured with PFS still
	// matches there. strongSwan does the same (and sends no KE transform
	// in IKE_AUTH; see WithoutKE).
	SkipKE bool
}

// Select is the responder's choice (RFC 7296 section 3.3.6): it returns a
// proposal with exactly one transform of each type, numbered and with the
// SPI of the peer's proposal it came from, or an error wrapping
// ErrNoProposalChosen. ours are our configured proposals (from ParseIKE or
// ParseESP); offered are the proposals of the peer's SA payload.
//
// Matching, as strongSwan does: the protocols must be equal; for each
// transform type present on either side an algorithm with the same ID and
// key length must be on both, except that a KE type missing on one side of
// an ESP or AH proposal matches when the other lists NONE; integrity is
// not negotiated with an AEAD. Transforms with attributes other than Key Length
// never match (RFC 7296 3.3.6: such a transform must be rejected); a
// proposal with a transform type we do not know is unacceptable.
//
// The response's SA payload carries the returned proposal, with our SPI in
// place of the peer's for a Child SA or an IKE SA rekey.
func Select(ours, offered []Proposal, pol SelectPolicy) (Proposal, error) {
	try := func(keGroup GroupID) (Proposal, bool) {
		outer, inner := ours, offered
		if pol.PreferPeer {
			outer, inner = offered, ours
		}
		for i := range outer {
			for j := range inner {
				peer := &inner[j]
				if pol.PreferPeer {
					peer = &outer[i]
				}
				if sel, ok := selectPair(&outer[i], &inner[j], keGroup, pol.SkipKE); ok {
					sel.Number = peer.Number
					sel.SPI = append([]byte(nil), peer.SPI...)
					return sel, true
				}
			}
		}
		return Proposal{}, false
	}
	if pol.KEGroup != GroupNone {
		if sel, ok := try(pol.KEGroup); ok {
			return sel, nil
		}
	}
	if sel, ok := try(GroupNone); ok {
		return sel, nil
	}
	return Proposal{}, fmt.Errorf("suite: received %s; configured %s: %w",
		FormatProposals(offered), FormatProposals(ours), ErrNoProposalChosen)
}

var knownTypes = map[TransformType]bool{
	TransformEncr: true, TransformPRF: true, TransformInteg: true, TransformKE: true, TransformESN: true,
}

// selectPair matches two proposals, pref's transform order first. With
// keGroup set, a KE transform is only chosen if it is keGroup.
func selectPair(pref, other *Proposal, keGroup GroupID, skipKE bool) (Proposal, bool) {
	if pref.Protocol != other.Protocol {
		return Proposal{}, false
	}
	for _, p := range []*Proposal{pref, other} {
		for _, t := range p.Transforms {
			if !knownTypes[t.Type] {
				return Proposal{}, false
			}
		}
	}
	sel := Proposal{Protocol: pref.Protocol}
	// Scratch on the stack for the transforms of one type on each side
	// and for the chosen ones (copied out once the pair matches).
	var buf1, buf2 [8]Transform
	var chosen [8]Transform
	selected := chosen[:0]
	aead := false
	for _, typ := range []TransformType{TransformEncr, TransformPRF, TransformInteg, TransformKE, TransformESN} {
		if (typ == TransformInteg && aead) || (typ == TransformKE && skipKE) {
			continue
		}
		all1, all2 := pref.appendOf(buf1[:0], typ), other.appendOf(buf2[:0], typ)
		// A missing key exchange type in a Child SA proposal matches a
		// NONE on the other side; any other missing type must be missing
		// on both sides.
		optional := typ == TransformKE && pref.Protocol != ProtocolIKE
		switch {
		case len(all1) == 0 && len(all2) == 0:
			continue
		case len(all1) == 0:
			if optional && hasID(all2, 0) {
				continue
			}
			return Proposal{}, false
		case len(all2) == 0:
			if optional && hasID(all1, 0) {
				continue
			}
			return Proposal{}, false
		}
		found := false
	search:
		for _, x := range usable(all1) {
			if typ == TransformKE && keGroup != GroupNone && x.ID != uint16(keGroup) {
				continue
			}
			for _, y := range usable(all2) {
				if x.same(y) {
					found = true
					// ID 0 means NONE for every type but ESN.
					if x.ID != 0 || typ == TransformESN {
						selected = append(selected, Transform{Type: typ, ID: x.ID, KeyLength: x.KeyLength})
					}
					aead = aead || (typ == TransformEncr && EncrID(x.ID).IsAEAD())
					break search
				}
			}
		}
		if !found {
			return Proposal{}, false
		}
	}
	if len(selected) > 0 {
		sel.Transforms = slices.Clone(selected)
	}
	return sel, true
}

// usable drops transforms with attributes we do not understand, in place:
// ts is the caller's scratch.
func usable(ts []Transform) []Transform {
	out := ts[:0]
	for _, t := range ts {
		if len(t.Attributes) == 0 {
			out = append(out, t)
		}
	}
	return out
}

func hasID(ts []Transform, id uint16) bool {
	for _, t := range ts {
		if t.ID == id {
			return true
		}
	}
	return false
}

// WithoutKE returns copies of ps without key exchange transforms: the
// proposals of the Child SA created in IKE_AUTH, which has no KE payload.
func WithoutKE(ps []Proposal) []Proposal {
	out := make([]Proposal, len(ps))
	for i, p := range ps {
		out[i] = p.Clone()
		out[i].Transforms = without(out[i].Transforms, TransformKE)
	}
	return out
}

// CheckResponse is the initiator's check of the SA payload in a response
// (RFC 7296 section 3.3.6: the responder must choose one of the offered
// proposals, with one transform of each type from it). offered are the
// proposals we sent; chosen are those of the response. It returns the
// chosen proposal, whose SPI is the responder's, or an error naming the
// fault: a peer that answers with something we did not offer is caught.
func CheckResponse(offered, chosen []Proposal) (Proposal, error) {
	if len(chosen) != 1 {
		return Proposal{}, fmt.Errorf("suite: response SA payload has %d proposals, want 1", len(chosen))
	}
	c := chosen[0]
	var off *Proposal
	for i := range offered {
		if offered[i].Number == c.Number {
			off = &offered[i]
			break
		}
	}
	if off == nil {
		return Proposal{}, fmt.Errorf("suite: responder chose proposal %d, which we did not offer", c.Number)
	}
	if c.Protocol != off.Protocol {
		return Proposal{}, fmt.Errorf("suite: responder chose protocol %s for proposal %d, we offered %s", c.Protocol, c.Number, off.Protocol)
	}
	switch {
	case c.Protocol == ProtocolIKE && len(off.SPI) == 0 && len(c.SPI) != 0:
		return Proposal{}, fmt.Errorf("suite: responder's IKE proposal has a %d-byte SPI in IKE_SA_INIT", len(c.SPI))
	case c.Protocol == ProtocolIKE && len(off.SPI) == 8 && len(c.SPI) != 8:
		return Proposal{}, fmt.Errorf("suite: responder's IKE rekey proposal has a %d-byte SPI, want 8", len(c.SPI))
	case (c.Protocol == ProtocolESP || c.Protocol == ProtocolAH) && len(c.SPI) != 4:
		return Proposal{}, fmt.Errorf("suite: responder's %s proposal has a %d-byte SPI, want 4", c.Protocol, len(c.SPI))
	}
	seen := map[TransformType]bool{}
	for _, t := range c.Transforms {
		if seen[t.Type] {
			return Proposal{}, fmt.Errorf("suite: responder chose two %s transforms", t.Type)
		}
		seen[t.Type] = true
		if len(t.Attributes) != 0 {
			return Proposal{}, fmt.Errorf("suite: responder's transform %s has attributes we did not offer", t)
		}
		ok := false
		for _, o := range off.Transforms {
			if o.Type == t.Type && o.same(t) {
				ok = true
			}
		}
		if !ok {
			return Proposal{}, fmt.Errorf("suite: responder chose %s, which we did not offer in proposal %d", t, c.Number)
		}
	}
	// Every type we offered must be answered, except NONE choices and
	// integrity next to an AEAD.
	aead := false
	for _, t := range c.Transforms {
		if t.Type == TransformEncr {
			aead = EncrID(t.ID).IsAEAD()
		}
	}
	var buf [8]Transform
	for _, typ := range []TransformType{TransformEncr, TransformPRF, TransformInteg, TransformKE, TransformESN} {
		ofs := off.appendOf(buf[:0], typ)
		if len(ofs) == 0 || seen[typ] || (typ == TransformInteg && aead) || (hasID(ofs, 0) && typ != TransformESN) {
			continue
		}
		return Proposal{}, fmt.Errorf("suite: responder chose no %s transform for proposal %d", typ, c.Number)
	}
	return c.Clone(), nil
}
