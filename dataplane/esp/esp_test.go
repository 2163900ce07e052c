package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/iphdr"
)

func TestRoundTripAllCombinations(t *testing.T) {
	for _, suite := range allSuites {
		for _, v6outer := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				for _, esn := range []bool{false, true} {
					o := pairOpts{suite: suite, v6outer: v6outer, udp: udp, esn: esn}
					t.Run(o.String(), func(t *testing.T) {
						out, in := newPair(t, o)
						for _, v6inner := range []bool{false, true} {
							for _, n := range []int{48, 49, 50, 51, 64, 100, 513, 1400} {
								wire := roundTrip(t, out, in, innerPacket(v6inner, n))
								checkWire(t, out, wire, v6outer, udp)
							}
						}
						st := in.Stats()
						if st.Packets != 16 || st.Drops != [NumReasons]uint64{} {
							t.Fatalf("inbound stats %+v", st)
						}
						if so := out.Stats(); so.Packets != 16 || so.Seq != 16 {
							t.Fatalf("outbound stats %+v", so)
						}
					})
				}
			}
		}
	}
}

func TestRoundTripTransport(t *testing.T) {
	for _, suite := range allSuites {
		for _, v6 := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				o := pairOpts{suite: suite, v6outer: v6, udp: udp, transport: true}
				t.Run(o.String(), func(t *testing.T) {
					out, in := newPair(t, o)
					for _, n := range []int{30, 64, 777} {
						var pkt []byte
						if v6 {
							pkt = ipv6Packet(gw6a, gw6b, iphdr.ProtoUDP, 0, udpPayload(1, 2, make([]byte, n)))
						} else {
							pkt = ipv4Packet(gw4a, gw4b, iphdr.ProtoUDP, 0, true, udpPayload(1, 2, make([]byte, n)))
						}
						wire := roundTrip(t, out, in, pkt)
						checkWire(t, out, wire, v6, udp)
					}
				})
			}
		}
	}
}

func TestTransportIPv6ExtensionHeaders(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, v6outer: true, transport: true})
	// Hop-by-Hop (PadN) then Destination Options then UDP: ESP goes after
	// the Hop-by-Hop header, the Destination Options travel encrypted.
	hbh := []byte{iphdr.ProtoDestOpts, 0, 1, 4, 0, 0, 0, 0}
	dst := []byte{iphdr.ProtoUDP, 0, 1, 4, 0, 0, 0, 0}
	payload := append(append(append([]byte(nil), hbh...), dst...), udpPayload(7, 8, []byte("hello"))...)
	pkt := ipv6Packet(gw6a, gw6b, iphdr.ProtoHopByHop, 0, payload)
	wire := roundTrip(t, out, in, pkt)
	if wire[6] != iphdr.ProtoHopByHop || wire[40] != iphdr.ProtoESP {
		t.Fatalf("ESP not placed after the Hop-by-Hop header: %x", wire[:56])
	}
}

// checkWire checks the outer headers Encap wrote.
func checkWire(t *testing.T, sa *SA, w []byte, v6outer, udp bool) {
	t.Helper()
	var espOff int
	if !v6outer {
		if w[0]>>4 != 4 || int(binary.BigEndian.Uint16(w[2:])) != len(w) {
			t.Fatalf("bad outer IPv4 header %x", w[:20])
		}
		ihl := int(w[0]&0xf) * 4
		if iphdr.Checksum(w[:ihl], 0) != 0 {
			t.Fatalf("bad outer IPv4 checksum %x", w[:20])
		}
		espOff = ihl
		if want := byte(iphdr.ProtoESP); !udp && w[9] != want {
			t.Fatalf("outer protocol %d", w[9])
		}
	} else {
		if w[0]>>4 != 6 || 40+int(binary.BigEndian.Uint16(w[4:])) != len(w) {
			t.Fatalf("bad outer IPv6 header %x", w[:40])
		}
		info, ok := iphdr.IPv6Walk(w)
		if !ok {
			t.Fatal("bad IPv6 chain")
		}
		espOff = info.Off
	}
	if udp {
		u := w[espOff:]
		if binary.BigEndian.Uint16(u[0:]) != 4500 || binary.BigEndian.Uint16(u[2:]) != 4500 || int(binary.BigEndian.Uint16(u[4:])) != len(u) {
			t.Fatalf("bad UDP header %x", u[:8])
		}
		if v6outer {
			var src, dst []byte = w[8:24], w[24:40]
			if iphdr.Checksum(u, iphdr.PseudoHeaderSum(src, dst, iphdr.ProtoUDP, len(u))) != 0 {
				t.Fatal("bad UDP checksum over IPv6")
			}
		}
		espOff += 8
	}
	esp := w[espOff:]
	if binary.BigEndian.Uint32(esp) != sa.spi {
		t.Fatalf("SPI %x", esp[:4])
	}
	seqLo := binary.BigEndian.Uint32(esp[4:])
	if seqLo != uint32(sa.seq.Load()) {
		t.Fatalf("sequence number %d, SA at %d", seqLo, sa.seq.Load())
	}
	if sa.has(flagAEAD) && binary.BigEndian.Uint64(esp[8:]) != sa.seq.Load() {
		t.Fatalf("AEAD IV %x is not the sequence number %d", esp[8:16], sa.seq.Load())
	}
	ct := len(esp) - 8 - int(sa.ivLen) - icvLen
	if ct%blockLen(sa.suite) != 0 {
		t.Fatalf("ciphertext length %d not aligned", ct)
	}
}

