package steer

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fakeLPM holds SPD entries as the kernel's LPM maps would, checks the
// update-order invariant on every write, and looks up like steer.c.
type fakeLPM struct {
	t   testing.TB
	dst map[groupKey]uint32
	src map[srcKey]spdValue
	ops int
	// failAfter makes the write numbered failAfter fail (0: never).
	failAfter int
}

func newFakeLPM(t testing.TB) *fakeLPM {
	return &fakeLPM{t: t, dst: map[groupKey]uint32{}, src: map[srcKey]spdValue{}}
}

func (f *fakeLPM) op() error {
	f.ops++
	if f.failAfter != 0 && f.ops == f.failAfter {
		return fmt.Errorf("injected failure at write %d", f.ops)
	}
	return nil
}

// check: every group a stage-1 entry points to has stage-2 entries.
func (f *fakeLPM) check(when string) {
	for gk, g := range f.dst {
		n := 0
		for sk := range f.src {
			if sk.group == g {
				n++
			}
		}
		if n == 0 {
			f.t.Errorf("%s: stage-1 %v points to group %d with no entries", when, gk, g)
		}
	}
}

func (f *fakeLPM) putDst(k groupKey, g uint32) error {
	if err := f.op(); err != nil {
		return err
	}
	f.dst[k] = g
	f.check("putDst")
	return nil
}

func (f *fakeLPM) delDst(k groupKey) error {
	if err := f.op(); err != nil {
		return err
	}
	delete(f.dst, k)
	f.check("delDst")
	return nil
}

func (f *fakeLPM) putSrc(k srcKey, v spdValue) error {
	if err := f.op(); err != nil {
		return err
	}
	f.src[k] = v
	return nil
}

func (f *fakeLPM) delSrc(k srcKey) error {
	if err := f.op(); err != nil {
		return err
	}
	delete(f.src, k)
	f.check("delSrc")
	return nil
}

// lookup is steer.c's spd_lookup over the fake maps.
func (f *fakeLPM) lookup(ifindex int, src, dst netip.Addr) (spdValue, bool) {
	best, found := groupKey{}, false
	for gk := range f.dst {
		if gk.ifindex == ifindex && gk.dst.Contains(dst) && (!found || gk.dst.Bits() > best.dst.Bits()) {
			best, found = gk, true
		}
	}
	if !found {
		return spdValue{}, false
	}
	g := f.dst[best]
	var bs srcKey
	found = false
	for sk := range f.src {
		if sk.group == g && sk.src.Contains(src) && (!found || sk.src.Bits() > bs.src.Bits()) {
			bs, found = sk, true
		}
	}
	return f.src[bs], found
}

