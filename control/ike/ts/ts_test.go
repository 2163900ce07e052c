package ts

import (
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/control/config"
)

func sel(t *testing.T, s string) ipsec.Selector {
	t.Helper()
	c, err := config.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return FromConfig([]config.Selector{c}, netip.Addr{})[0]
}

func sels(t *testing.T, ss ...string) []ipsec.Selector {
	var out []ipsec.Selector
	for _, s := range ss {
		out = append(out, sel(t, s))
	}
	return out
}

func TestIntersect(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"198.18.1.0/24", "198.18.1.128/25", "198.18.1.128/25"},
		{"198.18.1.0/24", "198.18.2.0/24", ""},
		{"198.18.1.0-198.18.1.100", "198.18.1.50-198.18.1.200", "198.18.1.50-198.18.1.100"},
		{"0.0.0.0/0", "198.18.1.1[tcp/80]", "198.18.1.1[tcp/80]"},
		{"0.0.0.0/0[udp]", "0.0.0.0/0[tcp]", ""},
		{"0.0.0.0/0[tcp/1000-2000]", "0.0.0.0/0[tcp/1500-3000]", "0.0.0.0/0[tcp/1500-2000]"},
		{"0.0.0.0/0", "::/0", ""},
		{"2001:db8:1::/64", "2001:db8::/32", "2001:db8:1::/64"},
	} {
		got, ok := Intersect(sel(t, c.a), sel(t, c.b))
		if c.want == "" {
			if ok {
				t.Errorf("%s ∩ %s = %s, want nothing", c.a, c.b, got.String())
			}
			continue
		}
		if !ok || got.String() != c.want {
			t.Errorf("%s ∩ %s = %s %v, want %s", c.a, c.b, got.String(), ok, c.want)
		}
	}
}

func TestNarrowAndSubset(t *testing.T) {
	proposed := sels(t, "198.18.1.0/24", "198.18.9.0/24")
	ours := sels(t, "198.18.1.64/26", "198.18.0.0/16")
	got := Narrow(proposed, ours)
	// Ours first, in our order; 198.18.1.64/26 is inside what 198.18.0.0/16
	// then yields and is not repeated.
	if s := ipsec.Selectors(got); s != "198.18.1.64/26,198.18.1.0/24,198.18.9.0/24" {
		t.Errorf("narrowed to %s", s)
	}
	if !Subset(got, proposed) {
		t.Errorf("narrowed selectors not within the proposed ones")
	}
	if Subset(sels(t, "198.18.0.0/16"), proposed) {
		t.Errorf("a widened selector passed the initiator's check")
	}
	if Subset(nil, proposed) {
		t.Errorf("no selector passed the check")
	}
	if n := Narrow(proposed, sels(t, "198.18.7.0/24")); len(n) != 0 {
		t.Errorf("disjoint selectors narrowed to %s", ipsec.Selectors(n))
	}
}

func TestFromConfigDynamic(t *testing.T) {
	c, _ := config.ParseSelector("dynamic[udp/500]")
	got := FromConfig([]config.Selector{c}, netip.MustParseAddr("198.18.0.1"))
	if s := ipsec.Selectors(got); s != "198.18.0.1[udp/500]" {
		t.Errorf("dynamic resolved to %s", s)
	}
}