// TestCBCIVsAreEncryptedCounters checks every IV against AES, under the
// IV key derived as initCrypto documents, of SPI || 0 || sequence number:
// across the batches of the keystream, after Restore on a fresh SA (state
// moved mid-batch), and for a number out of step.
func TestCBCIVsAreEncryptedCounters(t *testing.T) {
	for _, suite := range []ipsec.Suite{ipsec.AES128SHA256, ipsec.AES256SHA256} {
		o := pairOpts{suite: suite}
		out, _ := newPair(t, o)
		enc, integ := testKeys(suite, 0x40)
		m := hmac.New(sha256.New, integ)
		m.Write([]byte("spugate esp-cbc iv key"))
		blk, err := aes.NewCipher(m.Sum(nil)[:len(enc)])
		if err != nil {
			t.Fatal(err)
		}
		want := func(seq uint64) []byte {
			var in, iv [16]byte
			binary.BigEndian.PutUint32(in[0:4], 0xc001)
			binary.BigEndian.PutUint64(in[8:16], seq)
			blk.Encrypt(iv[:], in[:])
			return iv[:]
		}
		pkt := innerPacket(false, 64)
		check := func(sa *SA, seq uint64) {
			t.Helper()
			w := encapOne(t, sa, pkt)
			if got := w[28:44]; !bytes.Equal(got, want(seq)) {
				t.Fatalf("%s: IV of seq %d is %x, want %x", suite, seq, got, want(seq))
			}
		}
		for seq := uint64(1); seq <= 3*ivBatch+3; seq++ {
			check(out, seq)
		}
		moved, _ := newPair(t, o)
		if err := moved.Restore(out.State()); err != nil {
			t.Fatal(err)
		}
		for seq := uint64(3*ivBatch + 4); seq <= 5*ivBatch; seq++ {
			check(moved, seq)
			check(out, seq)
		}
		var iv [16]byte
		out.ivFor(out.hot(), iv[:], 7)
		if !bytes.Equal(iv[:], want(7)) {
			t.Fatalf("%s: out-of-step IV %x, want %x", suite, iv, want(7))
		}
	}
}

func TestCBCIVsDiffer(t *testing.T) {
	out, _ := newPair(t, pairOpts{suite: ipsec.AES128SHA256})
	seen := map[[16]byte]bool{}
	pkt := innerPacket(false, 64)
	for i := 0; i < 1000; i++ {
		buf, off := frame(pkt)
		r := out.Encap(buf, off, len(pkt))
		var iv [16]byte
		copy(iv[:], buf[r.Off+28:])
		if seen[iv] {
			t.Fatalf("IV repeated at packet %d", i)
		}
		seen[iv] = true
	}
}

func TestESNAcross32BitBoundary(t *testing.T) {
	for _, suite := range []ipsec.Suite{ipsec.AES128GCM16, ipsec.ChaCha20Poly1305, ipsec.AES256SHA256} {
		t.Run(suite.String(), func(t *testing.T) {
			out, in := newPair(t, pairOpts{suite: suite, esn: true})
			start := uint64(1<<32 - 5)
			st := out.State()
			st.Seq = start
			if err := out.Restore(st); err != nil {
				t.Fatal(err)
			}
			ist := in.State()
			ist.Replay.Top = start - 2
			if err := in.Restore(ist); err != nil {
				t.Fatal(err)
			}
			pkt := innerPacket(false, 100)
			var wires [][]byte
			for i := 0; i < 10; i++ {
				wires = append(wires, roundTrip(t, out, in, pkt))
			}
			if got := in.win.Top(); got != start+10 {
				t.Fatalf("inbound top %#x, want %#x", got, start+10)
			}
			// The wire carries only the low half.
			if seqLo := binary.BigEndian.Uint32(wires[9][24:]); seqLo != uint32(start+10) {
				t.Fatalf("wire seq %#x", seqLo)
			}
			// Replaying a packet from before the boundary is caught.
			buf, off := frame(wires[2])
			if r := in.Decap(buf, off, len(wires[2])); r.Reason != Replay {
				t.Fatalf("replay across boundary: %v %v", r.Verdict, r.Reason)
			}
		})
	}
}

func TestESNWrongHighBitsFailICV(t *testing.T) {
	// Without ESN on the receiver, an ESN sender's packets past 2^32 fail.
	oc, ic := pairConfig(pairOpts{suite: ipsec.AES128GCM16, esn: true})
	ic.ESN = false
	out, _ := NewSA(oc)
	in, _ := NewSA(ic)
	st := out.State()
	st.Seq = 1 << 32
	out.Restore(st)
	pkt := innerPacket(false, 64)
	buf, off := frame(pkt)
	r := out.Encap(buf, off, len(pkt))
	if d := in.Decap(buf, r.Off, r.Len); d.Reason != BadICV {
		t.Fatalf("got %v %v", d.Verdict, d.Reason)
	}
}

func encapOne(t testing.TB, out *SA, pkt []byte) []byte {
	t.Helper()
	buf, off := frameRoom(pkt, SpeedPadTailroom)
	r := out.Encap(buf, off, len(pkt))
	if r.Verdict != Forward {
		t.Fatalf("encap %v %v", r.Verdict, r.Reason)
	}
	return append([]byte(nil), buf[r.Off:r.Off+r.Len]...)
}

func decapOne(in *SA, wire []byte) Result {
	buf := append([]byte(nil), wire...)
	return in.Decap(buf, 0, len(buf))
}

func TestReplayEdgeCases(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, window: 64})
	pkt := innerPacket(false, 64)
	var w [200][]byte
	for i := 1; i < 200; i++ {
		w[i] = encapOne(t, out, pkt)
	}
	expect := func(seq int, want Reason) {
		t.Helper()
		r := decapOne(in, w[seq])
		if r.Reason != want {
			t.Fatalf("seq %d: reason %v, want %v", seq, r.Reason, want)
		}
	}
	expect(1, None)
	expect(1, Replay)        // duplicate
	expect(100, None)        // far ahead: window slides
	expect(37, None)         // inside the window (100-64 < 37)
	expect(36, ReplayTooOld) // just left of the window
	expect(2, ReplayTooOld)
	expect(37, Replay)
	expect(99, None)
	expect(199, None) // slide by more than the window
	expect(100, ReplayTooOld)
	expect(136, None) // 199-64 = 135 is the last too old
	expect(135, ReplayTooOld)
	// A forged packet ahead of the window must not move it.
	forged := append([]byte(nil), w[150]...)
	binary.BigEndian.PutUint32(forged[24:], 5000)
	if r := decapOne(in, forged); r.Reason != BadICV {
		t.Fatalf("forged: %v", r.Reason)
	}
	expect(150, None)
	st := in.Stats()
	if st.Drops[Replay] != 2 || st.Drops[ReplayTooOld] != 4 || st.Drops[BadICV] != 1 {
		t.Fatalf("drops %v", st.Drops)
	}
}

