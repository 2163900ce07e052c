package esp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/ipsec"
)

// TestColdUntilFirstPacket: an SA holds no cipher state until it carries a
// packet, and a cooled SA makes it again at its next packet, with its
// sequence numbers and replay window where they were.
func TestColdUntilFirstPacket(t *testing.T) {
	for _, suite := range allSuites {
		t.Run(suite.String(), func(t *testing.T) {
			out, in := newPair(t, pairOpts{suite: suite, esn: true})
			if out.Warm() || in.Warm() {
				t.Fatal("warm before any packet")
			}
			pkt := innerPacket(false, 100)
			roundTrip(t, out, in, pkt)
			if !out.Warm() || !in.Warm() {
				t.Fatal("cold after a packet")
			}
			out.Release()
			in.Release()
			if out.Warm() || in.Warm() {
				t.Fatal("warm after Release")
			}
			roundTrip(t, out, in, pkt)
			if s := in.Stats(); s.Seq != 2 || s.Packets != 2 {
				t.Fatalf("after cooling: seq %d, %d packets; want 2, 2", s.Seq, s.Packets)
			}
			// The packet before cooling is still a replay.
			buf, off := frame(pkt)
			out.seq.Store(0)
			r := out.Encap(buf, off, len(pkt))
			if d := in.Decap(buf, r.Off, r.Len); d.Reason != ReplayTooOld && d.Reason != Replay {
				t.Fatalf("replayed sequence number 1: %v, want a replay drop", d.Reason)
			}
		})
	}
}

// TestOwnerCoolsIdle: Sweep cools the SAs that carried no packet between
// two of its looks, which are at least the idle time apart, and keeps the
// others.
func TestOwnerCoolsIdle(t *testing.T) {
	const n = 100
	o := NewOwner(new(DropTotals), time.Second)
	pkt := innerPacket(false, 64)
	var sas []*SA
	for i := range n {
		c, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
		c.SPI = 0x1000 + uint32(i)
		sa, err := NewSA(c)
		if err != nil {
			t.Fatal(err)
		}
		sa.SetOwner(o)
		sas = append(sas, sa)
	}
	send := func(sa *SA) {
		t.Helper()
		buf, off := frame(pkt)
		if r := sa.Encap(buf, off, len(pkt)); r.Verdict != Forward {
			t.Fatal(r.Reason)
		}
	}
	for _, sa := range sas {
		send(sa)
	}
	if o.Warm() != n || o.Warmed() != n {
		t.Fatalf("%d warm, %d warmed; want %d", o.Warm(), o.Warmed(), n)
	}
	sec := int64(time.Second)
	sweep := func(now int64) {
		for range 2 * n {
			o.Sweep(now, 7) // several calls make a pass
		}
	}
	sweep(10 * sec) // first pass: everything was used
	if o.Warm() != n {
		t.Fatalf("%d warm after the first pass, want %d", o.Warm(), n)
	}
	for i, sa := range sas {
		if i%3 == 0 {
			send(sa)
		}
	}
	sweep(10*sec + sec/2) // too early for another pass
	if o.Warm() != n {
		t.Fatalf("%d warm half an idle period later, want %d", o.Warm(), n)
	}
	sweep(11 * sec)
	want := (n + 2) / 3
	if o.Warm() != want || o.Cooled() != uint64(n-want) {
		t.Fatalf("%d warm, %d cooled; want %d, %d", o.Warm(), o.Cooled(), want, n-want)
	}
	for i, sa := range sas {
		if sa.Warm() != (i%3 == 0) {
			t.Fatalf("sa %d: warm %v", i, sa.Warm())
		}
	}
	// Cooled SAs still send, from where they were.
	send(sas[1])
	if s := sas[1].Stats(); s.Seq != 2 || !sas[1].Warm() {
		t.Fatalf("sa 1 after cooling: seq %d, warm %v", s.Seq, sas[1].Warm())
	}
	// Moving to another owner takes a warm SA off this one's list;
	// Release takes it off the new one's.
	o2 := NewOwner(nil, 0)
	sas[0].SetOwner(o2)
	if o2.Warm() != 1 || o.Warm() != want {
		t.Fatalf("after a move: %d and %d warm, want 1 and %d", o2.Warm(), o.Warm(), want)
	}
	sas[0].Release()
	if o2.Warm() != 0 || sas[0].Warm() {
		t.Fatal("a released SA is still warm")
	}
	sweep(100 * sec)
	sweep(200 * sec)
	if o.Warm() != 0 {
		t.Fatalf("%d warm after two idle passes, want 0", o.Warm())
	}
	o2.Sweep(1<<62, 1000) // idle 0: never cools, never panics on an empty list
}