// oracle: the policy covering both addresses with the longest source
// prefix, then the longest destination prefix.
func oracle(pols []Policy, ifindex int, src, dst netip.Addr) (spdValue, bool) {
	var best *Policy
	for _, p := range pols {
		if p.Ifindex != ifindex || !p.Local.Contains(src) || !p.Remote.Contains(dst) {
			continue
		}
		if best == nil || p.Local.Bits() > best.Local.Bits() ||
			(p.Local.Bits() == best.Local.Bits() && p.Remote.Bits() > best.Remote.Bits()) {
			best = &p
		}
	}
	if best == nil {
		return spdValue{}, false
	}
	return best.value(), true
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestSPDWiderDestination is the case a plain two-stage lookup misses.
func TestSPDWiderDestination(t *testing.T) {
	tab, f := newSPDTable(), newFakeLPM(t)
	must(t, tab.set(f, Policy{Ifindex: 2, Local: pfx("10.0.0.0/8"), Remote: pfx("198.18.1.0/24"), ID: 1, LogicalSPU: 11}))
	must(t, tab.set(f, Policy{Ifindex: 2, Local: pfx("172.16.0.0/12"), Remote: pfx("198.18.0.0/16"), ID: 2, LogicalSPU: 22}))
	cases := []struct {
		src, dst string
		id       uint32
		ok       bool
	}{
		{"10.1.1.1", "198.18.1.5", 1, true},
		{"172.16.0.1", "198.18.1.5", 2, true}, // destination /24 wins stage 1; policy 2 is inherited
		{"172.16.0.1", "198.18.2.5", 2, true},
		{"10.1.1.1", "198.18.2.5", 0, false},
		{"192.0.2.1", "198.18.1.5", 0, false},
	}
	for _, c := range cases {
		v, ok := f.lookup(2, netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst))
		if ok != c.ok || v.id != c.id {
			t.Errorf("%s -> %s: got policy %d (%v), want %d (%v)", c.src, c.dst, v.id, ok, c.id, c.ok)
		}
		if _, ok := f.lookup(3, netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)); ok {
			t.Errorf("%s -> %s matched on another interface", c.src, c.dst)
		}
	}
	// Removing the /24 policy leaves policy 2 for its traffic.
	must(t, tab.delete(f, 2, pfx("10.0.0.0/8"), pfx("198.18.1.0/24")))
	if v, ok := f.lookup(2, netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("198.18.1.5")); !ok || v.id != 2 {
		t.Errorf("after delete: got %d %v, want policy 2", v.id, ok)
	}
	must(t, tab.delete(f, 2, pfx("172.16.0.0/12"), pfx("198.18.0.0/16")))
	if len(f.dst)+len(f.src) != 0 {
		t.Errorf("entries left after deleting every policy: %v %v", f.dst, f.src)
	}
	if err := tab.delete(f, 2, pfx("172.16.0.0/12"), pfx("198.18.0.0/16")); err == nil {
		t.Error("deleting a missing policy succeeded")
	}
}

func TestSPDRejects(t *testing.T) {
	tab, f := newSPDTable(), newFakeLPM(t)
	bad := []Policy{
		{Ifindex: 0, Local: pfx("10.0.0.0/8"), Remote: pfx("10.0.0.0/8")},
		{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: pfx("2001:db8::/32")},
		{Ifindex: 1, Local: pfx("::ffff:10.0.0.0/104"), Remote: pfx("::ffff:10.0.0.0/104")},
		{Ifindex: 1, Remote: pfx("10.0.0.0/8")},
	}
	for _, p := range bad {
		if err := tab.set(f, p); err == nil {
			t.Errorf("accepted %+v", p)
		}
	}
}

func randPrefix(r *rand.Rand, is4 bool) netip.Prefix {
	// Few distinct bits, so that prefixes nest and overlap often.
	if is4 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(4) * 64)})
		return netip.PrefixFrom(a, []int{0, 8, 16, 23, 24, 26, 32}[r.IntN(7)]).Masked()
	}
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4] = byte(r.IntN(4))
	b[15] = byte(r.IntN(4))
	return netip.PrefixFrom(netip.AddrFrom16(b), []int{0, 32, 34, 40, 64, 128}[r.IntN(6)]).Masked()
}

func randIn(r *rand.Rand, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(5)), byte(r.IntN(256))})
	}
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[4] = byte(r.IntN(5))
	b[15] = byte(r.IntN(5))
	return netip.AddrFrom16(b)
}