// With anti-replay off (strongSwan's replay_window = 0, ReplayOff here),
// duplicates and old numbers pass; a forged packet still does not.
func TestReplayOff(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, window: ReplayOff})
	pkt := innerPacket(false, 64)
	var w [3000][]byte
	for i := 1; i < len(w); i++ {
		w[i] = encapOne(t, out, pkt)
	}
	for _, seq := range []int{1, 1, 2999, 2, 2} {
		if r := decapOne(in, w[seq]); r.Reason != None {
			t.Fatalf("seq %d: %v, want it forwarded with anti-replay off", seq, r.Reason)
		}
	}
	forged := append([]byte(nil), w[5]...)
	forged[len(forged)-1] ^= 1
	if r := decapOne(in, forged); r.Reason != BadICV {
		t.Fatalf("forged: %v", r.Reason)
	}
	_, ic := pairConfig(pairOpts{suite: ipsec.AES128GCM16, window: -2})
	if _, err := NewSA(ic); err == nil || !strings.Contains(err.Error(), "replay window -2") {
		t.Errorf("a window of -2: %v", err)
	}
}

func TestStateRestoreContinues(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.ChaCha20Poly1305, esn: true})
	pkt := innerPacket(true, 200)
	var wires [][]byte
	for i := 0; i < 50; i++ {
		wires = append(wires, encapOne(t, out, pkt))
	}
	for i := 0; i < 40; i++ {
		if r := decapOne(in, wires[i]); r.Verdict != Forward {
			t.Fatal(r.Reason)
		}
	}
	decapOne(in, wires[3]) // one replay drop, carried in the state
	ost, ist := out.State(), in.State()

	// "Migrate": new SAs from the same configs, restored from the state.
	oc, ic := pairConfig(pairOpts{suite: ipsec.ChaCha20Poly1305, esn: true})
	out2, _ := NewSA(oc)
	in2, _ := NewSA(ic)
	if err := out2.Restore(ost); err != nil {
		t.Fatal(err)
	}
	if err := in2.Restore(ist); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if r := decapOne(in2, wires[i]); r.Verdict != Drop || r.Reason != Replay {
			t.Fatalf("restored SA accepted a replay of packet %d: %v %v", i, r.Verdict, r.Reason)
		}
	}
	for i := 40; i < 50; i++ {
		if r := decapOne(in2, wires[i]); r.Verdict != Forward {
			t.Fatalf("packet %d after restore: %v", i, r.Reason)
		}
	}
	w := encapOne(t, out2, pkt)
	if seq := binary.BigEndian.Uint32(w[24:]); seq != 51 {
		t.Fatalf("restored outbound SA sent seq %d, want 51", seq)
	}
	if r := decapOne(in2, w); r.Verdict != Forward {
		t.Fatal(r.Reason)
	}
	if s := in2.Stats(); s.Packets != 51 || s.Drops[Replay] != 41 {
		t.Fatalf("restored stats %+v", s)
	}
	// A state of another SA is refused.
	if err := in2.Restore(ost); err == nil {
		t.Fatal("restored an outbound state into an inbound SA")
	}
}

func TestSeqExhaustion(t *testing.T) {
	out, _ := newPair(t, pairOpts{suite: ipsec.AES128GCM16})
	st := out.State()
	st.Seq = DefaultSeqSoftLimit32 - 2
	out.Restore(st)
	pkt := innerPacket(false, 64)
	encapOne(t, out, pkt)
	if e := out.TakeEvents(); e != 0 {
		t.Fatalf("early event %v", e)
	}
	encapOne(t, out, pkt) // reaches the soft limit
	if e := out.TakeEvents(); e != EventSeqNearExhaustion {
		t.Fatalf("event %v", e)
	}
	encapOne(t, out, pkt)
	if e := out.TakeEvents(); e != 0 {
		t.Fatalf("event raised twice: %v", e)
	}
	st = out.State()
	st.Seq = 1<<32 - 2
	out.Restore(st)
	w := encapOne(t, out, pkt)
	if seq := binary.BigEndian.Uint32(w[24:]); seq != 1<<32-1 {
		t.Fatalf("last seq %#x", seq)
	}
	buf, off := frame(pkt)
	if r := out.Encap(buf, off, len(pkt)); r.Reason != SeqExhausted {
		t.Fatalf("sent past the end: %v %v", r.Verdict, r.Reason)
	}
	if e := out.TakeEvents(); e != EventSeqExhausted {
		t.Fatalf("event %v", e)
	}
	if out.Stats().Drops[SeqExhausted] != 1 {
		t.Fatal("drop not counted")
	}
}

func TestLifetimes(t *testing.T) {
	for _, dir := range []Direction{Outbound, Inbound} {
		t.Run(dir.String(), func(t *testing.T) {
			oc, ic := pairConfig(pairOpts{suite: ipsec.AES256GCM16})
			lt := Lifetime{SoftPackets: 5, HardPackets: 8, SoftBytes: 1 << 40, HardBytes: 1 << 40}
			if dir == Outbound {
				oc.Lifetime = lt
			} else {
				ic.Lifetime = lt
			}
			out, _ := NewSA(oc)
			in, _ := NewSA(ic)
			sa := out
			if dir == Inbound {
				sa = in
			}
			pkt := innerPacket(false, 100)
			var events []Events
			drops := 0
			for i := 0; i < 12; i++ {
				buf, off := frame(pkt)
				r := out.Encap(buf, off, len(pkt))
				if r.Verdict == Forward {
					r = in.Decap(buf, r.Off, r.Len)
				}
				if r.Verdict == Drop {
					if r.Reason != HardLifetime {
						t.Fatalf("packet %d: %v", i, r.Reason)
					}
					drops++
				}
				events = append(events, sa.TakeEvents())
			}
			if drops != 4 {
				t.Fatalf("%d drops, want 4", drops)
			}
			if events[4] != EventSoftLifetime || events[7] != EventHardLifetime {
				t.Fatalf("events %v", events)
			}
			for i, e := range events {
				if i != 4 && i != 7 && e != 0 {
					t.Fatalf("unexpected event %v at %d", e, i)
				}
			}
		})
	}
	// Bytes.
	oc, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
	oc.Lifetime = Lifetime{SoftBytes: 250, HardBytes: 400}
	out, _ := NewSA(oc)
	pkt := innerPacket(false, 100)
	var got []Events
	for i := 0; i < 5; i++ {
		buf, off := frame(pkt)
		out.Encap(buf, off, len(pkt))
		got = append(got, out.TakeEvents())
	}
	if got[2] != EventSoftLifetime || got[3] != EventHardLifetime {
		t.Fatalf("byte lifetime events %v", got)
	}
}

