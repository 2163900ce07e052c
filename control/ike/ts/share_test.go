package ts

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/spugate/spugate/ipsec"
)

// TestShare: equal selector lists come back as one array, which an append
// does not change; different ones get their own (copies: the caller's
// list is never kept), nil stays nil; the table is safe for several
// workers at once.
func TestShare(t *testing.T) {
	sel := func(p string) ipsec.Selector { return ipsec.PrefixSelector(netip.MustParsePrefix(p), 0) }
	a := Share([]ipsec.Selector{sel("10.1.0.0/16")})
	b := Share([]ipsec.Selector{sel("10.1.0.0/16")})
	if &a[0] != &b[0] || len(a) != 1 || cap(a) != 1 {
		t.Fatalf("equal lists not shared: %p %p (len %d cap %d)", &a[0], &b[0], len(a), cap(a))
	}
	if c := append(a, sel("10.2.0.0/16")); &c[0] == &a[0] || a[0] != sel("10.1.0.0/16") {
		t.Fatal("an append changed the shared list")
	}
	if c := Share([]ipsec.Selector{sel("10.3.0.0/16")}); c[0] != sel("10.3.0.0/16") || &c[0] == &a[0] {
		t.Fatalf("another selector: %v", c)
	}
	two := []ipsec.Selector{sel("10.1.0.0/16"), sel("2001:db8:1::/48")}
	got := Share(two)
	if &got[0] == &two[0] || len(got) != 2 || cap(got) != 2 || got[0] != two[0] || got[1] != two[1] {
		t.Errorf("a list of two: %v (cap %d), the caller's kept %v", got, cap(got), &got[0] == &two[0])
	}
	if again := Share(slices.Clone(two)); &again[0] != &got[0] {
		t.Error("equal lists of two not shared")
	}
	if other := Share([]ipsec.Selector{two[1], two[0]}); &other[0] == &got[0] || other[0] != two[1] {
		t.Errorf("the same selectors in another order: %v", other)
	}
	long := make([]ipsec.Selector, maxShared+1)
	for i := range long {
		long[i] = sel(fmt.Sprintf("10.%d.0.0/16", 100+i))
	}
	if a, b := Share(long), Share(long); &a[0] == &b[0] || !slices.Equal(a, long) {
		t.Error("a list longer than maxShared shared, or not equal")
	}
	one := []ipsec.Selector{sel("10.4.0.0/16")}
	if got := Share(one); &got[0] == &one[0] {
		t.Error("the caller's list of one kept")
	}
	if Share(nil) != nil {
		t.Error("nil shared as a list")
	}
	if n := testing.AllocsPerRun(100, func() { Share(one) }); n != 0 {
		t.Errorf("a shared list found in %v allocations, want none", n)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				s := ipsec.PrefixSelector(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)}), 32), 0)
				if got := Share([]ipsec.Selector{s}); len(got) != 1 || got[0] != s {
					t.Errorf("shared %v for %v", got, s)
					return
				}
			}
		})
	}
	wg.Wait()
}
