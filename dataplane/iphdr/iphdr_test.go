package iphdr

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

func TestChecksumKnownHeader(t *testing.T) {
	// An IPv4 header from draft-mcgrew-gcm-test-01 (checksum 0xcb7a).
	h, _ := hex.DecodeString("4500003c99c500008001cb7a4067931801010101")
	if Checksum(h, 0) != 0 {
		t.Fatal("valid header does not sum to zero")
	}
	h[10], h[11] = 0, 0
	SetIPv4Checksum(h)
	if binary.BigEndian.Uint16(h[10:]) != 0xcb7a {
		t.Fatalf("checksum %x", h[10:12])
	}
}

func TestIncrementalUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 10000; i++ {
		b := make([]byte, 20+2*rng.IntN(20))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ck := Checksum(b, 0)
		w := 2 * rng.IntN(len(b)/2)
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(b[w:], nw)
		if got, want := UpdateChecksum16(ck, old, nw), Checksum(b, 0); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("incremental %04x, full %04x", got, want)
		}
	}
}

func TestIPv6Walk(t *testing.T) {
	// base | HbH | DestOpts | Routing | Fragment(first) | DestOpts | ESP
	p := make([]byte, 40+8+8+8+8+8+8)
	p[0] = 0x60
	p[6] = ProtoHopByHop
	p[40] = ProtoDestOpts
	p[48] = ProtoRouting
	p[56] = ProtoFragment
	p[64] = ProtoDestOpts // fragment header, offset 0, M=1
	p[65+2] = 1
	p[72] = ProtoESP
	info, ok := IPv6Walk(p)
	if !ok || info.Proto != ProtoESP || info.Off != 80 || info.NextHeaderOff != 72 || info.FragOff != 64 ||
		info.Unfragmentable != 64 || info.UnfragNextHeaderOff != 56 {
		t.Fatalf("%+v %v", info, ok)
	}
	// A later fragment stops the walk at the fragment header.
	binary.BigEndian.PutUint16(p[66:], 8<<3)
	info, ok = IPv6Walk(p)
	if !ok || info.Proto != ProtoDestOpts || info.Off != 72 {
		t.Fatalf("later fragment: %+v %v", info, ok)
	}
	// Truncated chains fail.
	if _, ok := IPv6Walk(p[:60]); ok {
		t.Fatal("truncated chain accepted")
	}
}