func TestDecapValidation(t *testing.T) {
	for _, suite := range allSuites {
		t.Run(suite.String(), func(t *testing.T) {
			out, in := newPair(t, pairOpts{suite: suite})
			pkt := innerPacket(false, 100)
			good := encapOne(t, out, pkt)

			flip := func(i int) []byte {
				w := append([]byte(nil), good...)
				w[i] ^= 1
				return w
			}
			if r := decapOne(in, flip(len(good)-1)); r.Reason != BadICV {
				t.Fatalf("ICV flip: %v", r.Reason)
			}
			if r := decapOne(in, flip(40)); r.Reason != BadICV {
				t.Fatalf("ciphertext flip: %v", r.Reason)
			}
			if r := decapOne(in, flip(22)); r.Reason != UnknownSPI {
				t.Fatalf("SPI flip: %v", r.Reason)
			}
			if r := decapOne(in, good[:40]); r.Reason != Malformed {
				t.Fatalf("truncated: %v", r.Reason)
			}
			short := append([]byte(nil), good[:20+8+in.ivLen+icvLen+1]...)
			binary.BigEndian.PutUint16(short[2:], uint16(len(short)))
			iphdr.SetIPv4Checksum(short[:20])
			if r := decapOne(in, short); r.Reason != ShortPacket {
				t.Fatalf("short: %v", r.Reason)
			}
			if r := decapOne(in, good); r.Verdict != Forward {
				t.Fatalf("good packet: %v", r.Reason)
			}
			// Ethernet padding after the IP packet is ignored.
			padded := append(append([]byte(nil), encapOne(t, out, pkt)...), 0, 0, 0, 0)
			if r := decapOne(in, padded); r.Verdict != Forward {
				t.Fatalf("padded frame: %v", r.Reason)
			}
		})
	}
}

// sealCustom builds a valid ESP packet with the SA's keys but a chosen
// plaintext (payload, padding and trailer), to test trailer validation.
func sealCustom(out *SA, plaintext []byte) []byte {
	seq := out.seq.Load() + 1
	out.seq.Store(seq)
	iv := int(out.ivLen)
	w := make([]byte, 20+8+iv+len(plaintext)+icvLen)
	copy(w, out.hot().hdr4[:])
	binary.BigEndian.PutUint16(w[2:], uint16(len(w)))
	iphdr.SetIPv4Checksum(w[:20])
	esp := w[20:]
	binary.BigEndian.PutUint32(esp, out.spi)
	binary.BigEndian.PutUint32(esp[4:], uint32(seq))
	copy(esp[8+iv:], plaintext)
	out.seal(out.hot(), esp, seq, len(plaintext))
	return w
}

func TestTrailerValidation(t *testing.T) {
	for _, suite := range []ipsec.Suite{ipsec.AES128GCM16, ipsec.AES128SHA256} {
		t.Run(suite.String(), func(t *testing.T) {
			out, in := newPair(t, pairOpts{suite: suite})
			inner := innerPacket(false, 60)
			trail := func(pad []byte, padLen, nh byte) []byte {
				p := append(append(append([]byte(nil), inner...), pad...), padLen, nh)
				return p
			}
			pad := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(i + 1)
				}
				return b
			}
			// 60 + pad + 2 must be a multiple of the block: AEAD 4 -> pad 2 (or 6), CBC 16 -> pad 2 (or 18).
			cases := []struct {
				name string
				pt   []byte
				want Reason
			}{
				{"good", trail(pad(2), 2, 4), None},
				{"long padding", trail(pad(18), 18, 4), None},
				{"bad padding byte", trail([]byte{1, 3}, 2, 4), BadPadding},
				{"pad length too big", trail(pad(2), 200, 4), BadPadLength},
				{"next header tcp", trail(pad(2), 2, 6), BadNextHeader},
				{"dummy", trail(pad(2), 2, 59), Dummy},
				{"inner family mismatch", trail(pad(2), 2, 41), BadInner},
			}
			for _, c := range cases {
				r := decapOne(in, sealCustom(out, c.pt))
				if r.Reason != c.want {
					t.Errorf("%s: reason %v, want %v", c.name, r.Reason, c.want)
				}
			}
			if n := in.Stats().Drops[Dummy]; n != 1 {
				t.Errorf("dummy drops %d", n)
			}
		})
	}
}

