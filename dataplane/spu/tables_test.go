package spu

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/ipsec"
)

// bruteFindPolicy is the exact match over every policy, as findPolicy was.
func bruteFindPolicy(t *tables, f *flow) *policy {
	var best *policy
	for _, p := range t.policies {
		if p.matches(f) && (best == nil || p.id < best.id) {
			best = p
		}
	}
	return best
}

// randSelector is a selector of 198.18.0.0/15 addresses (or a v6 one):
// a prefix, a range that is not one, or any address; any or one protocol;
// any or some ports.
func randSelector(r *rand.Rand, v6 bool) ipsec.Selector {
	base := netip.MustParseAddr("198.18.0.0")
	if v6 {
		base = netip.MustParseAddr("2001:db8::")
	}
	b := base.AsSlice()
	n := len(b)
	b[n-2], b[n-1] = byte(r.IntN(4)), byte(r.IntN(256))
	from := netip.AddrFrom16([16]byte(append(make([]byte, 16-n), b...)))
	if !v6 {
		from = netip.AddrFrom4([4]byte(b))
	}
	var s ipsec.Selector
	switch r.IntN(4) {
	case 0: // any address of the family
		bits := 0
		s = ipsec.PrefixSelector(netip.PrefixFrom(from, bits), 0)
	case 1: // a range that is not a prefix
		to := from
		for range r.IntN(300) {
			to = to.Next()
		}
		s = ipsec.Selector{From: from, To: to, ToPort: 65535}
	default:
		s = ipsec.PrefixSelector(netip.PrefixFrom(from, from.BitLen()-r.IntN(12)), 0)
	}
	if r.IntN(3) == 0 {
		s.Proto = []uint8{6, 17, 1}[r.IntN(3)]
	}
	if r.IntN(3) == 0 {
		s.FromPort = uint16(r.IntN(1000))
		s.ToPort = s.FromPort + uint16(r.IntN(100))
	}
	return s
}

// selectorMatch is the exact match of a policy as it was made on its
// api.Policy's selectors (ipsec.Selector.Matches), before the SPU kept
// them compiled: what policy.matches must still answer.
func selectorMatch(p *api.Policy, f *flow) bool {
	in := func(ts []ipsec.Selector, a netip.Addr, port uint16) bool {
		for i := range ts {
			if ts[i].Matches(a, f.proto, port, f.hasPorts) {
				return true
			}
		}
		return false
	}
	return in(p.LocalTS, f.src, f.sport) && in(p.RemoteTS, f.dst, f.dport)
}

// TestPolicyMatchesSelectors: a policy as its SPU keeps it (compiled
// selectors) matches the flows its api.Policy's selectors match, and
// only those, for random selectors and flows of both families; and it
// comes back as the api.Policy it was made from.
func TestPolicyMatchesSelectors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	hits := 0
	for i := range 2000 {
		v6 := r.IntN(4) == 0
		ap := api.Policy{ID: uint32(i + 1), ReqID: 7, Action: api.Protect, Local: netip.MustParseAddr("198.18.0.1"),
			Remote: netip.MustParseAddr("198.19.0.1"), LocalTS: []ipsec.Selector{randSelector(r, v6)},
			RemoteTS: []ipsec.Selector{randSelector(r, v6), randSelector(r, v6)}, Name: "c/1"}
		if v6 {
			ap.Interfaces = []string{"lan0"}
		}
		p := newPolicy(&ap, 9)
		for range 50 {
			a, b := randSelector(r, v6), randSelector(r, v6)
			f := flow{src: a.From, dst: b.To, proto: []uint8{6, 17, 1}[r.IntN(3)], hasPorts: r.IntN(8) != 0}
			if f.hasPorts {
				f.sport, f.dport = uint16(r.IntN(1200)), uint16(r.IntN(1200))
			}
			got, want := p.matches(&f), selectorMatch(&ap, &f)
			if got != want {
				t.Fatalf("policy %+v, flow %+v: compiled %v, selectors %v", ap, f, got, want)
			}
			if got {
				hits++
			}
		}
		back := p.api()
		if back.Logical == nil || *back.Logical != 9 {
			t.Fatalf("policy comes back with logical SPU %v, want 9", back.Logical)
		}
		back.Logical = nil
		if !reflect.DeepEqual(back, ap) {
			t.Fatalf("policy comes back as %+v, want %+v", back, ap)
		}
	}
	if hits < 1000 {
		t.Fatalf("only %d flows matched: the test is too sparse", hits)
	}
}