// TestSPDRandom applies random adds and deletes and compares every lookup
// with the oracle, on two interfaces and both families.
func TestSPDRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	tab, f := newSPDTable(), newFakeLPM(t)
	for step := range 600 {
		is4 := r.IntN(2) == 0
		ifindex := 1 + r.IntN(2)
		p := Policy{Ifindex: ifindex, Local: randPrefix(r, is4), Remote: randPrefix(r, is4),
			ID: uint32(step), LogicalSPU: uint16(r.IntN(256)), Bypass: r.IntN(10) == 0}
		if r.IntN(3) == 0 {
			_ = tab.delete(f, p.Ifindex, p.Local, p.Remote)
		} else {
			must(t, tab.set(f, p))
		}
		// Every group holds exactly what a full recomputation wants
		// (set and delete update only the changed source's entries).
		for rk, g := range tab.groups() {
			gk := groupKey{int(rk.ifindex), rk.remote.prefix()}
			want := tab.desired(gk.ifindex, gk.dst)
			if len(want) != g.src.len() {
				t.Fatalf("step %d: group %v: %d entries, want %d", step, gk, g.src.len(), len(want))
			}
			for s, v := range want {
				if have, _ := g.src.get(pfxOf(s)); have != v || f.src[srcKey{g.id, s}] != v {
					t.Fatalf("step %d: group %v source %v: table %+v, map %+v, want %+v", step, gk, s, have, f.src[srcKey{g.id, s}], v)
				}
			}
		}
		for range 20 {
			is4 := r.IntN(2) == 0
			ifindex := 1 + r.IntN(2)
			src, dst := randIn(r, is4), randIn(r, is4)
			got, gok := f.lookup(ifindex, src, dst)
			want, wok := oracle(tab.list(), ifindex, src, dst)
			if got != want || gok != wok {
				t.Fatalf("step %d: if%d %v -> %v: lookup %+v %v, oracle %+v %v", step, ifindex, src, dst, got, gok, want, wok)
			}
		}
	}
	// Groups are recycled, not leaked.
	for _, p := range tab.list() {
		must(t, tab.delete(f, p.Ifindex, p.Local, p.Remote))
	}
	if len(f.dst)+len(f.src)+len(tab.dests) != 0 {
		t.Errorf("state left after deleting everything: %d %d %d",
			len(f.dst), len(f.src), len(tab.dests))
	}
	t.Logf("%d writes, %d groups ever allocated", f.ops, tab.nextGroup)
}

// TestSPDWriteFailure injects a failing write at every position and checks
// that the table and the maps still agree with the remaining policies.
func TestSPDWriteFailure(t *testing.T) {
	base := []Policy{
		{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: pfx("198.18.0.0/16"), ID: 1},
		{Ifindex: 1, Local: pfx("10.1.0.0/16"), Remote: pfx("198.18.1.0/24"), ID: 2},
	}
	extra := Policy{Ifindex: 1, Local: pfx("10.2.0.0/16"), Remote: pfx("198.18.1.128/25"), ID: 3}
	for n := 1; n < 12; n++ {
		tab, f := newSPDTable(), newFakeLPM(t)
		for _, p := range base {
			must(t, tab.set(f, p))
		}
		f.failAfter = f.ops + n
		err := tab.set(f, extra)
		f.failAfter = 0
		if _, kept := tab.policies[extra.key()]; kept == (err != nil) {
			t.Errorf("failure at write %d: error %v but policy kept %v", n, err, kept)
		}
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for range 200 {
			src := netip.AddrFrom4([4]byte{10, byte(r.IntN(3)), 0, 1})
			dst := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(2)), byte(r.IntN(256))})
			got, gok := f.lookup(1, src, dst)
			want, wok := oracle(tab.list(), 1, src, dst)
			if got != want || gok != wok {
				t.Fatalf("failure at write %d (err %v): %v -> %v: lookup %+v %v, oracle %+v %v", n, err, src, dst, got, gok, want, wok)
			}
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSPDLimit: a family at its limit refuses a new policy with a
// *TableFullError and changes nothing; the other family, a replacement
// (same selectors) and an add after a delete still go.
func TestSPDLimit(t *testing.T) {
	tab, f := newSPDTable(), newFakeLPM(t)
	tab.max = 3
	for i := range 3 {
		must(t, tab.set(f, Policy{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32), ID: uint32(i + 1)}))
	}
	dst, src, ops := len(f.dst), len(f.src), f.ops
	err := tab.set(f, Policy{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: pfx("198.18.0.9/32"), ID: 4})
	var full *TableFullError
	if !errors.As(err, &full) || !errors.Is(err, ErrTableFull) {
		t.Fatalf("fourth IPv4 policy: %v, want a *TableFullError", err)
	}
	if *full != (TableFullError{Map: "spd4_dst", Size: 3, Policies: 3}) {
		t.Errorf("refusal %+v", *full)
	}
	if want := "SPD table full: spd4_dst holds 3 IPv4 policies"; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("refusal %q, want it to end in %q", err, want)
	}
	if len(f.dst) != dst || len(f.src) != src || f.ops != ops || len(tab.policies) != 3 {
		t.Errorf("the refused policy wrote %d times: %d/%d entries, were %d/%d", f.ops-ops, len(f.dst), len(f.src), dst, src)
	}
	must(t, tab.set(f, Policy{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: pfx("198.18.0.1/32"), ID: 2, LogicalSPU: 7}))
	must(t, tab.set(f, Policy{Ifindex: 1, Local: pfx("2001:db8::/32"), Remote: pfx("2001:db8:1::/48"), ID: 5}))
	must(t, tab.delete(f, 1, pfx("10.0.0.0/8"), pfx("198.18.0.0/32")))
	must(t, tab.set(f, Policy{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: pfx("198.18.0.9/32"), ID: 4}))
	if tab.count != [2]int{3, 1} {
		t.Errorf("counts %v, want [3 1]", tab.count)
	}
}

