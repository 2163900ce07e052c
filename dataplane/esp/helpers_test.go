package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// Addresses of the tests: the benchmarking ranges only.
var (
	gw4a  = netip.MustParseAddr("198.18.0.1")
	gw4b  = netip.MustParseAddr("198.18.0.2")
	gw6a  = netip.MustParseAddr("2001:db8::1")
	gw6b  = netip.MustParseAddr("2001:db8::2")
	host4 = netip.MustParseAddr("198.19.1.10") // behind gateway a
	peer4 = netip.MustParseAddr("198.19.2.20") // behind gateway b
	host6 = netip.MustParseAddr("2001:db8:1::10")
	peer6 = netip.MustParseAddr("2001:db8:2::20")
)

var allSuites = []ipsec.Suite{ipsec.AES128GCM16, ipsec.AES192GCM16, ipsec.AES256GCM16, ipsec.ChaCha20Poly1305, ipsec.AES128SHA256, ipsec.AES256SHA256}

// testKeys returns deterministic keys for a suite.
func testKeys(s ipsec.Suite, seed byte) (enc, integ []byte) {
	enc = make([]byte, s.EncKeyLen())
	for i := range enc {
		enc[i] = seed + byte(i)
	}
	if n := s.IntegKeyLen(); n > 0 {
		integ = make([]byte, n)
		for i := range integ {
			integ[i] = seed ^ byte(0x80+i)
		}
	}
	return enc, integ
}

type pairOpts struct {
	suite     ipsec.Suite
	v6outer   bool
	udp       bool
	esn       bool
	transport bool
	mtu       int
	window    int
	spi       uint32
	speedPad  int
}

// pairConfig returns the configs of the outbound SA on gateway a and the
// matching inbound SA on gateway b.
func pairConfig(o pairOpts) (out, in Config) {
	if o.spi == 0 {
		o.spi = 0xc001
	}
	enc, integ := testKeys(o.suite, 0x40)
	local, remote := gw4a, gw4b
	if o.v6outer {
		local, remote = gw6a, gw6b
	}
	mode := Tunnel
	if o.transport {
		mode = Transport
	}
	out = Config{
		SPI: o.spi, Direction: Outbound, Suite: o.suite, EncKey: enc, IntegKey: integ,
		Mode: mode, Local: local, Remote: remote, ESN: o.esn, PathMTU: o.mtu,
		SpeedPad: o.speedPad,
	}
	if o.udp {
		out.UDPEncap, out.LocalPort, out.RemotePort = true, 4500, 4500
	}
	in = out
	in.Direction = Inbound
	in.Local, in.Remote = remote, local
	in.ReplayWindow = o.window
	return out, in
}

func newPair(t testing.TB, o pairOpts) (out, in *SA) {
	t.Helper()
	oc, ic := pairConfig(o)
	var err error
	if out, err = NewSA(oc); err != nil {
		t.Fatal(err)
	}
	if in, err = NewSA(ic); err != nil {
		t.Fatal(err)
	}
	return out, in
}

// ipv4Packet builds an IPv4 packet with the given protocol and payload.
func ipv4Packet(src, dst netip.Addr, proto byte, tos byte, df bool, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	p[1] = tos
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	if df {
		p[6] = 0x40
	}
	p[8] = 64
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	iphdr.SetIPv4Checksum(p[:20])
	copy(p[20:], payload)
	return p
}

func ipv6Packet(src, dst netip.Addr, proto byte, tc byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	binary.BigEndian.PutUint32(p[0:], 6<<28|uint32(tc)<<20|0x12345)
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6] = proto
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	return p
}

func udpPayload(sport, dport uint16, data []byte) []byte {
	u := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], data)
	return u
}

func icmpEcho(v6 bool, id, seq uint16, data []byte) []byte {
	m := make([]byte, 8+len(data))
	m[0] = 8
	if v6 {
		m[0] = 128
	}
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], data)
	if !v6 {
		binary.BigEndian.PutUint16(m[2:], iphdr.Checksum(m, 0))
	}
	return m
}

func fixICMPv6(p []byte) {
	m := p[40:]
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:], iphdr.Checksum(m, iphdr.PseudoHeaderSum(p[8:24], p[24:40], iphdr.ProtoICMPv6, len(m))))
}

// innerPacket returns an inner packet of the family with total length n
// (at least 48), a UDP datagram from the host to the peer.
func innerPacket(v6 bool, n int) []byte {
	if v6 {
		data := make([]byte, n-48)
		for i := range data {
			data[i] = byte(i)
		}
		return ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(1000, 2000, data))
	}
	data := make([]byte, n-28)
	for i := range data {
		data[i] = byte(i)
	}
	return ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, udpPayload(1000, 2000, data))
}

// frame places pkt in a fresh buffer with Headroom and Tailroom around it.
func frame(pkt []byte) (buf []byte, off int) {
	return frameRoom(pkt, Tailroom)
}

// frameRoom places pkt in a fresh buffer with Headroom before it and tail
// bytes after it.
func frameRoom(pkt []byte, tail int) (buf []byte, off int) {
	buf = make([]byte, Headroom+len(pkt)+tail)
	copy(buf[Headroom:], pkt)
	return buf, Headroom
}

func (o pairOpts) String() string {
	outer := "4"
	if o.v6outer {
		outer = "6"
	}
	s := fmt.Sprintf("%s/outer%s", o.suite, outer)
	if o.udp {
		s += "/udp"
	}
	if o.esn {
		s += "/esn"
	}
	if o.transport {
		s += "/transport"
	}
	if o.speedPad != 0 {
		s += fmt.Sprintf("/speedpad%d", o.speedPad)
	}
	return s
}

// roundTrip encapsulates pkt with out and decapsulates the result with in,
// and checks that the inner packet comes back unchanged.
func roundTrip(t *testing.T, out, in *SA, pkt []byte) []byte {
	t.Helper()
	buf, off := frame(pkt)
	r := out.Encap(buf, off, len(pkt))
	if r.Verdict != Forward {
		t.Fatalf("encap: verdict %v reason %v", r.Verdict, r.Reason)
	}
	wire := append([]byte(nil), buf[r.Off:r.Off+r.Len]...)
	d := in.Decap(buf, r.Off, r.Len)
	if d.Verdict != Forward {
		t.Fatalf("decap: verdict %v reason %v", d.Verdict, d.Reason)
	}
	if got := buf[d.Off : d.Off+d.Len]; !bytes.Equal(got, pkt) {
		t.Fatalf("inner packet changed:\n got %x\nwant %x", got, pkt)
	}
	return wire
}

// encryptedLen is the length of the encrypted part (payload, padding, pad
// length, next header) of a tunnel-mode ESP packet of wireLen bytes.
func encryptedLen(o pairOpts, wireLen int) int {
	n := wireLen - 20 - espHdrLen - o.suite.IVLen() - icvLen
	if o.v6outer {
		n -= 20
	}
	if o.udp {
		n -= 8
	}
	return n
}