func TestTrafficSelectors(t *testing.T) {
	oc, ic := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
	ic.LocalTS = []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.19.2.0/24"), 0)}
	ic.RemoteTS = []ipsec.Selector{
		{Proto: iphdr.ProtoUDP, From: host4, To: host4, FromPort: 1000, ToPort: 1000},
		{Proto: iphdr.ProtoICMP, From: host4, To: host4, FromPort: 8 << 8, ToPort: 8<<8 | 0xff},
	}
	out, _ := NewSA(oc)
	in, _ := NewSA(ic)
	cases := []struct {
		name string
		pkt  []byte
		want Reason
	}{
		{"udp allowed", ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, udpPayload(1000, 53, nil)), None},
		{"udp wrong source port", ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, udpPayload(1001, 53, nil)), TSMismatch},
		{"tcp not negotiated", ipv4Packet(host4, peer4, iphdr.ProtoTCP, 0, false, make([]byte, 20)), TSMismatch},
		{"echo request allowed", ipv4Packet(host4, peer4, iphdr.ProtoICMP, 0, false, icmpEcho(false, 1, 1, nil)), None},
		{"spoofed source", ipv4Packet(netip.MustParseAddr("198.19.1.11"), peer4, iphdr.ProtoUDP, 0, false, udpPayload(1000, 53, nil)), TSMismatch},
		{"destination outside", ipv4Packet(host4, netip.MustParseAddr("198.19.3.1"), iphdr.ProtoUDP, 0, false, udpPayload(1000, 53, nil)), TSMismatch},
		{"wrong family", ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(1000, 53, nil)), TSMismatch},
	}
	for _, c := range cases {
		r := decapOne(in, encapOne(t, out, c.pkt))
		if r.Reason != c.want {
			t.Errorf("%s: %v, want %v", c.name, r.Reason, c.want)
		}
	}
	// A later fragment has no ports: only a full port range matches it.
	frag := ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, make([]byte, 16))
	binary.BigEndian.PutUint16(frag[6:], 100)
	iphdr.SetIPv4Checksum(frag[:20])
	if r := decapOne(in, encapOne(t, out, frag)); r.Reason != TSMismatch {
		t.Errorf("fragment matched a port selector: %v", r.Reason)
	}

	// IPv6 ranges.
	oc6, ic6 := pairConfig(pairOpts{suite: ipsec.AES128GCM16, v6outer: true})
	ic6.RemoteTS = []ipsec.Selector{{From: netip.MustParseAddr("2001:db8:1::"), To: netip.MustParseAddr("2001:db8:1::ff"), ToPort: 0xffff}}
	ic6.LocalTS = []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("2001:db8:2::/48"), iphdr.ProtoUDP)}
	out6, _ := NewSA(oc6)
	in6, _ := NewSA(ic6)
	if r := decapOne(in6, encapOne(t, out6, innerPacket(true, 80))); r.Verdict != Forward {
		t.Errorf("v6 allowed: %v", r.Reason)
	}
	bad := ipv6Packet(netip.MustParseAddr("2001:db8:1::100"), peer6, iphdr.ProtoUDP, 0, udpPayload(1, 2, nil))
	if r := decapOne(in6, encapOne(t, out6, bad)); r.Reason != TSMismatch {
		t.Errorf("v6 outside range: %v", r.Reason)
	}
	icmp := ipv6Packet(host6, peer6, iphdr.ProtoICMPv6, 0, icmpEcho(true, 1, 1, nil))
	if r := decapOne(in6, encapOne(t, out6, icmp)); r.Reason != TSMismatch {
		t.Errorf("v6 wrong protocol: %v", r.Reason)
	}
}

func TestECN(t *testing.T) {
	// RFC 6040 figure 4, all sixteen combinations.
	table := [4][4]int{ // [inner][outer] -> result, -1 = drop
		notECT: {notECT, notECT, notECT, -1},
		ect1:   {ect1, ect1, ect1, ce},
		ect0:   {ect0, ect1, ect0, ce},
		ce:     {ce, ce, ce, ce},
	}
	for inner := byte(0); inner < 4; inner++ {
		for outer := byte(0); outer < 4; outer++ {
			got, ok := decapECN(outer, inner)
			want := table[inner][outer]
			if (want < 0) == ok || (ok && int(got) != want) {
				t.Errorf("inner %d outer %d: got %d %v, want %d", inner, outer, got, ok, want)
			}
		}
	}
	// End to end: the outer header copies DSCP and ECN; a CE mark set on
	// the outer header in transit reaches the inner packet.
	for _, v6 := range []bool{false, true} {
		out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, v6outer: v6})
		var pkt []byte
		if v6 {
			pkt = ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0xb8|ect0, udpPayload(1, 2, nil))
		} else {
			pkt = ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0xb8|ect0, false, udpPayload(1, 2, nil))
		}
		w := encapOne(t, out, pkt)
		var ds byte
		if v6 {
			ds = w[0]<<4 | w[1]>>4
		} else {
			ds = w[1]
		}
		if ds != 0xb8|ect0 {
			t.Fatalf("v6=%v: outer DS %#x", v6, ds)
		}
		if v6 {
			w[1] |= ce << 4
		} else {
			w[1] |= ce
			iphdr.SetIPv4Checksum(w[:20])
		}
		buf := append([]byte(nil), w...)
		r := in.Decap(buf, 0, len(buf))
		if r.Verdict != Forward {
			t.Fatal(r.Reason)
		}
		p := buf[r.Off : r.Off+r.Len]
		if v6 {
			if p[0]<<4|p[1]>>4 != 0xb8|ce {
				t.Fatalf("inner TC %#x", p[0]<<4|p[1]>>4)
			}
		} else {
			if p[1] != 0xb8|ce || iphdr.Checksum(p[:20], 0) != 0 {
				t.Fatalf("inner TOS %#x or checksum wrong", p[1])
			}
		}
	}
	// Not-ECT inner with CE outside is dropped.
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16})
	w := encapOne(t, out, ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, udpPayload(1, 2, nil)))
	w[1] |= ce
	iphdr.SetIPv4Checksum(w[:20])
	if r := decapOne(in, w); r.Reason != ECNDrop {
		t.Fatalf("got %v", r.Reason)
	}
}