// BenchmarkPolicyMatch: the exact match of a packet against a tunnel's
// policy, on the compiled ranges its SPU keeps (compiled) and on the
// api.Policy's selectors as it was made before (selectors), in the same
// process: the part of the cleartext path the compact policy changed.
func BenchmarkPolicyMatch(b *testing.B) {
	ap := api.Policy{ID: 1, ReqID: 1, Action: api.Protect, Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.19.0.1"),
		LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)},
		RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("10.1.2.3/32"), 0)}}
	p := newPolicy(&ap, 0)
	f := flow{src: netip.MustParseAddr("198.18.128.7"), dst: netip.MustParseAddr("10.1.2.3"), proto: 17, sport: 1000, dport: 53, hasPorts: true}
	if !p.matches(&f) || !selectorMatch(&ap, &f) {
		b.Fatal("the flow does not match")
	}
	b.Run("compiled", func(b *testing.B) {
		for b.Loop() {
			p.matches(&f)
		}
	})
	b.Run("selectors", func(b *testing.B) {
		for b.Loop() {
			selectorMatch(&ap, &f)
		}
	})
}

// canonicalPolicy gives an IPv4-mapped selector the form the SPU gives
// back, so that the steering entries of its add and of its delete agree;
// canonical selectors are left as they are.
func TestCanonicalPolicy(t *testing.T) {
	mapped := ipsec.Selector{From: netip.MustParseAddr("::ffff:10.0.0.0"), To: netip.MustParseAddr("::ffff:10.0.0.255"), ToPort: 65535}
	plain := ipsec.PrefixSelector(netip.MustParsePrefix("10.0.1.0/24"), 0)
	p := api.Policy{LocalTS: []ipsec.Selector{plain}, RemoteTS: []ipsec.Selector{mapped}}
	canonicalPolicy(&p)
	if p.LocalTS[0] != plain || p.RemoteTS[0].From != netip.MustParseAddr("10.0.0.0") || p.RemoteTS[0].To != netip.MustParseAddr("10.0.0.255") {
		t.Errorf("canonical: %v %v", p.LocalTS, p.RemoteTS)
	}
	l, r := newPolicy(&p, 0).ts.Selectors()
	if fmt.Sprint(l, r) != fmt.Sprint(p.LocalTS, p.RemoteTS) {
		t.Errorf("the SPU gives back %v %v for %v %v", l, r, p.LocalTS, p.RemoteTS)
	}
	q := api.Policy{LocalTS: []ipsec.Selector{plain}, RemoteTS: []ipsec.Selector{plain}}
	lts := q.LocalTS
	canonicalPolicy(&q)
	if &q.LocalTS[0] != &lts[0] {
		t.Error("canonical selectors were rebuilt")
	}
}

