// Package iphdr holds the small IPv4 and IPv6 header helpers that the ESP
// engine (dataplane/esp) and the fragmenter (dataplane/ipfrag) share: the
// Internet checksum, field offsets, and the walk over IPv6 extension headers.
//
// Every function works on a caller's byte slice, allocates nothing and never
// reads past the slice it is given: a short or malformed header is reported
// through a false ok, not a panic.
package iphdr

import "encoding/binary"

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
const (
	ProtoHopByHop  = 0
	ProtoICMP      = 1
	ProtoIPv4      = 4
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoIPv6      = 41
	ProtoRouting   = 43
	ProtoFragment  = 44
	ProtoESP       = 50
	ProtoAH        = 51
	ProtoICMPv6    = 58
	ProtoNoNext    = 59
	ProtoDestOpts  = 60
	ProtoMobility  = 135
	ProtoSCTP      = 132
	ProtoUDPLite   = 136
	ProtoHIP       = 139
	ProtoShim6     = 140
	ProtoReserved1 = 253
	ProtoReserved2 = 254
)

// Header lengths, in bytes.
const (
	IPv4MinLen  = 20 // without options
	IPv4MaxLen  = 60 // IHL 15, 40 bytes of options
	IPv6Len     = 40 // the base header, without extension headers
	UDPLen      = 8
	IPv6FragLen = 8 // the fragment extension header
	EthernetLen = 14
)

// The smallest MTUs the protocols allow (RFC 8200 section 5, RFC 791):
// every link carries packets this large, so a "too big" message never
// reports less, and an IPv6 packet this small must get through (a tunnel
// fragments its ESP packet rather than refuse it).
const (
	IPv6MinMTU = 1280
	IPv4MinMTU = 68
)

// DefaultTTL is the TTL or hop limit of the outer headers the ESP engine
// builds (Linux's default, net.ipv4.ip_default_ttl).
const DefaultTTL = 64

// The IPv4 flags and fragment offset word (bytes 6 and 7 of the header, in
// host order once read big-endian): DF forbids fragmenting, MF says more
// fragments follow, and the offset is in units of 8 bytes.
const (
	IPv4FlagDF     = 0x4000
	IPv4FlagMF     = 0x2000
	IPv4OffsetMask = 0x1fff
)

// Sum adds b to the ones' complement running sum acc (RFC 1071) and returns
// the new, unfolded sum. An odd final byte is padded with zero, so only the
// last piece of a checksummed region may have an odd length.
func Sum(b []byte, acc uint64) uint64 {
	// Summing 32-bit words into a 64-bit accumulator defers the carries:
	// 2^32 additions of 2^32-1 cannot overflow it, far beyond any packet.
	for len(b) >= 32 {
		acc += uint64(binary.BigEndian.Uint32(b[0:4])) +
			uint64(binary.BigEndian.Uint32(b[4:8])) +
			uint64(binary.BigEndian.Uint32(b[8:12])) +
			uint64(binary.BigEndian.Uint32(b[12:16])) +
			uint64(binary.BigEndian.Uint32(b[16:20])) +
			uint64(binary.BigEndian.Uint32(b[20:24])) +
			uint64(binary.BigEndian.Uint32(b[24:28])) +
			uint64(binary.BigEndian.Uint32(b[28:32]))
		b = b[32:]
	}
	for len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// Fold folds a running sum to 16 bits, without the final complement.
func Fold(acc uint64) uint16 {
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 32) + (acc & 0xffffffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	acc = (acc >> 16) + (acc & 0xffff)
	return uint16(acc)
}

// Checksum returns the Internet checksum of b seeded with acc: the value to
// store in a checksum field that was zero while summing.
func Checksum(b []byte, acc uint64) uint16 {
	return ^Fold(Sum(b, acc))
}

// PseudoHeaderSum returns the running sum of the IPv4 or IPv6 pseudo-header
// for an upper-layer protocol (RFC 768, RFC 8200 section 8.1), given the
// source and destination address bytes (4 or 16 each) and the upper-layer
// length.
func PseudoHeaderSum(src, dst []byte, proto uint8, length int) uint64 {
	acc := Sum(src, 0)
	acc = Sum(dst, acc)
	return acc + uint64(proto) + uint64(length)
}

// SetIPv4Checksum recomputes the header checksum of the IPv4 header h
// (h must hold exactly the header, options included).
func SetIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:12], Checksum(h, 0))
}