func TestDFAndMTU(t *testing.T) {
	pktDF := ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, true, udpPayload(1, 2, make([]byte, 1472)))
	pktNoDF := ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, false, udpPayload(1, 2, make([]byte, 1472)))
	pkt6 := ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(1, 2, make([]byte, 1452)))
	small6 := ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(1, 2, make([]byte, 1232)))

	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, mtu: 1500})
	buf, off := frame(pktDF)
	r := out.Encap(buf, off, len(pktDF))
	if r.Verdict != SendTooBig || r.Reason != TooBig || r.Off != off || !bytes.Equal(buf[off:off+r.Len], pktDF) {
		t.Fatalf("DF packet: %+v", r)
	}
	// 1500 - 20 (IP) - 8 (ESP) - 8 (IV) - 16 (ICV) = 1448, aligned to 16
	// = 1440, less pad length and next header = 1438.
	if r.MTU != 1438 || out.InnerMTU() != 1438 {
		t.Fatalf("announced MTU %d (InnerMTU %d), want 1438", r.MTU, out.InnerMTU())
	}
	fit := innerPacket(false, 1438)
	buf, off = frame(fit)
	if r := out.Encap(buf, off, len(fit)); r.Verdict != Forward || r.Len != 1492 {
		t.Fatalf("packet of exactly the inner MTU: %+v", r)
	}
	if r := out.Encap(frame2(ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, true, make([]byte, 1419)))); r.Verdict != SendTooBig {
		t.Fatalf("one byte more: %+v", r)
	}
	// With the minimal 4-byte alignment the same path carries 1446 bytes.
	oc4, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16, mtu: 1500})
	oc4.PadAlign = 4
	out4, _ := NewSA(oc4)
	if out4.InnerMTU() != 1446 {
		t.Fatalf("InnerMTU with 4-byte alignment %d, want 1446", out4.InnerMTU())
	}
	fit = innerPacket(false, 1446)
	if r := out4.Encap(frame2(fit)); r.Verdict != Forward || r.Len != 1500 {
		t.Fatalf("1446 bytes with 4-byte alignment: %+v", r)
	}
	// Outer DF copied from the inner packet; cleared when fragmenting.
	buf, off = frame(pktNoDF)
	r = out.Encap(buf, off, len(pktNoDF))
	if r.Verdict != Fragment || buf[r.Off+6]&0x40 != 0 {
		t.Fatalf("no-DF packet: %+v", r)
	}
	if d := in.Decap(buf, r.Off, r.Len); d.Verdict != Forward {
		t.Fatalf("decap of the big packet: %v", d.Reason)
	}
	w := encapOne(t, out, innerPacket(false, 100))
	if w[6]&0x40 != 0 {
		t.Fatal("DF set though inner had none (DFCopy)")
	}
	w = encapOne(t, out, ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, true, udpPayload(1, 2, nil)))
	if w[6]&0x40 == 0 {
		t.Fatal("DF not copied")
	}
	w = encapOne(t, out, innerPacket(true, 100))
	if w[6]&0x40 == 0 {
		t.Fatal("DF not set for an IPv6 inner packet")
	}
	// IPv6 inner: too big above 1280, fragmented at or below.
	if r := out.Encap(frame2(pkt6)); r.Verdict != SendTooBig || r.MTU != 1438 {
		t.Fatalf("v6 inner: %+v", r)
	}
	out2, _ := newPair(t, pairOpts{suite: ipsec.AES128GCM16, mtu: 1280})
	if r := out2.Encap(frame2(small6)); r.Verdict != Fragment {
		t.Fatalf("1280-byte v6 inner over a 1280 path: %+v", r)
	}
	if r := out2.Encap(frame2(pkt6)); r.Verdict != SendTooBig || r.MTU != 1280 {
		t.Fatalf("v6 inner over a 1280 path: %+v", r)
	}
	// FragmentTooBig: fragment instead of ICMP.
	oc, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
	oc.FragmentTooBig = true
	out3, _ := NewSA(oc)
	if r := out3.Encap(frame2(pktDF)); r.Verdict != Fragment {
		t.Fatalf("FragmentTooBig: %+v", r)
	}
	// DF policies.
	for _, pol := range []DFPolicy{DFSet, DFClear} {
		oc, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
		oc.DF = pol
		sa, _ := NewSA(oc)
		for _, df := range []bool{false, true} {
			w := encapOne(t, sa, ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, df, nil))
			if got := w[6]&0x40 != 0; got != (pol == DFSet) {
				t.Fatalf("policy %d inner DF %v: outer DF %v", pol, df, got)
			}
		}
	}
	if st := out.Stats(); st.Drops[TooBig] != 3 {
		t.Fatalf("TooBig drops %d", st.Drops[TooBig])
	}
}

func frame2(pkt []byte) ([]byte, int, int) {
	buf, off := frame(pkt)
	return buf, off, len(pkt)
}

func TestNoRoomAndMisuse(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16})
	pkt := innerPacket(false, 64)
	buf := make([]byte, 10+len(pkt)+Tailroom)
	copy(buf[10:], pkt)
	if r := out.Encap(buf, 10, len(pkt)); r.Reason != NoRoom {
		t.Fatalf("headroom: %v", r.Reason)
	}
	buf = make([]byte, Headroom+len(pkt)+10)
	copy(buf[Headroom:], pkt)
	if r := out.Encap(buf, Headroom, len(pkt)); r.Reason != NoRoom {
		t.Fatalf("tailroom: %v", r.Reason)
	}
	if r := out.Encap(buf, Headroom, len(buf)); r.Reason != Malformed {
		t.Fatalf("out of bounds: %v", r.Reason)
	}
	if r := in.Encap(frame2(pkt)); r.Reason != WrongDirection {
		t.Fatalf("encap on inbound: %v", r.Reason)
	}
	if r := out.Decap(frame2(pkt)); r.Reason != WrongDirection {
		t.Fatalf("decap on outbound: %v", r.Reason)
	}
	if r := out.Encap(frame2([]byte{0x55, 1, 2})); r.Reason != Malformed {
		t.Fatalf("garbage: %v", r.Reason)
	}
}

func TestUDPEncapNotESP(t *testing.T) {
	_, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, udp: true})
	ka := ipv4Packet(gw4a, gw4b, iphdr.ProtoUDP, 0, false, udpPayload(4500, 4500, []byte{0xff}))
	if r := decapOne(in, ka); r.Reason != NotESP {
		t.Fatalf("keepalive: %v", r.Reason)
	}
	ike := ipv4Packet(gw4a, gw4b, iphdr.ProtoUDP, 0, false, udpPayload(4500, 4500, make([]byte, 40)))
	if r := decapOne(in, ike); r.Reason != NotESP {
		t.Fatalf("IKE: %v", r.Reason)
	}
}

func TestSetPeer(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16, udp: true})
	if err := out.SetPeer(netip.MustParseAddr("198.18.9.9"), 61000); err != nil {
		t.Fatal(err)
	}
	w := encapOne(t, out, innerPacket(false, 64))
	if !bytes.Equal(w[16:20], []byte{198, 18, 9, 9}) || binary.BigEndian.Uint16(w[22:]) != 61000 || iphdr.Checksum(w[:20], 0) != 0 {
		t.Fatalf("peer not updated: %x", w[:28])
	}
	if r := decapOne(in, w); r.Verdict != Forward {
		t.Fatal(r.Reason)
	}
	if err := out.SetPeer(gw6b, 4500); err == nil {
		t.Fatal("accepted a peer of the wrong family")
	}
}