// TestZeroAllocsWarm: a warm SA on an owner that sweeps (and keeps it, as
// it carries packets) allocates nothing per packet, nor does Sweep.
func TestZeroAllocsWarm(t *testing.T) {
	for _, suite := range allSuites {
		t.Run(suite.String(), func(t *testing.T) {
			o := NewOwner(new(DropTotals), time.Millisecond)
			out, in := newPair(t, pairOpts{suite: suite})
			out.SetOwner(o)
			in.SetOwner(o)
			pkt := innerPacket(false, 600)
			buf, off := frame(pkt)
			work := make([]byte, len(buf))
			now := int64(0)
			if n := testing.AllocsPerRun(200, func() {
				copy(buf[off:], pkt)
				r := out.Encap(buf, off, len(pkt))
				copy(work, buf)
				if d := in.Decap(work, r.Off, r.Len); d.Verdict != Forward {
					t.Fatal(d.Reason)
				}
				now += int64(time.Millisecond)
				o.Sweep(now, 1)
			}); n != 0 {
				t.Errorf("%.1f allocations per packet on a warm SA", n)
			}
			if !out.Warm() || !in.Warm() || o.Cooled() != 0 {
				t.Errorf("a busy SA was cooled (%d cooled)", o.Cooled())
			}
		})
	}
}

// BenchmarkColdFirstPacket is the first packet of a cold SA (its cipher
// state made, then the packet) against a packet of a warm one, in the same
// run: the cost of cooling an idle SA, paid once when it wakes.
func BenchmarkColdFirstPacket(b *testing.B) {
	for _, suite := range []ipsec.Suite{ipsec.AES128GCM16, ipsec.AES256GCM16, ipsec.ChaCha20Poly1305, ipsec.AES128SHA256} {
		for _, cold := range []bool{false, true} {
			state := "warm"
			if cold {
				state = "cold"
			}
			b.Run(fmt.Sprintf("suite=%s/op=encap/sa=%s", suite, state), func(b *testing.B) {
				out, _ := benchSA(b, benchCase{suite: suite})
				pkt := benchInner(64)
				buf, off := benchFrame(pkt)
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if cold {
						out.Release()
					}
					copy(buf[off:off+20], pkt[:20])
					if r := out.Encap(buf, off, len(pkt)); r.Verdict != Forward {
						b.Fatal(r.Reason)
					}
				}
			})
			b.Run(fmt.Sprintf("suite=%s/op=decap/sa=%s", suite, state), func(b *testing.B) {
				out, in := benchSA(b, benchCase{suite: suite})
				pool := decapPool(b, out, 64)
				work := make([]byte, len(pool[0]))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					j := i % poolLen
					if j == 0 {
						in.win.Reset()
					}
					if cold {
						in.Release()
					}
					copy(work, pool[j])
					if r := in.Decap(work, 0, len(work)); r.Verdict != Forward {
						b.Fatal(r.Reason)
					}
				}
			})
		}
	}
}

// TestSelectorsShared: the SAs of a Child SA, made one after the other
// with the same selectors, share one compiled list; an SA with other
// selectors has its own, and each still matches its own.
func TestSelectorsShared(t *testing.T) {
	lts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)}
	rts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("10.0.0.1/32"), 0)}
	mk := func(dir Direction, l, r []ipsec.Selector) *SA {
		c, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
		c.Direction, c.LocalTS, c.RemoteTS = dir, l, r
		sa, err := NewSA(c)
		if err != nil {
			t.Fatal(err)
		}
		return sa
	}
	in, out := mk(Inbound, lts, rts), mk(Outbound, lts, rts)
	if in.ts != out.ts {
		t.Error("the SAs of one Child SA each have their selector list")
	}
	// The same ranges split otherwise between local and remote are not
	// the same selectors.
	swapped := mk(Inbound, append(append([]ipsec.Selector(nil), lts...), rts...), nil)
	if swapped.ts == out.ts {
		t.Error("an SA with other selectors shares a list")
	}
	l, r := in.Selectors()
	if len(l) != 1 || len(r) != 1 || l[0].From != lts[0].From || r[0].To != rts[0].To {
		t.Errorf("selectors come back as %v, %v", l, r)
	}
	if l, r := swapped.Selectors(); len(l) != 2 || len(r) != 0 {
		t.Errorf("swapped: %d local, %d remote selectors, want 2, 0", len(l), len(r))
	}
}

// BenchmarkOwnerSweep is the cost of one look at a warm SA that is kept
// (used since the last look), per SA, over 20,000 of them: what a turn of
// an SPU's loop adds while a pass is on.
func BenchmarkOwnerSweep(b *testing.B) {
	const n = 20_000
	o := NewOwner(nil, time.Nanosecond)
	pkt := innerPacket(false, 64)
	buf, off := frame(pkt)
	sas := make([]*SA, n)
	for i := range sas {
		c, _ := pairConfig(pairOpts{suite: ipsec.AES128GCM16})
		c.SPI = 0x1000 + uint32(i)
		sa, err := NewSA(c)
		if err != nil {
			b.Fatal(err)
		}
		sa.SetOwner(o)
		copy(buf[off:], pkt)
		sa.Encap(buf, off, len(pkt))
		sas[i] = sa
	}
	now := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if o.next == 0 {
			b.StopTimer()
			for _, sa := range sas {
				sa.w.used = true
			}
			now += 2
			b.StartTimer()
		}
		o.Sweep(now, 1)
	}
	if o.Warm() != n {
		b.Fatalf("%d warm, want %d", o.Warm(), n)
	}
}
