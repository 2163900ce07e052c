package spu

import (
	"encoding/binary"
	"net/netip"

	"github.com/spugate/spugate/dataplane/iphdr"
)

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// flow is what the exact SPD match and the route lookup need from an IP
// packet.
type flow struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	hasPorts     bool
}

// parseFlow reads the addresses, protocol and ports of the IP packet p
// (starting at its IP header). It allocates nothing.
func parseFlow(p []byte) (f flow, ok bool) {
	if len(p) < 1 {
		return f, false
	}
	var l4 []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < iphdr.IPv4MinLen {
			return f, false
		}
		ihl := int(p[0]&0x0f) * 4
		if ihl < iphdr.IPv4MinLen || len(p) < ihl {
			return f, false
		}
		f.src = netip.AddrFrom4([4]byte(p[12:16]))
		f.dst = netip.AddrFrom4([4]byte(p[16:20]))
		f.proto = p[9]
		// Only the first fragment carries ports.
		if binary.BigEndian.Uint16(p[6:8])&iphdr.IPv4OffsetMask == 0 {
			l4 = p[ihl:]
		}
	case 6:
		if len(p) < iphdr.IPv6Len {
			return f, false
		}
		f.src = netip.AddrFrom16([16]byte(p[8:24]))
		f.dst = netip.AddrFrom16([16]byte(p[24:40]))
		info, ok := iphdr.IPv6Walk(p)
		if !ok {
			return f, false
		}
		f.proto = info.Proto
		if info.Off <= len(p) {
			l4 = p[info.Off:]
		}
		if info.FragOff != 0 && info.Proto == iphdr.ProtoFragment {
			l4 = nil
		}
	default:
		return f, false
	}
	switch f.proto {
	case iphdr.ProtoTCP, iphdr.ProtoUDP, iphdr.ProtoSCTP, iphdr.ProtoUDPLite:
		if len(l4) >= 4 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = binary.BigEndian.Uint16(l4[2:4])
			f.hasPorts = true
		}
	case iphdr.ProtoICMP, iphdr.ProtoICMPv6:
		// IKEv2 selectors carry ICMP type and code as the port
		// (RFC 7296 3.13.1: type in the high byte); it applies to both
		// ends' selectors.
		if len(l4) >= 2 {
			f.sport = uint16(l4[0])<<8 | uint16(l4[1])
			f.dport = f.sport
			f.hasPorts = true
		}
	}
	return f, true
}

// decTTL decrements the TTL or hop limit of the IP packet p, as a router
// forwarding it. It reports false when the packet must not be forwarded
// (TTL would reach zero).
func decTTL(p []byte) bool {
	switch p[0] >> 4 {
	case 4:
		if p[8] <= 1 {
			return false
		}
		old := binary.BigEndian.Uint16(p[8:10])
		p[8]--
		c := binary.BigEndian.Uint16(p[10:12])
		binary.BigEndian.PutUint16(p[10:12], iphdr.UpdateChecksum16(c, old, binary.BigEndian.Uint16(p[8:10])))
		return true
	case 6:
		if p[7] <= 1 {
			return false
		}
		p[7]--
		return true
	}
	return false
}

// ipLen returns the length of the IP packet at p from its header (the
// frame may carry Ethernet padding after it), or 0 if malformed.
func ipLen(p []byte) int {
	if len(p) < 1 {
		return 0
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) < iphdr.IPv4MinLen {
			return 0
		}
		n := int(binary.BigEndian.Uint16(p[2:4]))
		if n < iphdr.IPv4MinLen || n > len(p) {
			return 0
		}
		return n
	case 6:
		if len(p) < iphdr.IPv6Len {
			return 0
		}
		n := iphdr.IPv6Len + int(binary.BigEndian.Uint16(p[4:6]))
		if n > len(p) {
			return 0
		}
		return n
	}
	return 0
}

// putEthernet writes an Ethernet header for an IP packet of the given
// version into b (14 bytes).
func putEthernet(b []byte, dst, src *[6]byte, v6 bool) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	t := uint16(etherIPv4)
	if v6 {
		t = etherIPv6
	}
	binary.BigEndian.PutUint16(b[12:14], t)
}