func TestConfigErrors(t *testing.T) {
	good, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"short key", func(c *Config) { c.EncKey = c.EncKey[:16] }, "needs a 20-byte encryption key"},
		{"integ key on AEAD", func(c *Config) { c.IntegKey = make([]byte, 32) }, "needs a 0-byte integrity key"},
		{"cbc without integ", func(c *Config) { c.Suite = ipsec.AES128SHA256; c.EncKey = make([]byte, 16) }, "needs a 32-byte integrity key"},
		{"reserved spi", func(c *Config) { c.SPI = 7 }, "reserved"},
		{"no direction", func(c *Config) { c.Direction = 0 }, "direction"},
		{"no suite", func(c *Config) { c.Suite = 0 }, "unknown suite"},
		{"mixed families", func(c *Config) { c.Remote = gw6b }, "different families"},
		{"udp without ports", func(c *Config) { c.UDPEncap = true }, "both ports"},
		{"window", func(c *Config) { c.ReplayWindow = 1 << 20 }, "replay window"},
		{"lifetimes", func(c *Config) { c.Lifetime = Lifetime{SoftBytes: 10, HardBytes: 5} }, "soft byte lifetime"},
		{"mtu", func(c *Config) { c.PathMTU = 100 }, "path MTU"},
		{"selector", func(c *Config) { c.LocalTS = []ipsec.Selector{{From: host4, To: host6}} }, "local selector 0"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		_, err := NewSA(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "esp: sa 0x") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if _, err := NewSA(good); err != nil {
		t.Fatal(err)
	}
}

func TestBatch(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16})
	pkts := make([]Packet, 8)
	want := make([][]byte, 8)
	for i := range pkts {
		want[i] = innerPacket(i%2 == 1, 64+i*100)
		buf, off := frame(want[i])
		pkts[i] = Packet{Buf: buf, Off: off, Len: len(want[i])}
	}
	pkts[3].Len = 3 // garbage
	out.EncapBatch(pkts)
	for i, p := range pkts {
		if i == 3 {
			if p.Verdict != Drop || p.Reason != Malformed {
				t.Fatalf("garbage packet: %+v", p)
			}
			continue
		}
		if p.Verdict != Forward {
			t.Fatalf("packet %d: %v", i, p.Reason)
		}
	}
	pkts[5] = pkts[4] // a duplicate inside the batch
	pkts[5].Buf = append([]byte(nil), pkts[4].Buf...)
	in.DecapBatch(pkts)
	for i, p := range pkts {
		switch i {
		case 3:
		case 5:
			if p.Reason != Replay {
				t.Fatalf("duplicate in batch: %v", p.Reason)
			}
		default:
			if p.Verdict != Forward || !bytes.Equal(p.Buf[p.Off:p.Off+p.Len], want[i]) {
				t.Fatalf("packet %d: %v", i, p.Reason)
			}
		}
	}
	if s := in.Stats(); s.Packets != 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestParseOuter(t *testing.T) {
	out, _ := newPair(t, pairOpts{suite: ipsec.AES128GCM16, udp: true, v6outer: true})
	w := encapOne(t, out, innerPacket(false, 64))
	o, r := ParseOuter(w)
	if r != None || o.SPI != 0xc001 || o.Seq != 1 || !o.UDP || o.ESPOff != 48 || o.End != len(w) || o.SrcPort != 4500 {
		t.Fatalf("%+v %v", o, r)
	}
	frag := ipv4Packet(gw4a, gw4b, iphdr.ProtoESP, 0, false, make([]byte, 40))
	frag[6] = 0x20
	if _, r := ParseOuter(frag); r != OuterFragment {
		t.Fatalf("fragment: %v", r)
	}
}

func TestReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for r := None; r < NumReasons; r++ {
		s := r.String()
		if s == "" || seen[s] || strings.HasPrefix(s, "reason(") {
			t.Fatalf("reason %d has name %q", r, s)
		}
		seen[s] = true
	}
	if NumReasons.String() != "reason(22)" {
		t.Fatal(NumReasons.String())
	}
}

// TestEnumStrings pins the names of directions, modes and verdicts, with
// their fallbacks for values out of range: logs and dumps depend on them.
func TestEnumStrings(t *testing.T) {
	for _, c := range []struct {
		got  fmt.Stringer
		want string
	}{
		{Direction(0), "direction(0)"}, {Outbound, "out"}, {Inbound, "in"}, {Direction(9), "direction(9)"},
		{Tunnel, "tunnel"}, {Transport, "transport"}, {Mode(7), "tunnel"},
		{Drop, "drop"}, {Forward, "forward"}, {Fragment, "fragment"}, {SendTooBig, "send-too-big"}, {Verdict(9), "verdict(9)"},
		{Events(0), "none"}, {EventSoftLifetime | EventSeqExhausted, "soft-lifetime|seq-exhausted"},
	} {
		if s := c.got.String(); s != c.want {
			t.Errorf("%#v: %q, want %q", c.got, s, c.want)
		}
	}
}

// TestStatsConcurrentReaders reads Stats from other goroutines while the
// owner works. A plain run exercises the plain-store publishing of
// counter.go (readers must see whole, monotonic values); a -race run uses
// counter_atomic.go and proves the rest of the SA is not shared.
func TestStatsConcurrentReaders(t *testing.T) {
	out, in := newPair(t, pairOpts{suite: ipsec.AES128GCM16})
	done := make(chan struct{})
	var readers [2]chan uint64
	for i := range readers {
		readers[i] = make(chan uint64, 1)
		go func(c chan uint64) {
			var last uint64
			for {
				select {
				case <-done:
					c <- last
					return
				default:
				}
				s := in.Stats()
				if s.Packets < last {
					panic("counter went backwards")
				}
				if s.Bytes%200 != 0 || s.Bytes > 200*2000 {
					panic("torn byte counter")
				}
				last = s.Packets
				_ = out.Stats()
			}
		}(readers[i])
	}
	pkt := innerPacket(false, 200)
	for i := 0; i < 2000; i++ {
		buf, off := frame(pkt)
		r := out.Encap(buf, off, len(pkt))
		in.Decap(buf, r.Off, r.Len)
	}
	close(done)
	for _, c := range readers {
		if v := <-c; v > 2000 {
			t.Fatalf("reader saw %d packets", v)
		}
	}
	if s := in.Stats(); s.Packets != 2000 {
		t.Fatalf("final %d", s.Packets)
	}
}

