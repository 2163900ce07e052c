package esp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/iphdr"
)

func TestWriteTooBig4(t *testing.T) {
	gw := netip.MustParseAddr("198.18.0.1")
	pkt := ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, true, udpPayload(1, 2, make([]byte, 1472)))
	dst := make([]byte, 2048)
	n, err := WriteTooBig(dst, gw, pkt, 1438)
	if err != nil {
		t.Fatal(err)
	}
	r := dst[:n]
	if n != 576 || iphdr.Checksum(r[:20], 0) != 0 || r[9] != iphdr.ProtoICMP {
		t.Fatalf("bad IPv4 header %x (len %d)", r[:20], n)
	}
	if !bytes.Equal(r[12:16], gw.AsSlice()) || !bytes.Equal(r[16:20], host4.AsSlice()) {
		t.Fatalf("addresses %x", r[12:20])
	}
	m := r[20:]
	if m[0] != 3 || m[1] != 4 || binary.BigEndian.Uint16(m[6:]) != 1438 || iphdr.Checksum(m, 0) != 0 {
		t.Fatalf("bad ICMP header %x", m[:8])
	}
	if !bytes.Equal(m[8:], pkt[:len(m)-8]) {
		t.Fatal("quote is not the start of the packet")
	}
	// No reply to an ICMP error, to a later fragment, or to a broadcast.
	icmpErr := ipv4Packet(host4, peer4, iphdr.ProtoICMP, 0, true, []byte{3, 4, 0, 0, 0, 0, 5, 0})
	frag := ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, make([]byte, 100))
	binary.BigEndian.PutUint16(frag[6:], 10)
	bcast := ipv4Packet(host4, netip.MustParseAddr("255.255.255.255"), iphdr.ProtoUDP, 0, true, nil)
	zero := ipv4Packet(netip.MustParseAddr("0.0.0.0"), peer4, iphdr.ProtoUDP, 0, true, nil)
	for _, p := range [][]byte{icmpErr, frag, bcast, zero} {
		if _, err := WriteTooBig(dst, gw, p, 1400); !errors.Is(err, ErrNoReply) {
			t.Errorf("reply to %x: %v", p[:20], err)
		}
	}
	if _, err := WriteTooBig(dst[:100], gw, pkt, 1400); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	if _, err := WriteTooBig(dst, gw6a, pkt, 1400); !errors.Is(err, ErrFamily) {
		t.Errorf("family: %v", err)
	}
	// An echo request is answered, small packets are quoted whole.
	echo := ipv4Packet(host4, peer4, iphdr.ProtoICMP, 0, true, icmpEcho(false, 1, 1, nil))
	if n, err := WriteTooBig(dst, gw, echo, 1400); err != nil || n != 28+len(echo) {
		t.Errorf("echo: %d %v", n, err)
	}
}

func TestWriteTooBig6(t *testing.T) {
	pkt := ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(1, 2, make([]byte, 1452)))
	dst := make([]byte, 2048)
	n, err := WriteTooBig(dst, gw6a, pkt, 1438)
	if err != nil {
		t.Fatal(err)
	}
	r := dst[:n]
	if n != 1280 || r[6] != iphdr.ProtoICMPv6 || int(binary.BigEndian.Uint16(r[4:]))+40 != n {
		t.Fatalf("bad IPv6 header %x (len %d)", r[:40], n)
	}
	if !bytes.Equal(r[24:40], host6.AsSlice()) || !bytes.Equal(r[8:24], gw6a.AsSlice()) {
		t.Fatal("addresses")
	}
	m := r[40:]
	if m[0] != 2 || m[1] != 0 || binary.BigEndian.Uint32(m[4:]) != 1438 {
		t.Fatalf("bad ICMPv6 header %x", m[:8])
	}
	if iphdr.Checksum(m, iphdr.PseudoHeaderSum(r[8:24], r[24:40], iphdr.ProtoICMPv6, len(m))) != 0 {
		t.Fatal("bad ICMPv6 checksum")
	}
	if !bytes.Equal(m[8:], pkt[:len(m)-8]) {
		t.Fatal("quote")
	}
	icmpErr := ipv6Packet(host6, peer6, iphdr.ProtoICMPv6, 0, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	mcastSrc := ipv6Packet(netip.MustParseAddr("ff02::1"), peer6, iphdr.ProtoUDP, 0, nil)
	for _, p := range [][]byte{icmpErr, mcastSrc} {
		if _, err := WriteTooBig(dst, gw6a, p, 1400); !errors.Is(err, ErrNoReply) {
			t.Errorf("reply to %x: %v", p[:40], err)
		}
	}
	// RFC 4443 2.4 (e.3): Packet Too Big is sent even to a multicast destination.
	mcastDst := ipv6Packet(host6, netip.MustParseAddr("ff0e::1"), iphdr.ProtoUDP, 0, nil)
	if _, err := WriteTooBig(dst, gw6a, mcastDst, 1400); err != nil {
		t.Errorf("multicast destination: %v", err)
	}
}