// fullLPM is a fakeLPM whose source map holds srcCap entries, and says so
// as the kernel's does, through mapWriter.full.
type fullLPM struct {
	*fakeLPM
	srcCap int
}

func (f *fullLPM) putSrc(k srcKey, v spdValue) error {
	if _, ok := f.src[k]; !ok && len(f.src) >= f.srcCap {
		return &TableFullError{Map: "spd4_src", Size: f.srcCap}
	}
	return f.fakeLPM.putSrc(k, v)
}

// TestSPDSourcesFull: a policy whose source entries overflow their map
// (a wide destination over narrower groups takes one in each) is refused
// with the map named, and leaves no entry of its own behind.
func TestSPDSourcesFull(t *testing.T) {
	tab, f := newSPDTable(), &fullLPM{fakeLPM: newFakeLPM(t), srcCap: 4}
	for i := range 3 {
		must(t, tab.set(f, Policy{Ifindex: 1, Local: pfx("10.0.0.0/8"), Remote: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32), ID: uint32(i + 1)}))
	}
	before := maps.Clone(f.src)
	beforeDst := maps.Clone(f.dst)
	// Its own group and the three /32s inside it: four more sources.
	err := tab.set(f, Policy{Ifindex: 1, Local: pfx("172.16.0.0/12"), Remote: pfx("198.18.0.0/16"), ID: 9})
	var full *TableFullError
	if !errors.As(err, &full) || full.Map != "spd4_src" || full.Size != 4 || full.Policies != 3 {
		t.Fatalf("policy 9: %v (%+v), want spd4_src full at 4 for 3 policies", err, full)
	}
	if !maps.Equal(f.src, before) || !maps.Equal(f.dst, beforeDst) || len(tab.policies) != 3 || tab.count[0] != 3 {
		t.Errorf("after the refusal: sources %v (were %v), destinations %v (were %v), %d policies",
			f.src, before, f.dst, beforeDst, len(tab.policies))
	}
	srcs, groups := 0, 0
	for _, g := range tab.groups() {
		srcs += g.src.len()
		groups++
	}
	if groups != 3 || srcs != 3 {
		t.Errorf("the table kept %d groups and %d sources, want 3 and 3", groups, srcs)
	}
}