// TestSpeedPad checks Config.SpeedPad: AES-GCM packets padded to a
// multiple of 128 encrypted bytes when that takes at most SpeedPad extra
// bytes and fits the path MTU and the buffer, decapsulated by an SA that
// knows nothing of it; other suites unchanged.
func TestSpeedPad(t *testing.T) {
	for _, tc := range []struct {
		suite           ipsec.Suite
		speedPad, inner int
		mtu, tail       int
		wantCT          int
	}{
		{ipsec.AES128GCM16, 48, 64, 0, SpeedPadTailroom, 128},        // 80 -> 128: 48 extra
		{ipsec.AES256GCM16, 48, 64, 0, SpeedPadTailroom, 128},        //
		{ipsec.AES128GCM16, 112, 40, 0, SpeedPadTailroom, 128},       // 48 -> 128: 80 extra
		{ipsec.AES128GCM16, 48, 40, 0, SpeedPadTailroom, 48},         // 80 extra > 48
		{ipsec.AES128GCM16, 112, 126, 0, SpeedPadTailroom, 128},      // already 128
		{ipsec.AES128GCM16, 112, 510, 0, SpeedPadTailroom, 512},      // already 512
		{ipsec.AES128GCM16, 112, 512, 0, SpeedPadTailroom, 640},      // 528 -> 640
		{ipsec.AES128GCM16, 48, 64, 0, Tailroom, 80},                 // no room for it
		{ipsec.AES128GCM16, 48, 64, 0, 32 + 47, 80},                  // trailer and ICV take 32: one byte short
		{ipsec.AES128GCM16, 48, 64, 0, 32 + 48, 128},                 // just fits
		{ipsec.AES128GCM16, 112, 1000, 1075, SpeedPadTailroom, 1008}, // 1060 bytes, 1076 with 1024 encrypted
		{ipsec.AES128GCM16, 112, 1000, 1076, SpeedPadTailroom, 1024}, // fits exactly
		{ipsec.ChaCha20Poly1305, 112, 64, 0, SpeedPadTailroom, 80},
		{ipsec.AES128SHA256, 112, 64, 0, SpeedPadTailroom, 80},
	} {
		o := pairOpts{suite: tc.suite, speedPad: tc.speedPad, mtu: tc.mtu}
		t.Run(fmt.Sprintf("%s/inner%d/tail%d/mtu%d", o, tc.inner, tc.tail, tc.mtu), func(t *testing.T) {
			out, in := newPair(t, o)
			pkt := innerPacket(false, tc.inner)
			buf, off := frameRoom(pkt, tc.tail)
			r := out.Encap(buf, off, len(pkt))
			if r.Verdict != Forward {
				t.Fatalf("encap: %v %v", r.Verdict, r.Reason)
			}
			if got := encryptedLen(o, r.Len); got != tc.wantCT {
				t.Errorf("encrypted part %d bytes, want %d", got, tc.wantCT)
			}
			if tc.tail == SpeedPadTailroom && (tc.mtu == 0 || r.Len <= tc.mtu) {
				if ov := out.Overhead(tc.inner); ov != r.Len-tc.inner {
					t.Errorf("Overhead(%d) = %d, Encap added %d", tc.inner, ov, r.Len-tc.inner)
				}
			}
			if tc.mtu != 0 && r.Len > tc.mtu {
				t.Errorf("packet of %d bytes exceeds the path MTU %d", r.Len, tc.mtu)
			}
			d := in.Decap(buf, r.Off, r.Len)
			if d.Verdict != Forward || !bytes.Equal(buf[d.Off:d.Off+d.Len], pkt) {
				t.Fatalf("decap: %v %v", d.Verdict, d.Reason)
			}
		})
	}
	for _, bad := range []int{-1, maxSpeedPad + 1} {
		oc, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
		oc.SpeedPad = bad
		if _, err := NewSA(oc); err == nil || !strings.Contains(err.Error(), "speed padding") {
			t.Errorf("SpeedPad %d: %v", bad, err)
		}
	}
}

// TestPadOK checks the padding check against a byte-by-byte one for every
// pad length and buffer length, with each byte of the padding (and the
// byte before it) changed in turn; the trailer's two bytes are ignored.
func TestPadOK(t *testing.T) {
	slow := func(p []byte, k int) bool {
		for i := 0; i < k; i++ {
			if p[len(p)-2-k+i] != byte(i+1) {
				return false
			}
		}
		return true
	}
	for n := 2; n <= 42; n++ {
		for k := 0; k <= n-2; k++ {
			p := make([]byte, n)
			for i := range p {
				p[i] = 0xee
			}
			copy(p[n-2-k:], padBytes[:k])
			p[n-2], p[n-1] = byte(k), 4
			if !padOK(p, k) || !slow(p, k) {
				t.Fatalf("n %d k %d: good padding refused", n, k)
			}
			for i := n - 2 - k - 1; i < n; i++ {
				if i < 0 {
					continue
				}
				p[i] ^= 0x40
				if got, want := padOK(p, k), slow(p, k); got != want {
					t.Fatalf("n %d k %d byte %d changed: padOK %v, want %v", n, k, i, got, want)
				}
				p[i] ^= 0x40
			}
		}
	}
	p := append(append(make([]byte, 10), padBytes[:200]...), 200, 4)
	if !padOK(p, 200) {
		t.Fatal("200 bytes of padding refused")
	}
	p[100] = 0
	if padOK(p, 200) {
		t.Fatal("bad long padding accepted")
	}
}
