package steer

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// mapLen counts m's entries.
func mapLen(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPrivilegedSPDFull loads the program with room for 8 policies per
// family and fills it both ways: the ninth /32 policy is refused by the
// limit, and eight nested destinations (36 source entries) overflow the
// source trie of 32, the kernel's ENOSPC turned into a *TableFullError
// naming spd4_src. Neither leaves an entry in the maps; the policies set
// before still classify, and a deleted policy makes room for another.
func TestPrivilegedSPDFull(t *testing.T) {
	requireCarrier(t, CarrierNone)
	prog, err := Load(Options{Carrier: CarrierNone, MaxPolicies: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if got := prog.SPDSizes(); got != (SPDSizes{Policies: 8, Sources: 32}) {
		t.Fatalf("sizes %+v", got)
	}
	for name, m := range map[string]*ebpf.Map{"spd4_dst": prog.maps.Spd4Dst, "spd6_dst": prog.maps.Spd6Dst, "spd4_src": prog.maps.Spd4Src, "spd6_src": prog.maps.Spd6Src} {
		want := uint32(8)
		if name[5:] == "src" {
			want = 32
		}
		if m.MaxEntries() != want {
			t.Errorf("%s: max_entries %d, want %d", name, m.MaxEntries(), want)
		}
	}
	cls := prog.NewClassifier()
	a4 := func(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
	policyOf := func(src, dst netip.Addr) uint32 {
		id, _, _, ok := cls.Policy(1, src.As16(), dst.As16(), false)
		if !ok {
			return 0
		}
		return id
	}

	t.Run("limit", func(t *testing.T) {
		host := func(i int) Policy {
			return Policy{Ifindex: 1, Local: pfx("198.18.0.0/24"), Remote: netip.PrefixFrom(a4(198, 19, 0, byte(i)), 32), ID: uint32(100 + i)}
		}
		for i := range 8 {
			must(t, prog.SetPolicy(host(i)))
		}
		dst, src := mapLen(t, prog.maps.Spd4Dst), mapLen(t, prog.maps.Spd4Src)
		err := prog.SetPolicy(host(8))
		var full *TableFullError
		if !errors.As(err, &full) || *full != (TableFullError{Map: "spd4_dst", Size: 8, Policies: 8}) {
			t.Fatalf("ninth policy: %v, want spd4_dst full at 8", err)
		}
		if d, s := mapLen(t, prog.maps.Spd4Dst), mapLen(t, prog.maps.Spd4Src); d != dst || s != src {
			t.Errorf("the refusal changed the maps: %d/%d entries, were %d/%d", d, s, dst, src)
		}
		// IPv6 has its own eight.
		must(t, prog.SetPolicy(Policy{Ifindex: 1, Local: pfx("2001:db8::/32"), Remote: pfx("2001:db8:1::/48"), ID: 99}))
		must(t, prog.DeletePolicy(1, pfx("2001:db8::/32"), pfx("2001:db8:1::/48")))
		for i := range 8 {
			if got := policyOf(a4(198, 18, 0, 5), a4(198, 19, 0, byte(i))); got != uint32(100+i) {
				t.Errorf("policy %d classifies as %d", 100+i, got)
			}
		}
		must(t, prog.DeletePolicy(1, host(3).Local, host(3).Remote))
		must(t, prog.SetPolicy(host(8)))
		if got := policyOf(a4(198, 18, 0, 5), a4(198, 19, 0, 8)); got != 108 {
			t.Errorf("the policy added in the freed slot classifies as %d", got)
		}
		for _, i := range []int{0, 1, 2, 4, 5, 6, 7, 8} {
			must(t, prog.DeletePolicy(1, host(i).Local, host(i).Remote))
		}
	})

	t.Run("sources", func(t *testing.T) {
		// Destinations 198.19.0.0/31 out to /24, the narrowest first: the
		// k-th takes k source entries, its own and one in each narrower
		// group; seven take 28, the eighth's 8 do not fit in 32.
		nested := func(k int) Policy {
			return Policy{Ifindex: 1, Local: netip.PrefixFrom(a4(10, byte(k), 0, 0), 16), Remote: netip.PrefixFrom(a4(198, 19, 0, 0), 32-k), ID: uint32(200 + k)}
		}
		for k := 1; k <= 7; k++ {
			must(t, prog.SetPolicy(nested(k)))
		}
		dst, src := mapLen(t, prog.maps.Spd4Dst), mapLen(t, prog.maps.Spd4Src)
		if src != 28 {
			t.Fatalf("%d source entries, want 28", src)
		}
		err := prog.SetPolicy(nested(8))
		var full *TableFullError
		if !errors.As(err, &full) || *full != (TableFullError{Map: "spd4_src", Size: 32, Policies: 7}) {
			t.Fatalf("eighth nested policy: %v, want spd4_src full at 32 for 7 policies", err)
		}
		if d, s := mapLen(t, prog.maps.Spd4Dst), mapLen(t, prog.maps.Spd4Src); d != dst || s != src {
			t.Errorf("the refusal left entries: %d/%d, were %d/%d", d, s, dst, src)
		}
		for k := 1; k <= 7; k++ {
			if got := policyOf(a4(10, byte(k), 1, 1), a4(198, 19, 0, 0)); got != uint32(200+k) {
				t.Errorf("policy %d classifies as %d", 200+k, got)
			}
		}
		if got := policyOf(a4(10, 8, 1, 1), a4(198, 19, 0, 0)); got != 0 {
			t.Errorf("the refused policy classifies: %d", got)
		}
		// Without the widest, the eighth fits: the /25's seven entries go, the /24 takes seven.
		must(t, prog.DeletePolicy(1, nested(7).Local, nested(7).Remote))
		must(t, prog.SetPolicy(nested(8)))
		if got := policyOf(a4(10, 8, 1, 1), a4(198, 19, 0, 0)); got != 208 {
			t.Errorf("policy 208 classifies as %d", got)
		}
	})
}