// TestKeyPrefix: a prefix comes back from the table's form as it went in.
func TestKeyPrefix(t *testing.T) {
	for _, p := range []string{"0.0.0.0/0", "10.1.2.0/24", "198.18.0.1/32", "::/0", "2001:db8::/32", "::ffff:0:0/96", "2001:db8::1/128"} {
		q := netip.MustParsePrefix(p)
		if got := pfxOf(q).prefix(); got != q {
			t.Errorf("%v came back as %v", q, got)
		}
	}
	if pfxOf(netip.MustParsePrefix("0.0.0.0/0")) == pfxOf(netip.MustParsePrefix("::ffff:0:0/96")) {
		t.Error("IPv4 any and ::ffff:0:0/96 share a key")
	}
}

// TestPrefixSet takes a prefixSet past the size where it turns from a
// slice into a map and back to empty, against a map.
func TestPrefixSet(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var s prefixSet[uint32]
	want := map[keyPrefix]uint32{}
	for step := range 2000 {
		p := pfxOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(3 * prefixSetFew))}), 32))
		if r.IntN(3) == 0 {
			s.del(p)
			delete(want, p)
		} else {
			s.put(p, uint32(step))
			want[p] = uint32(step)
		}
		if s.len() != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, s.len(), len(want))
		}
		for p, v := range want {
			if got, ok := s.get(p); !ok || got != v {
				t.Fatalf("step %d: %v is %d %v, want %d", step, p, got, ok, v)
			}
		}
		n := 0
		for p, v := range s.all() {
			if want[p] != v {
				t.Fatalf("step %d: all gives %v %d, want %d", step, p, v, want[p])
			}
			n++
		}
		if n != len(want) || len(s.keys()) != len(want) {
			t.Fatalf("step %d: all gives %d entries, keys %d, want %d", step, n, len(s.keys()), len(want))
		}
	}
	for p := range want {
		s.del(p)
	}
	if s.len() != 0 || s.few != nil || s.many != nil {
		t.Errorf("emptied set holds %d entries (%v, %v)", s.len(), s.few, s.many)
	}
}

// Policies with the same selectors, set and removed in every order: the
// entry names the newest policy left, and goes with the last one; a
// policy of other selectors keeps its entry throughout.
func TestSPDShared(t *testing.T) {
	l, r := pfx("198.18.1.0/24"), pfx("198.18.2.0/24")
	pol := func(id uint32) Policy { return Policy{Ifindex: 3, Local: l, Remote: r, ID: id, LogicalSPU: uint16(id)} }
	other := Policy{Ifindex: 3, Local: l, Remote: pfx("198.18.3.0/24"), ID: 9}
	src, dst, dstOther := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr("198.18.3.1")
	ids := []uint32{1, 2, 3}
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			tab, f := newSPDTable(), newFakeLPM(t)
			for _, id := range ids {
				must(t, tab.set(f, pol(id)))
			}
			must(t, tab.set(f, other))
			left := map[uint32]bool{1: true, 2: true, 3: true}
			for _, i := range order {
				must(t, tab.remove(f, pol(ids[i])))
				delete(left, ids[i])
				newest := uint32(0)
				for _, id := range ids {
					if left[id] {
						newest = id
					}
				}
				got, ok := f.lookup(3, src, dst)
				switch {
				case newest == 0 && ok:
					t.Errorf("after removing %v: entry %d stays with no policy", order, got.id)
				case newest != 0 && (got.id != newest || got.logical != uint16(newest) || !ok):
					t.Errorf("after removing policy %d: entry names %+v (present %v), want the newest left, %d", ids[i], got, ok, newest)
				}
				if got, _ := f.lookup(3, src, dstOther); got.id != 9 {
					t.Errorf("a policy with other selectors lost its entry")
				}
			}
			if len(tab.shadowed) != 0 {
				t.Errorf("shadowed policies left: %v", tab.shadowed)
			}
		})
	}
	// Removing what is not there changes nothing; setting a policy again
	// (its ID) puts it in front without a copy behind.
	tab, f := newSPDTable(), newFakeLPM(t)
	must(t, tab.set(f, pol(1)))
	must(t, tab.set(f, pol(2)))
	must(t, tab.remove(f, pol(7)))
	must(t, tab.set(f, pol(1)))
	if got, _ := f.lookup(3, src, dst); got.id != 1 {
		t.Errorf("policy 1 set again: entry names %d", got.id)
	}
	must(t, tab.remove(f, pol(1)))
	if got, _ := f.lookup(3, src, dst); got.id != 2 {
		t.Errorf("policy 1 removed: entry names %d, want 2", got.id)
	}
	must(t, tab.remove(f, pol(2)))
	if _, ok := f.lookup(3, src, dst); ok || len(tab.policies)+len(tab.shadowed) != 0 {
		t.Errorf("every policy removed: entry left (%v), %d policies, %d shadowed", ok, len(tab.policies), len(tab.shadowed))
	}
}