// UpdateChecksum16 returns the checksum field value after one 16-bit word of
// the covered data changed from old to new (RFC 1624, equation 3).
func UpdateChecksum16(check, old, new uint16) uint16 {
	acc := uint64(^check) + uint64(^old) + uint64(new)
	return ^Fold(acc)
}

// IsIPv6ExtHeader reports whether proto is an IPv6 extension header that
// the walk in IPv6Walk steps over (RFC 8200 section 4 and RFC 7045; ESP and
// the fragment header are reported, not stepped over).
func IsIPv6ExtHeader(proto uint8) bool {
	switch proto {
	case ProtoHopByHop, ProtoRouting, ProtoDestOpts, ProtoMobility, ProtoHIP, ProtoShim6:
		return true
	}
	return false
}

// IPv6Info is what IPv6Walk learns from an IPv6 header chain.
type IPv6Info struct {
	// Proto is the first protocol that is neither a stepped-over extension
	// header nor a fragment header: the upper layer, ESP or NoNext.
	Proto uint8
	// Off is the offset of that protocol's header in the packet.
	Off int
	// NextHeaderOff is the offset of the byte that holds Proto (6 for the
	// base header, or the first byte of the last extension header).
	NextHeaderOff int
	// FragOff is the offset of the fragment header, or 0 if there is none.
	FragOff int
	// Unfragmentable is the length of the per-fragment headers (RFC 8200
	// section 4.5): the base header, Hop-by-Hop, Routing, and Destination
	// Options headers that precede a Routing header.
	Unfragmentable int
	// UnfragNextHeaderOff is the offset of the next-header byte that closes
	// the unfragmentable part (where a fragment header would be linked in).
	UnfragNextHeaderOff int
}

// maxExtHeaders bounds the walk: a hostile chain of tiny headers cannot
// keep a core busy.
const maxExtHeaders = 16

// IPv6Walk walks the extension header chain of the IPv6 packet p, which
// must start with the base header and be cut to the packet's length. It
// stops at ESP, at an upper layer, at a fragment header that is not the
// first fragment (ok stays true; FragOff tells), or at NoNext.
func IPv6Walk(p []byte) (info IPv6Info, ok bool) {
	if len(p) < IPv6Len || p[0]>>4 != 6 {
		return info, false
	}
	proto := p[6]
	off := IPv6Len
	nhOff := 6
	info.Unfragmentable = IPv6Len
	info.UnfragNextHeaderOff = 6
	seenRouting := false
	for i := 0; i < maxExtHeaders; i++ {
		if proto == ProtoFragment {
			if off+IPv6FragLen > len(p) {
				return info, false
			}
			if info.FragOff != 0 {
				return info, false // two fragment headers
			}
			info.FragOff = off
			fo := binary.BigEndian.Uint16(p[off+2:]) &^ 7
			proto = p[off]
			nhOff = off
			off += IPv6FragLen
			if fo != 0 {
				// A later fragment: what follows is not a header.
				info.Proto, info.Off, info.NextHeaderOff = proto, off, nhOff
				return info, true
			}
			continue
		}
		if !IsIPv6ExtHeader(proto) {
			info.Proto, info.Off, info.NextHeaderOff = proto, off, nhOff
			return info, true
		}
		if off+8 > len(p) {
			return info, false
		}
		hlen := (int(p[off+1]) + 1) * 8
		if off+hlen > len(p) {
			return info, false
		}
		if info.FragOff == 0 {
			switch {
			case proto == ProtoHopByHop && off == IPv6Len:
				info.Unfragmentable, info.UnfragNextHeaderOff = off+hlen, off
			case proto == ProtoRouting:
				seenRouting = true
				info.Unfragmentable, info.UnfragNextHeaderOff = off+hlen, off
			case proto == ProtoDestOpts && !seenRouting && p[off] == ProtoRouting:
				// Destination Options read by every router on a Routing
				// header's path travel in each fragment.
				info.Unfragmentable, info.UnfragNextHeaderOff = off+hlen, off
			}
		}
		proto = p[off]
		nhOff = off
		off += hlen
	}
	return info, false
}
