package esp

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// Reasons WriteTooBig writes no reply. They are fixed values, so that the
// per-packet path allocates nothing even when it refuses.
var (
	ErrNoReply     = errors.New("esp: no ICMP error is due for this packet (an ICMP error, a later fragment, or a source that must not be answered)")
	ErrBadPacket   = errors.New("esp: packet for ICMP reply is not a valid IP packet")
	ErrFamily      = errors.New("esp: ICMP reply source is not of the packet's family")
	ErrShortBuffer = errors.New("esp: buffer too small for the ICMP reply")
)

// Largest ICMP error messages: RFC 1812 section 4.3.2.3 (576 bytes) and
// RFC 4443 section 2.4 (c) (the IPv6 minimum MTU).
const (
	maxICMPv4Reply = 576
	maxICMPv6Reply = iphdr.IPv6MinMTU
)

// WriteTooBig writes into dst an IP packet answering pkt, an inner packet
// that did not fit, with an ICMPv4 "fragmentation needed" (type 3 code 4,
// RFC 1191) or an ICMPv6 "packet too big" (RFC 4443 section 3.2) announcing
// mtu, from the gateway address src to pkt's source. It quotes as much of
// pkt as the reply's size limit allows. It returns the reply's length, or
// an error when no reply is due. It allocates nothing.
func WriteTooBig(dst []byte, src netip.Addr, pkt []byte, mtu int) (int, error) {
	if len(pkt) < 1 {
		return 0, ErrBadPacket
	}
	switch pkt[0] >> 4 {
	case 4:
		return writeTooBig4(dst, src.Unmap(), pkt, mtu)
	case 6:
		return writeTooBig6(dst, src, pkt, mtu)
	}
	return 0, ErrBadPacket
}

func writeTooBig4(dst []byte, src netip.Addr, pkt []byte, mtu int) (int, error) {
	if !src.Is4() {
		return 0, ErrFamily
	}
	if len(pkt) < iphdr.IPv4MinLen {
		return 0, ErrBadPacket
	}
	ihl := int(pkt[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < iphdr.IPv4MinLen || tot < ihl || tot > len(pkt) {
		return 0, ErrBadPacket
	}
	pkt = pkt[:tot]
	if binary.BigEndian.Uint16(pkt[6:8])&iphdr.IPv4OffsetMask != 0 {
		return 0, ErrNoReply // RFC 1122 section 3.2.2: only the first fragment
	}
	if pkt[9] == iphdr.ProtoICMP && tot >= ihl+1 && isICMPv4Error(pkt[ihl]) {
		return 0, ErrNoReply
	}
	s := netip.AddrFrom4([4]byte(pkt[12:16]))
	d := netip.AddrFrom4([4]byte(pkt[16:20]))
	if (!s.IsGlobalUnicast() && !s.IsLinkLocalUnicast()) || d.IsMulticast() || d == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return 0, ErrNoReply
	}
	quote := min(tot, maxICMPv4Reply-iphdr.IPv4MinLen-8)
	n := iphdr.IPv4MinLen + 8 + quote
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	h := dst[:iphdr.IPv4MinLen]
	clear(h)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(n))
	h[8] = iphdr.DefaultTTL
	h[9] = iphdr.ProtoICMP
	a := src.As4()
	copy(h[12:16], a[:])
	copy(h[16:20], pkt[12:16])
	iphdr.SetIPv4Checksum(h)
	m := dst[iphdr.IPv4MinLen:n]
	m[0], m[1], m[2], m[3], m[4], m[5] = 3, 4, 0, 0, 0, 0
	binary.BigEndian.PutUint16(m[6:8], uint16(min(mtu, 0xffff)))
	copy(m[8:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:4], iphdr.Checksum(m, 0))
	return n, nil
}

func isICMPv4Error(t byte) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

func writeTooBig6(dst []byte, src netip.Addr, pkt []byte, mtu int) (int, error) {
	if !src.Is6() || src.Is4In6() {
		return 0, ErrFamily
	}
	if len(pkt) < iphdr.IPv6Len {
		return 0, ErrBadPacket
	}
	tot := iphdr.IPv6Len + int(binary.BigEndian.Uint16(pkt[4:6]))
	if tot > len(pkt) {
		return 0, ErrBadPacket
	}
	pkt = pkt[:tot]
	if info, ok := iphdr.IPv6Walk(pkt); ok && info.Proto == iphdr.ProtoICMPv6 && info.Off < tot &&
		(info.FragOff == 0 || binary.BigEndian.Uint16(pkt[info.FragOff+2:])&^7 == 0) && pkt[info.Off] < 128 {
		return 0, ErrNoReply // RFC 4443 section 2.4 (e.1): not for an error message
	}
	s := netip.AddrFrom16([16]byte(pkt[8:24]))
	if s.IsUnspecified() || s.IsMulticast() || s.IsLoopback() {
		return 0, ErrNoReply // RFC 4443 section 2.4 (e.1 to e.6) and (f)
	}
	quote := min(tot, maxICMPv6Reply-iphdr.IPv6Len-8)
	n := iphdr.IPv6Len + 8 + quote
	if len(dst) < n {
		return 0, ErrShortBuffer
	}
	h := dst[:iphdr.IPv6Len]
	clear(h)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(n-iphdr.IPv6Len))
	h[6] = iphdr.ProtoICMPv6
	h[7] = iphdr.DefaultTTL
	a := src.As16()
	copy(h[8:24], a[:])
	copy(h[24:40], pkt[8:24])
	m := dst[iphdr.IPv6Len:n]
	m[0], m[1], m[2], m[3] = 2, 0, 0, 0
	binary.BigEndian.PutUint32(m[4:8], uint32(mtu))
	copy(m[8:], pkt[:quote])
	ck := iphdr.Checksum(m, iphdr.PseudoHeaderSum(h[8:24], h[24:40], iphdr.ProtoICMPv6, len(m)))
	binary.BigEndian.PutUint16(m[2:4], ck)
	return n, nil
}
