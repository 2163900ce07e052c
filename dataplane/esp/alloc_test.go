package esp

import (
	"net/netip"
	"testing"
	"unsafe"
)

// TestZeroAllocs proves the per-packet paths allocate nothing: Encap and
// Decap (single, batch and DecapOuter) for every suite and outer variant, the drop
// paths, ParseOuter, WriteTooBig and Stats.
func TestZeroAllocs(t *testing.T) {
	variants := []pairOpts{{}, {v6outer: true, udp: true}, {esn: true}, {transport: true}, {speedPad: maxSpeedPad}}
	for _, suite := range allSuites {
		for _, v := range variants {
			v.suite = suite
			t.Run(v.String(), func(t *testing.T) {
				out, in := newPair(t, v)
				var pkt []byte
				if v.transport {
					pkt = ipv4Packet(gw4a, gw4b, 17, 0, false, udpPayload(1, 2, make([]byte, 500)))
				} else {
					pkt = innerPacket(false, 600)
				}
				buf, off := frameRoom(pkt, SpeedPadTailroom)
				work := make([]byte, len(buf))
				check := func(name string, f func()) {
					t.Helper()
					if n := testing.AllocsPerRun(200, f); n != 0 {
						t.Errorf("%s: %.1f allocations per run", name, n)
					}
				}
				check("encap+decap", func() {
					copy(buf[off:], pkt)
					r := out.Encap(buf, off, len(pkt))
					copy(work, buf)
					if d := in.Decap(work, r.Off, r.Len); d.Verdict != Forward {
						t.Fatal(d.Reason)
					}
				})
				check("encap+decap outer", func() {
					copy(buf[off:], pkt)
					r := out.Encap(buf, off, len(pkt))
					copy(work, buf)
					o, _ := ParseOuter(work[r.Off : r.Off+r.Len])
					if d := in.DecapOuter(work, r.Off, &o); d.Verdict != Forward {
						t.Fatal(d.Reason)
					}
				})
				batch := make([]Packet, 4)
				for i := range batch {
					batch[i].Buf = make([]byte, len(buf))
				}
				check("batch", func() {
					for i := range batch {
						copy(batch[i].Buf[off:], pkt)
						batch[i].Off, batch[i].Len = off, len(pkt)
					}
					out.EncapBatch(batch)
					in.DecapBatch(batch)
				})
				check("drops", func() {
					copy(work, buf)
					in.Decap(work, 0, 10)         // malformed
					in.Decap(work, off, len(pkt)) // replay or garbage
					out.Encap(buf, 0, len(pkt))   // no room
					out.Encap(buf, off, 3)        // malformed
					in.Encap(buf, off, len(pkt))  // wrong direction
					_, _ = ParseOuter(work[off:]) // parse only
					_ = in.Stats()                // reader
					_ = out.TakeEvents()          // events
				})
			})
		}
	}
	reply := make([]byte, 1500)
	src := netip.MustParseAddr("198.18.0.1")
	big := ipv4Packet(host4, peer4, 17, 0, true, make([]byte, 1400))
	src6 := netip.MustParseAddr("2001:db8::1")
	big6 := ipv6Packet(host6, peer6, 17, 0, make([]byte, 1400))
	if n := testing.AllocsPerRun(200, func() {
		WriteTooBig(reply, src, big, 1400)
		WriteTooBig(reply, src6, big6, 1400)
		WriteTooBig(reply, src, []byte{1}, 1400) // error path
	}); n != 0 {
		t.Errorf("WriteTooBig: %.1f allocations per run", n)
	}
}

// TestSASize keeps a cold SA in the 208-byte size class of Go's allocator
// (it was 640 with its cipher state inside, then 256 with its selectors
// as a slice, then 224 with a copy of its sequence number and a byte per
// option): two per tunnel, a million tunnels, and the next class is 224.
func TestSASize(t *testing.T) {
	if n := unsafe.Sizeof(SA{}); n > 208 {
		t.Errorf("esp.SA is %d bytes, want at most 208 (move what only some SAs use behind a pointer, as saExt, or what only warm SAs use into warm)", n)
	}
}
