package message

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/spugate/spugate/control/ike/suite"
)

// SA is a Security Association payload (RFC 7296 section 3.3). Build one
// from configured proposals (suite.ParseIKE, suite.ParseESP) with our SPI
// set, and give a received one's Proposals to suite.Select or
// suite.CheckResponse.
type SA struct {
	Proposals []suite.Proposal
}

// maxTransforms bounds the transforms of one SA payload, so that a hostile
// 64 KiB SA costs little to refuse; strongSwan's fullest default proposal
// has about 40.
const maxTransforms = 512

const (
	lastSubstruc    = 0
	moreProposals   = 2
	moreTransforms  = 3
	proposalHdrLen  = 8
	transformHdrLen = 8
	attrFormatTV    = 0x8000
	keyLengthAttrTV = attrFormatTV | suite.AttrKeyLength
)

func (p *SA) appendBody(b []byte) ([]byte, error) {
	if len(p.Proposals) == 0 {
		return nil, errors.New("no proposals")
	}
	if len(p.Proposals) > 255 {
		return nil, fmt.Errorf("%d proposals", len(p.Proposals))
	}
	for i, prop := range p.Proposals {
		start := len(b)
		last := byte(moreProposals)
		if i == len(p.Proposals)-1 {
			last = lastSubstruc
		}
		num := prop.Number
		if num == 0 {
			num = uint8(i + 1)
		}
		if len(prop.Transforms) == 0 || len(prop.Transforms) > 255 {
			return nil, fmt.Errorf("proposal %d: %d transforms", num, len(prop.Transforms))
		}
		if len(prop.SPI) > 255 {
			return nil, fmt.Errorf("proposal %d: SPI of %d bytes", num, len(prop.SPI))
		}
		b = append(b, last, 0, 0, 0, num, byte(prop.Protocol), byte(len(prop.SPI)), byte(len(prop.Transforms)))
		b = append(b, prop.SPI...)
		for j, t := range prop.Transforms {
			tstart := len(b)
			last := byte(moreTransforms)
			if j == len(prop.Transforms)-1 {
				last = lastSubstruc
			}
			b = append(b, last, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			if t.KeyLength != 0 {
				b = binary.BigEndian.AppendUint16(b, keyLengthAttrTV)
				b = binary.BigEndian.AppendUint16(b, t.KeyLength)
			}
			for _, a := range t.Attributes {
				if a.TV {
					if len(a.Value) != 2 {
						return nil, fmt.Errorf("proposal %d: transform %d: TV attribute %d of %d bytes", num, j+1, a.Type, len(a.Value))
					}
					b = binary.BigEndian.AppendUint16(b, attrFormatTV|a.Type&0x7fff)
					b = append(b, a.Value...)
				} else {
					if len(a.Value) > 0xffff {
						return nil, fmt.Errorf("proposal %d: transform %d: attribute of %d bytes", num, j+1, len(a.Value))
					}
					b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
					b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
					b = append(b, a.Value...)
				}
			}
			if len(b)-tstart > 0xffff {
				return nil, fmt.Errorf("proposal %d: transform %d too long", num, j+1)
			}
			binary.BigEndian.PutUint16(b[tstart+2:], uint16(len(b)-tstart))
		}
		if len(b)-start > 0xffff {
			return nil, fmt.Errorf("proposal %d too long", num)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b, nil
}

func decodeSA(b []byte) (Payload, error) {
	if len(b) == 0 {
		return nil, errors.New("no proposals")
	}
	sa := &SA{}
	transforms := 0
	off := 0
	for i := 1; ; i++ {
		rest := b[off:]
		if len(rest) < proposalHdrLen {
			return nil, fmt.Errorf("proposal %d: truncated: %d bytes left, need %d", i, len(rest), proposalHdrLen)
		}
		last, plen := rest[0], int(binary.BigEndian.Uint16(rest[2:]))
		if last != lastSubstruc && last != moreProposals {
			return nil, fmt.Errorf("proposal %d: last substruc %d, want 0 or 2", i, last)
		}
		if plen < proposalHdrLen {
			return nil, fmt.Errorf("proposal %d: length %d below minimum %d", i, plen, proposalHdrLen)
		}
		if plen > len(rest) {
			return nil, fmt.Errorf("proposal %d: length %d exceeds the %d bytes left", i, plen, len(rest))
		}
		p := suite.Proposal{Number: rest[4], Protocol: suite.Protocol(rest[5])}
		if p.Number == 0 {
			return nil, fmt.Errorf("proposal %d: number 0 (numbering starts at 1)", i)
		}
		if i > 1 && p.Number != sa.Proposals[i-2].Number+1 {
			return nil, fmt.Errorf("proposal %d: number %d does not follow %d", i, p.Number, sa.Proposals[i-2].Number)
		}
		spiSize, nt := int(rest[6]), int(rest[7])
		if err := checkSPISize(p.Protocol, spiSize); err != nil {
			return nil, fmt.Errorf("proposal %d: %w", i, err)
		}
		if proposalHdrLen+spiSize > plen {
			return nil, fmt.Errorf("proposal %d: SPI size %d exceeds length %d", i, spiSize, plen)
		}
		p.SPI = rest[proposalHdrLen : proposalHdrLen+spiSize]
		if nt == 0 {
			return nil, fmt.Errorf("proposal %d: no transforms", i)
		}
		if transforms += nt; transforms > maxTransforms {
			return nil, fmt.Errorf("proposal %d: more than %d transforms in the SA payload", i, maxTransforms)
		}
		tb := rest[proposalHdrLen+spiSize : plen]
		p.Transforms = make([]suite.Transform, 0, nt)
		toff := 0
		for j := 1; j <= nt; j++ {
			t, n, err := decodeTransform(tb[toff:], j == nt)
			if err != nil {
				return nil, fmt.Errorf("proposal %d: transform %d: %w", i, j, err)
			}
			p.Transforms = append(p.Transforms, t)
			toff += n
		}
		if toff != len(tb) {
			return nil, fmt.Errorf("proposal %d: %d bytes after %d transforms", i, len(tb)-toff, nt)
		}
		sa.Proposals = append(sa.Proposals, p)
		off += plen
		if last == lastSubstruc {
			break
		}
		if i == 255 {
			return nil, errors.New("more than 255 proposals")
		}
	}
	if off != len(b) {
		return nil, fmt.Errorf("%d bytes after the last proposal", len(b)-off)
	}
	return sa, nil
}

func checkSPISize(p suite.Protocol, size int) error {
	switch p {
	case suite.ProtocolIKE:
		if size != 0 && size != 8 {
			return fmt.Errorf("IKE SPI size %d, want 0 or 8", size)
		}
	case suite.ProtocolESP, suite.ProtocolAH:
		if size != 4 {
			return fmt.Errorf("%s SPI size %d, want 4", p, size)
		}
	}
	return nil
}

func decodeTransform(b []byte, wantLast bool) (suite.Transform, int, error) {
	var t suite.Transform
	if len(b) < transformHdrLen {
		return t, 0, fmt.Errorf("truncated: %d bytes left, need %d", len(b), transformHdrLen)
	}
	last, tlen := b[0], int(binary.BigEndian.Uint16(b[2:]))
	if tlen < transformHdrLen {
		return t, 0, fmt.Errorf("length %d below minimum %d", tlen, transformHdrLen)
	}
	if tlen > len(b) {
		return t, 0, fmt.Errorf("length %d exceeds the %d bytes left", tlen, len(b))
	}
	switch {
	case wantLast && last != lastSubstruc:
		return t, 0, fmt.Errorf("last substruc %d on the last transform", last)
	case !wantLast && last != moreTransforms:
		return t, 0, fmt.Errorf("last substruc %d, want %d (more transforms announced)", last, moreTransforms)
	}
	t.Type = suite.TransformType(b[4])
	t.ID = binary.BigEndian.Uint16(b[6:])
	ab := b[transformHdrLen:tlen]
	for k := 1; len(ab) > 0; k++ {
		if len(ab) < 4 {
			return t, 0, fmt.Errorf("attribute %d: truncated", k)
		}
		typ := binary.BigEndian.Uint16(ab)
		if typ&attrFormatTV != 0 {
			typ &^= attrFormatTV
			if typ == suite.AttrKeyLength {
				if t.KeyLength != 0 {
					return t, 0, fmt.Errorf("attribute %d: second Key Length", k)
				}
				t.KeyLength = binary.BigEndian.Uint16(ab[2:])
				if t.KeyLength == 0 {
					return t, 0, fmt.Errorf("attribute %d: Key Length 0", k)
				}
			} else {
				t.Attributes = append(t.Attributes, suite.Attribute{Type: typ, TV: true, Value: ab[2:4]})
			}
			ab = ab[4:]
			continue
		}
		if typ == suite.AttrKeyLength {
			return t, 0, fmt.Errorf("attribute %d: Key Length in TLV format", k)
		}
		l := int(binary.BigEndian.Uint16(ab[2:]))
		if len(ab)-4 < l {
			return t, 0, fmt.Errorf("attribute %d: length %d exceeds the %d bytes left", k, l, len(ab)-4)
		}
		t.Attributes = append(t.Attributes, suite.Attribute{Type: typ, Value: ab[4 : 4+l]})
		ab = ab[4+l:]
	}
	return t, tlen, nil
}
