package traffic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Header sizes of the frames the generator builds.
const (
	EthLen    = 14
	IPv4Len   = 20
	UDPLen    = 8
	HeaderLen = EthLen + IPv4Len + UDPLen // 42
	// MinFrame is the smallest frame: headers and the payload header, 60
	// bytes, a 64-byte Ethernet frame once the NIC adds its FCS.
	MinFrame = HeaderLen + PayloadLen
	// MaxFrame is the largest frame the generator builds (a 1500-byte IP
	// packet).
	MaxFrame = EthLen + 1500
)

// Flow is one UDP flow over IPv4.
type Flow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// String writes the flow as src:port->dst:port, the form the benchmark's
// logs and flow lists use.
func (f Flow) String() string {
	return fmt.Sprintf("%s:%d->%s:%d", f.Src, f.SrcPort, f.Dst, f.DstPort)
}

// template is a flow's frame header with the lengths and the IP checksum
// left to fill in per packet.
type template struct {
	hdr [HeaderLen]byte
	sum uint32 // one's-complement sum of the IPv4 header without length and checksum
}

func newTemplate(src, dst net.HardwareAddr, f Flow) (template, error) {
	var t template
	if len(src) != 6 || len(dst) != 6 {
		return t, fmt.Errorf("traffic: flow %s: MAC addresses must be 6 bytes", f)
	}
	if !f.Src.Is4() || !f.Dst.Is4() {
		return t, fmt.Errorf("traffic: flow %s: IPv4 addresses only", f)
	}
	b := t.hdr[:]
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[EthLen : EthLen+IPv4Len]
	ip[0] = 0x45
	ip[6] = 0x40 // don't fragment: a gateway must not split benchmark packets
	ip[8], ip[9] = 64, 17
	s, d := f.Src.As4(), f.Dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	for i := 0; i < IPv4Len; i += 2 {
		t.sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	udp := b[EthLen+IPv4Len:]
	binary.BigEndian.PutUint16(udp[0:], f.SrcPort)
	binary.BigEndian.PutUint16(udp[2:], f.DstPort)
	return t, nil
}

// put writes a frame of n bytes (n >= MinFrame) with payload p into b and
// returns n. The bytes after the payload header are left as they were: the
// generator does not spend time on filler nobody reads.
func (t *template) put(b []byte, n int, p Payload) int {
	b = b[:n]
	copy(b, t.hdr[:])
	ipLen := n - EthLen
	binary.BigEndian.PutUint16(b[EthLen+2:], uint16(ipLen))
	sum := t.sum + uint32(ipLen)
	sum = sum>>16 + sum&0xffff
	sum += sum >> 16
	binary.BigEndian.PutUint16(b[EthLen+10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[EthLen+IPv4Len+4:], uint16(ipLen-IPv4Len))
	p.Put(b[HeaderLen:])
	return n
}

// Errors of ParseFrame.
var (
	ErrNotUDP4    = errors.New("traffic: not Ethernet + IPv4 + UDP")
	ErrBadLengths = errors.New("traffic: IPv4 or UDP lengths disagree with the frame")
)

// ParseFrame returns the destination port and the payload header of a
// benchmark frame: Ethernet, IPv4 (options allowed) and UDP.
func ParseFrame(b []byte) (dport uint16, p Payload, err error) {
	if len(b) < EthLen+IPv4Len || binary.BigEndian.Uint16(b[12:]) != 0x0800 || b[EthLen]>>4 != 4 || b[EthLen+9] != 17 {
		return 0, Payload{}, ErrNotUDP4
	}
	ihl := int(b[EthLen]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(b[EthLen+2:]))
	if ihl < IPv4Len || tot < ihl+UDPLen || EthLen+tot > len(b) {
		return 0, Payload{}, ErrBadLengths
	}
	udp := b[EthLen+ihl : EthLen+tot]
	if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return 0, Payload{}, ErrBadLengths
	}
	p, err = ParsePayload(udp[UDPLen:])
	return binary.BigEndian.Uint16(udp[2:]), p, err
}
