package esp

import (
	"bytes"
	"testing"
)

// TestDecapOuterMatchesDecap checks that decapsulating with the caller's
// parse of the outer headers (DecapOuter) gives what Decap gives, packet
// for packet and drop for drop, on two inbound SAs with the same keys.
func TestDecapOuterMatchesDecap(t *testing.T) {
	variants := []pairOpts{{}, {v6outer: true}, {udp: true}, {v6outer: true, udp: true}, {esn: true}, {transport: true}}
	for _, suite := range allSuites {
		for _, v := range variants {
			v.suite = suite
			t.Run(v.String(), func(t *testing.T) {
				out, inA := newPair(t, v)
				_, inB := newPair(t, v)
				var pkt []byte
				if v.transport {
					pkt = ipv4Packet(gw4a, gw4b, 17, 0, false, udpPayload(1, 2, make([]byte, 300)))
				} else {
					pkt = innerPacket(false, 300)
				}
				buf, off := frame(pkt)
				r := out.Encap(buf, off, len(pkt))
				if r.Verdict != Forward {
					t.Fatalf("encap: %v", r.Reason)
				}
				wire := append([]byte(nil), buf[r.Off:r.Off+r.Len]...)
				tampered := append([]byte(nil), wire...)
				tampered[len(tampered)-1] ^= 1
				// The first packet goes through; the second time it is a
				// replay; a flipped ICV bit fails the check.
				for i, p := range [][]byte{wire, wire, tampered} {
					a := append([]byte(nil), p...)
					b := append([]byte(nil), p...)
					da := inA.Decap(a, 0, len(a))
					o, why := ParseOuter(b)
					if why != None {
						t.Fatalf("packet %d: ParseOuter: %v", i, why)
					}
					db := inB.DecapOuter(b, 0, &o)
					if da != db {
						t.Fatalf("packet %d: Decap %+v, DecapOuter %+v", i, da, db)
					}
					if da.Verdict == Forward && !bytes.Equal(a[da.Off:da.Off+da.Len], b[db.Off:db.Off+db.Len]) {
						t.Fatalf("packet %d: inner packets differ", i)
					}
				}
				if inA.Stats() != inB.Stats() {
					t.Fatalf("counters differ: %+v, %+v", inA.Stats(), inB.Stats())
				}
			})
		}
	}
}

// TestDecapOuterBadParse checks that an Outer that does not fit the buffer
// is a counted Malformed drop, not a panic.
func TestDecapOuterBadParse(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: allSuites[0]})
	pkt := innerPacket(false, 100)
	buf, off := frame(pkt)
	r := out.Encap(buf, off, len(pkt))
	good, why := ParseOuter(buf[r.Off : r.Off+r.Len])
	if why != None {
		t.Fatal(why)
	}
	for name, o := range map[string]Outer{
		"end past the buffer": func() Outer { o := good; o.End = len(buf); return o }(),
		"esp before header":   func() Outer { o := good; o.ESPOff = o.HdrEnd - 1; return o }(),
		"short esp":           func() Outer { o := good; o.End = o.ESPOff + 4; return o }(),
		"next header outside": func() Outer { o := good; o.NHOff = o.HdrEnd; return o }(),
	} {
		if d := in.DecapOuter(buf, r.Off, &o); d.Verdict != Drop || d.Reason != Malformed {
			t.Errorf("%s: %+v, want a Malformed drop", name, d)
		}
	}
	if d := in.DecapOuter(buf, -1, &good); d.Reason != Malformed {
		t.Errorf("negative offset: %+v", d)
	}
}
