package esp

import (
	"encoding/binary"

	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/ipsec"
)

// noPort is a packet whose ports are unknown.
const noPort = ipsec.NoPort

// tsAllowed reports whether the inner packet p (a validated IP packet cut
// to its length) is inside the SA's selectors: its source in RemoteTS and
// its destination in LocalTS.
func (sa *SA) tsAllowed(p []byte) bool {
	if sa.ts == nil {
		return true
	}
	var (
		v4           bool
		srcHi, srcLo uint64
		dstHi, dstLo uint64
		proto        uint8
		sport, dport = noPort, noPort
		l4           []byte
		portsKnown   bool
	)
	if p[0]>>4 == 4 {
		v4 = true
		srcLo = uint64(binary.BigEndian.Uint32(p[12:16]))
		dstLo = uint64(binary.BigEndian.Uint32(p[16:20]))
		proto = p[9]
		if binary.BigEndian.Uint16(p[6:8])&iphdr.IPv4OffsetMask == 0 {
			l4 = p[int(p[0]&0xf)*4:]
			portsKnown = true
		}
	} else {
		srcHi, srcLo = binary.BigEndian.Uint64(p[8:16]), binary.BigEndian.Uint64(p[16:24])
		dstHi, dstLo = binary.BigEndian.Uint64(p[24:32]), binary.BigEndian.Uint64(p[32:40])
		if sa.has(flagTSPorts) {
			info, ok := iphdr.IPv6Walk(p)
			if !ok {
				return false
			}
			proto = info.Proto
			if info.FragOff == 0 || binary.BigEndian.Uint16(p[info.FragOff+2:])&^7 == 0 {
				l4 = p[info.Off:]
				portsKnown = true
			}
		}
	}
	if sa.has(flagTSPorts) && portsKnown {
		switch proto {
		case iphdr.ProtoTCP, iphdr.ProtoUDP, iphdr.ProtoSCTP, iphdr.ProtoUDPLite:
			if len(l4) >= 4 {
				sport = int(binary.BigEndian.Uint16(l4[0:2]))
				dport = int(binary.BigEndian.Uint16(l4[2:4]))
			}
		case iphdr.ProtoICMP, iphdr.ProtoICMPv6:
			if len(l4) >= 2 {
				// RFC 7296 section 3.13.1: type and code as one 16-bit "port".
				sport = int(binary.BigEndian.Uint16(l4[0:2]))
				dport = sport
			}
		}
	}
	return ipsec.MatchAny(sa.remoteTS(), v4, srcHi, srcLo, proto, sport) &&
		ipsec.MatchAny(sa.localTS(), v4, dstHi, dstLo, proto, dport)
}
