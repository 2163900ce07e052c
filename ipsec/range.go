package ipsec

import (
	"encoding/binary"
	"net/netip"
)

// Range is a Selector compiled for the per-packet path: its addresses as
// two 64-bit words each (an IPv4 address in Lo), so that a packet's header
// is matched with integer comparisons and no netip.Addr is built. It
// matches exactly what the Selector's Matches does.
type Range struct {
	V4               bool
	Proto            uint8
	FromHi, FromLo   uint64
	ToHi, ToLo       uint64
	FromPort, ToPort uint16
}

// NoPort is the port of a packet whose ports are unknown (a later
// fragment, a protocol without ports, a header cut short): it matches only
// a range of every port (RFC 4301 section 4.4.1.1, OPAQUE).
const NoPort = -1

// Range compiles the selector.
func (s Selector) Range() Range {
	from, to := s.From.Unmap(), s.To.Unmap()
	r := Range{V4: from.Is4(), Proto: s.Proto, FromPort: s.FromPort, ToPort: s.ToPort}
	r.FromHi, r.FromLo = AddrWords(from)
	r.ToHi, r.ToLo = AddrWords(to)
	return r
}

// AddrWords is an address as two big-endian 64-bit words, an IPv4 address
// in lo with hi zero.
func AddrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// AnyPort reports whether the range covers every port.
func (r *Range) AnyPort() bool { return r.FromPort == 0 && r.ToPort == 0xffff }

// Match reports whether an address (as AddrWords gives it), a protocol and
// a port (NoPort when unknown) fall inside the range.
func (r *Range) Match(v4 bool, hi, lo uint64, proto uint8, port int) bool {
	if r.V4 != v4 || (r.Proto != 0 && r.Proto != proto) {
		return false
	}
	if hi < r.FromHi || (hi == r.FromHi && lo < r.FromLo) || hi > r.ToHi || (hi == r.ToHi && lo > r.ToLo) {
		return false
	}
	if r.AnyPort() {
		return true
	}
	return port != NoPort && port >= int(r.FromPort) && port <= int(r.ToPort)
}

// MatchAny reports whether any of the ranges matches; no ranges match
// everything (an SA without selectors).
func MatchAny(rs []Range, v4 bool, hi, lo uint64, proto uint8, port int) bool {
	if len(rs) == 0 {
		return true
	}
	for i := range rs {
		if rs[i].Match(v4, hi, lo, proto, port) {
			return true
		}
	}
	return false
}
