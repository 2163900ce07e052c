package main

import (
	"net/netip"
	"strconv"

	"github.com/spugate/spugate/ipsec"
)

// appendSelectors appends ts as tsList writes them: "any" for none, else
// ipsec.Selectors' text, without the strings Selector.String allocates
// (two SAs' worth a line of sa list, a million times).
func appendSelectors(b []byte, ts []ipsec.Selector) []byte {
	if len(ts) == 0 {
		return append(b, "any"...)
	}
	for i, s := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendSelector(b, s)
	}
	return b
}

// appendSelector appends s as s.String() writes it (TestAppendSelector).
func appendSelector(b []byte, s ipsec.Selector) []byte {
	switch p, ok := onePrefix(s); {
	case ok && p.IsSingleIP():
		b = appendAddr(b, p.Addr())
	case ok:
		b = p.AppendTo(b)
	default:
		b = appendAddr(b, s.From)
		b = append(b, '-')
		b = appendAddr(b, s.To)
	}
	if s.Proto != 0 || !s.AnyPort() {
		b = append(b, '[')
		b = append(b, ipsec.ProtoName(s.Proto)...)
		if !s.AnyPort() {
			b = append(b, '/')
			b = strconv.AppendUint(b, uint64(s.FromPort), 10)
			if s.FromPort != s.ToPort {
				b = append(b, '-')
				b = strconv.AppendUint(b, uint64(s.ToPort), 10)
			}
		}
		b = append(b, ']')
	}
	return b
}

// onePrefix reports whether s's range is exactly one prefix, as
// Selector.Prefixes finds its first: the widest prefix starting at From
// that stays within To, which must end at To.
func onePrefix(s ipsec.Selector) (netip.Prefix, bool) {
	from, to := s.From, s.To
	if !from.IsValid() || !to.IsValid() || from.Is4() != to.Is4() || to.Less(from) {
		return netip.Prefix{}, false
	}
	bits := from.BitLen()
	for bits > 0 {
		p, _ := from.Prefix(bits - 1)
		if p.Addr() != from || to.Less(lastAddr(p)) {
			break
		}
		bits--
	}
	p := netip.PrefixFrom(from, bits)
	return p, lastAddr(p) == to
}

// lastAddr is ipsec.LastAddr without its slice.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}