// TestFindPolicyIndexed: the exact match through byDst finds what a walk
// over every policy finds, for random policies (prefixes, ranges, any,
// protocols, ports, both families) and packets, as policies come and go;
// and it allocates nothing.
func TestFindPolicyIndexed(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := newTables(esp.NewOwner(new(esp.DropTotals), 0))
	var ids []uint32
	add := func(id uint32) {
		v6 := r.IntN(4) == 0
		ap := api.Policy{ID: id, LocalTS: []ipsec.Selector{randSelector(r, v6)}, RemoteTS: []ipsec.Selector{randSelector(r, v6)}}
		if r.IntN(5) == 0 {
			ap.RemoteTS = append(ap.RemoteTS, randSelector(r, v6))
		}
		tb.addPolicy(newPolicy(&ap, 0))
		ids = append(ids, id)
	}
	flowOf := func() flow {
		v6 := r.IntN(4) == 0
		a, b := randSelector(r, v6), randSelector(r, v6)
		f := flow{src: a.From, dst: b.To, proto: []uint8{6, 17, 1}[r.IntN(3)], hasPorts: r.IntN(8) != 0}
		if f.hasPorts {
			f.sport, f.dport = uint16(r.IntN(1200)), uint16(r.IntN(1200))
		}
		return f
	}
	for id := uint32(1); id <= 3000; id++ {
		add(id)
		if r.IntN(3) == 0 {
			i := r.IntN(len(ids))
			tb.delPolicy(ids[i])
			ids = append(ids[:i], ids[i+1:]...)
		}
	}
	found := 0
	for range 20000 {
		f := flowOf()
		got, want := tb.findPolicy(&f), bruteFindPolicy(&tb, &f)
		if got != want {
			t.Fatalf("flow %+v: indexed %v, every policy %v", f, got, want)
		}
		if got != nil {
			found++
		}
	}
	if found < 1000 {
		t.Fatalf("only %d of 20000 flows matched a policy: the test is too sparse", found)
	}
	for _, id := range ids {
		tb.delPolicy(id)
	}
	if len(tb.byDst) != 0 || tb.dstLens != [2][129]int32{} {
		t.Errorf("with every policy deleted the index holds %d prefixes", len(tb.byDst))
	}
	f := flowOf()
	if n := testing.AllocsPerRun(100, func() { tb.findPolicy(&f) }); n != 0 {
		t.Errorf("findPolicy allocates %v times", n)
	}
}

// BenchmarkFindPolicy: the exact match for a packet no policy takes, among
// 100 and 100,000 host-to-host policies, through the index and by the walk
// over every policy that it replaced.
func BenchmarkFindPolicy(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(func() string {
			if n == 100 {
				return "policies=100"
			}
			return "policies=100000"
		}(), func(b *testing.B) {
			tb := newTables(esp.NewOwner(new(esp.DropTotals), 0))
			for i := range n {
				l := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
				rm := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
				sel := func(a netip.Addr) []ipsec.Selector {
					s := ipsec.PrefixSelector(netip.PrefixFrom(a, 32), 6)
					s.FromPort, s.ToPort = 443, 443
					return []ipsec.Selector{s}
				}
				tb.addPolicy(newPolicy(&api.Policy{ID: uint32(i + 1), LocalTS: sel(l), RemoteTS: sel(rm)}, 0))
			}
			f := flow{src: netip.MustParseAddr("198.18.0.7"), dst: netip.MustParseAddr("198.19.0.7"), proto: 6, sport: 1000, dport: 22, hasPorts: true}
			b.Run("indexed", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if tb.findPolicy(&f) != nil {
						b.Fatal("matched")
					}
				}
			})
			b.Run("walk", func(b *testing.B) {
				for b.Loop() {
					if bruteFindPolicy(&tb, &f) != nil {
						b.Fatal("matched")
					}
				}
			})
		})
	}
}

// TestIDSet takes an idSet past the size where it turns from a slice into
// a map and back to empty, against a map.
func TestIDSet(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var s idSet
	want := map[uint32]*policy{}
	for step := range 2000 {
		id := uint32(1 + r.IntN(3*idSetFew))
		if r.IntN(3) == 0 {
			s.del(id)
			delete(want, id)
		} else {
			p := &policy{id: id}
			s.add(p)
			want[id] = p
		}
		got := map[uint32]*policy{}
		s.each(func(p *policy) { got[p.id] = p })
		if s.len() != len(want) || len(got) != len(want) {
			t.Fatalf("step %d: %d entries (%d by each), want %d", step, s.len(), len(got), len(want))
		}
		for id, p := range want {
			if got[id] != p || !s.has(id) {
				t.Fatalf("step %d: policy %d missing or stale", step, id)
			}
		}
	}
	for id := range want {
		s.del(id)
	}
	if s.len() != 0 || s.one != nil || s.more != nil {
		t.Errorf("emptied set holds %d entries", s.len())
	}
}

