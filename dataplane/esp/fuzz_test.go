package esp

import (
	"github.com/spugate/spugate/ipsec"
	"testing"
)

// FuzzDecap feeds arbitrary bytes to Decap of SAs of every suite, with and
// without UDP encapsulation, IPv4 and IPv6: no panic, no read outside the
// packet (the input sits at the very end of its buffer), and a Forward
// result always lies inside it. Seeds are valid packets and mutations.
func FuzzDecap(f *testing.F) {
	type sa struct{ out, in *SA }
	var sas []sa
	for _, s := range allSuites {
		for _, o := range []pairOpts{{suite: s}, {suite: s, v6outer: true, udp: true, esn: true}, {suite: s, transport: true}} {
			out, in := newPair(f, o)
			sas = append(sas, sa{out, in})
		}
	}
	for i, s := range sas {
		pkt := innerPacket(i%2 == 0, 60+i)
		if s.in.mode == Transport {
			pkt = ipv4Packet(gw4a, gw4b, 17, 0, false, udpPayload(1, 2, make([]byte, i)))
		}
		w := encapOne(f, s.out, pkt)
		f.Add(uint8(i), w)
		f.Add(uint8(i), w[:len(w)-1])
		f.Add(uint8(i), append(append([]byte(nil), w[:30]...), 0xff))
	}
	f.Add(uint8(0), []byte{0x45})
	f.Add(uint8(1), []byte{0x60, 0, 0, 0, 0, 8, 0x2b, 64})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		s := sas[int(which)%len(sas)]
		// Reset the window so that seeds keep exercising the crypto path.
		s.in.win.Reset()
		buf := make([]byte, 7+len(data))
		copy(buf[7:], data)
		r := s.in.Decap(buf, 7, len(data))
		if r.Verdict == Forward && (r.Off < 7 || r.Len < 0 || r.Off+r.Len > len(buf)) {
			t.Fatalf("result outside the packet: %+v (len %d)", r, len(buf))
		}
		if r.Verdict == Drop && (r.Reason == None || r.Reason >= NumReasons) {
			t.Fatalf("drop without a reason: %+v", r)
		}
		_, _ = ParseOuter(data)
		var reply [1500]byte
		_, _ = WriteTooBig(reply[:], gw4a, data, 1400)
		_, _ = WriteTooBig(reply[:], gw6a, data, 1400)
	})
}

// FuzzEncap feeds arbitrary inner packets to Encap: no panic, and whatever
// Encap forwards decapsulates back to the same bytes. The tunnel SA speed
// pads, with a tailroom that varies with the input's length so that the
// padding sometimes fits and sometimes not.
func FuzzEncap(f *testing.F) {
	out, in := newPair(f, pairOpts{suite: ipsec.AES128GCM16, mtu: 9000, speedPad: maxSpeedPad})
	tout, tin := newPair(f, pairOpts{suite: ipsec.AES128SHA256, v6outer: true, transport: true, mtu: 9000})
	f.Add(false, innerPacket(false, 100))
	f.Add(false, innerPacket(true, 100))
	f.Add(true, ipv6Packet(gw6a, gw6b, 17, 0, udpPayload(1, 2, []byte("x"))))
	f.Add(true, ipv6Packet(gw6a, gw6b, 0, 0, []byte{17, 0, 1, 4, 0, 0, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0}))
	f.Fuzz(func(t *testing.T, transport bool, data []byte) {
		o, i := out, in
		if transport {
			o, i = tout, tin
		}
		buf := make([]byte, Headroom+len(data)+Tailroom+len(data)%(maxSpeedPad+1))
		copy(buf[Headroom:], data)
		r := o.Encap(buf, Headroom, len(data))
		if r.Verdict != Forward && r.Verdict != Fragment {
			return
		}
		d := i.Decap(buf, r.Off, r.Len)
		if d.Verdict != Forward {
			// Only the selectors, an inner packet that is no valid
			// tunnel payload, or a transport payload of "no next header"
			// (indistinguishable from a dummy packet) may refuse it.
			switch d.Reason {
			case BadInner, BadNextHeader, TSMismatch, Dummy:
				return
			}
			t.Fatalf("Decap refused Encap's packet: %v", d.Reason)
		}
	})
}
