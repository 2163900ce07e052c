package message

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// NATDetectionHash is the data of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notify (RFC 7296 section 2.23):
//
//	SHA-1(SPIi | SPIr | IP | Port)
//
// with the SPIs of the IKE header (SPIr is zero in an IKE_SA_INIT request)
// and the source (for SOURCE_IP) or destination (for DESTINATION_IP)
// address and port of the datagram, the address as 4 or 16 bytes. A
// receiver compares the hashes of the addresses it sees with those it got:
// a mismatch means a NAT on the path.
func NATDetectionHash(spii, spir uint64, ap netip.AddrPort) [sha1.Size]byte {
	var b [8 + 8 + 16 + 2]byte
	binary.BigEndian.PutUint64(b[0:], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	n := 16
	addr := ap.Addr().Unmap()
	if addr.Is4() {
		a := addr.As4()
		copy(b[16:], a[:])
		n = 4
	} else {
		a := addr.As16()
		copy(b[16:], a[:])
	}
	binary.BigEndian.PutUint16(b[16+n:], ap.Port())
	return sha1.Sum(b[:16+n+2])
}