// Many policies on one entry (a load generator's tunnels), set, set again
// and removed at random: the entry always names the newest policy left,
// as a plain list of them says, through the dead slots and compactions of
// the list behind it.
func TestSPDSharedMany(t *testing.T) {
	l, r := pfx("198.18.1.0/24"), pfx("198.18.2.0/24")
	src, dst := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.2.1")
	pol := func(id uint32) Policy { return Policy{Ifindex: 3, Local: l, Remote: r, ID: id, LogicalSPU: uint16(id)} }
	tab, f := newSPDTable(), newFakeLPM(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	var model []uint32 // oldest first; the last is the entry's
	at := func(id uint32) int { return slices.Index(model, id) }
	next := uint32(1)
	for step := range 20000 {
		switch k := rnd.IntN(10); {
		case k < 5 || len(model) == 0: // a new policy
			must(t, tab.set(f, pol(next)))
			model = append(model, next)
			next++
		case k < 6: // one of them set again: in front
			id := model[rnd.IntN(len(model))]
			must(t, tab.set(f, pol(id)))
			model = append(slices.Delete(model, at(id), at(id)+1), id)
		default: // one of them removed
			id := model[rnd.IntN(len(model))]
			must(t, tab.remove(f, pol(id)))
			model = slices.Delete(model, at(id), at(id)+1)
		}
		got, ok := f.lookup(3, src, dst)
		switch {
		case len(model) == 0 && ok:
			t.Fatalf("step %d: entry %d stays with no policy", step, got.id)
		case len(model) > 0 && (!ok || got.id != model[len(model)-1]):
			t.Fatalf("step %d: entry names %d (present %v), want %d", step, got.id, ok, model[len(model)-1])
		}
	}
	for len(model) > 0 {
		id := model[rnd.IntN(len(model))]
		must(t, tab.remove(f, pol(id)))
		model = slices.Delete(model, at(id), at(id)+1)
		if got, ok := f.lookup(3, src, dst); len(model) > 0 && got.id != model[len(model)-1] || len(model) == 0 && ok {
			t.Fatalf("draining: entry names %d (present %v), want %v", got.id, ok, model)
		}
	}
	if len(tab.shadowed) != 0 || len(tab.policies) != 0 {
		t.Errorf("every policy removed: %d entries, %d lists behind one", len(tab.policies), len(tab.shadowed))
	}
}

// BenchmarkSPDSharedEntry is the cost of a policy set and an older one's
// removal on an entry with n policies behind it (every tunnel of a load
// generator has the same selectors): flat in n, where a scan per set made
// a million sets quadratic.
func BenchmarkSPDSharedEntry(b *testing.B) {
	l, r := pfx("198.18.1.0/24"), pfx("198.18.2.0/24")
	pol := func(id uint32) Policy { return Policy{Ifindex: 3, Local: l, Remote: r, ID: id} }
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			tab, f := newSPDTable(), newFakeLPM(b)
			for i := range n {
				must(b, tab.set(f, pol(uint32(i+1))))
			}
			next, old := uint32(n+1), uint32(1)
			for b.Loop() {
				must(b, tab.set(f, pol(next)))
				must(b, tab.remove(f, pol(old)))
				next++
				old++
			}
		})
	}
}