// TestTablesCipherOwner: the SAs of an SPU's tables are on its owner's
// list of warm SAs while they are warm, leave it when they are deleted,
// and move to another SPU's with a migration, warm as they are.
func TestTablesCipherOwner(t *testing.T) {
	o1, o2 := esp.NewOwner(new(esp.DropTotals), 0), esp.NewOwner(new(esp.DropTotals), 0)
	t1, t2 := newTables(o1), newTables(o2)
	cfg := esp.Config{SPI: 0x1234, Direction: esp.Outbound, Suite: ipsec.AES128GCM16, EncKey: make([]byte, 20),
		Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2")}
	mk := func(dir esp.Direction) *esp.SA {
		c := cfg
		c.Direction = dir
		sa, err := esp.NewSA(c)
		if err != nil {
			t.Fatal(err)
		}
		return sa
	}
	out, in := mk(esp.Outbound), mk(esp.Inbound)
	t1.addOut(&outSA{sa: out, desc: saDesc{reqid: 1}, logical: 3})
	t1.addIn(&inSA{sa: in, desc: saDesc{reqid: 1}, logical: 3})
	if o1.Warm() != 0 {
		t.Fatalf("%d warm SAs before any packet", o1.Warm())
	}
	pkt := make([]byte, 20)
	pkt[0], pkt[3] = 0x45, 20
	buf := make([]byte, 256)
	copy(buf[esp.Headroom:], pkt)
	r := out.Encap(buf, esp.Headroom, len(pkt))
	if r.Verdict != esp.Forward {
		t.Fatal(r.Reason)
	}
	if d := in.Decap(buf, r.Off, r.Len); d.Verdict != esp.Forward {
		t.Fatal(d.Reason)
	}
	if o1.Warm() != 2 {
		t.Fatalf("%d warm SAs after a packet each way, want 2", o1.Warm())
	}
	for _, b := range t1.extract(map[uint16]bool{3: true}) {
		t2.install(b)
	}
	if o1.Warm() != 0 || o2.Warm() != 2 || !out.Warm() || !in.Warm() {
		t.Fatalf("after migration: %d and %d warm, want 0 and 2, both SAs still warm", o1.Warm(), o2.Warm())
	}
	t2.delIn(0x1234)
	if _, ok := t2.delOut(outKey{0x1234, addr16(out.Remote())}); !ok {
		t.Fatal("outbound SA not found")
	}
	if o2.Warm() != 0 || out.Warm() || in.Warm() {
		t.Fatalf("%d warm SAs after deleting both", o2.Warm())
	}
}

// TestTablesActiveOut: a reqid's newest outbound SA is the one its
// policies use, whichever of its SAs go, and after a migration too.
func TestTablesActiveOut(t *testing.T) {
	mk := func(spi uint32) *outSA {
		sa, err := esp.NewSA(esp.Config{SPI: spi, Direction: esp.Outbound, Suite: ipsec.AES128GCM16, EncKey: make([]byte, 20),
			Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2")})
		if err != nil {
			t.Fatal(err)
		}
		return &outSA{sa: sa, desc: saDesc{reqid: 5}, logical: 1}
	}
	tb := newTables(esp.NewOwner(new(esp.DropTotals), 0))
	p := newPolicy(&api.Policy{ID: 1, ReqID: 5, Action: api.Protect}, 1)
	tb.addPolicy(p)
	a, b, c := mk(0x100), mk(0x200), mk(0x300)
	check := func(step string, want *outSA) {
		t.Helper()
		if p.out != want || tb.active[5] != want {
			t.Fatalf("%s: policy uses %v, active %v, want %v", step, p.out, tb.active[5], want)
		}
	}
	tb.addOut(a)
	check("a", a)
	tb.addOut(b)
	tb.addOut(c)
	check("a, b, c", c)
	tb.delOut(b.key())
	check("b gone", c)
	tb.delOut(c.key())
	check("c gone", a)
	tb.addOut(b)
	tb.addOut(c)
	t2 := newTables(esp.NewOwner(new(esp.DropTotals), 0))
	for _, bd := range tb.extract(map[uint16]bool{1: true}) {
		t2.install(bd)
	}
	if _, ok := tb.active[5]; ok || len(tb.out) != 0 {
		t.Fatal("the old SPU kept outbound SAs")
	}
	tb, p = t2, t2.policies[1]
	check("migrated", c)
	tb.delOut(c.key())
	check("c gone after migration", b)
	tb.delOut(a.key())
	check("a gone", b)
	tb.delOut(b.key())
	check("all gone", nil)
}
