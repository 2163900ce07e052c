package ipsec

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSelectorTextRoundTrip(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"198.18.1.0/24", "198.18.1.0/24"},
		{"198.18.1.7/24", "198.18.1.0/24"},
		{"198.18.1.10", "198.18.1.10"},
		{"198.18.1.1-198.18.1.9", "198.18.1.1-198.18.1.9"},
		{"198.18.1.0-198.18.1.255", "198.18.1.0/24"},
		{"0.0.0.0/0[udp/53]", "0.0.0.0/0[udp/53]"},
		{"::/0[tcp/1000-2000]", "::/0[tcp/1000-2000]"},
		{"2001:db8::/32[ipv6-icmp]", "2001:db8::/32[ipv6-icmp]"},
		{"198.18.0.0/15[%any/%any]", "198.18.0.0/15"},
		{"10.0.0.0/8[50]", "10.0.0.0/8[50]"},
	} {
		s, err := ParseSelector(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got := s.String(); got != c.out {
			t.Errorf("%s: written %s, want %s", c.in, got, c.out)
		}
		if back, err := ParseSelector(s.String()); err != nil || back != s {
			t.Errorf("%s: %s read back as %+v, %v", c.in, s, back, err)
		}
	}
	for _, bad := range []string{"", "dynamic", "198.18.1.9-198.18.1.1", "198.18.1.0/24[udp/53", "198.18.1.0/24[bogus]",
		"198.18.1.0/24[any/80]", "198.18.1.0/24[tcp/9-8]", "198.18.1.1-2001:db8::1"} {
		if s, err := ParseSelector(bad); err == nil {
			t.Errorf("%q parsed as %+v", bad, s)
		}
	}
}

// TestSelectorPrefixes checks the prefix cover of random ranges against
// the range itself: adjacent, in order, inside, covering both ends.
func TestSelectorPrefixes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
		b := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
		if b.Less(a) {
			a, b = b, a
		}
		ps := Selector{From: a, To: b}.Prefixes()
		next := a
		for i, p := range ps {
			if p.Addr() != next || p.Masked() != p {
				t.Fatalf("%s-%s: prefix %d %s does not start at %s", a, b, i, p, next)
			}
			next = LastAddr(p).Next()
		}
		if LastAddr(ps[len(ps)-1]) != b {
			t.Fatalf("%s-%s: cover %v ends at %s", a, b, ps, LastAddr(ps[len(ps)-1]))
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	dns := Selector{Proto: 17, From: netip.MustParseAddr("198.18.0.0"), To: netip.MustParseAddr("198.19.255.255"), FromPort: 53, ToPort: 53}
	any := PrefixSelector(netip.MustParsePrefix("198.18.0.0/15"), 0)
	in := netip.MustParseAddr("198.18.7.7")
	for _, c := range []struct {
		s       Selector
		a       netip.Addr
		proto   uint8
		port    uint16
		hasPort bool
		want    bool
	}{
		{dns, in, 17, 53, true, true},
		{dns, in, 17, 54, true, false},
		{dns, in, 6, 53, true, false},
		{dns, in, 17, 0, false, false}, // a later fragment: ports unknown
		{any, in, 6, 0, false, true},
		{any, netip.MustParseAddr("198.20.0.1"), 6, 80, true, false},
	} {
		if got := c.s.Matches(c.a, c.proto, c.port, c.hasPort); got != c.want {
			t.Errorf("%s matches %s proto %d port %d (%v): %v, want %v", c.s, c.a, c.proto, c.port, c.hasPort, got, c.want)
		}
	}
}

func TestSelectorPrefixesExact(t *testing.T) {
	a := netip.MustParseAddr
	cases := []struct {
		from, to string
		want     string
	}{
		{"198.18.1.0", "198.18.1.255", "198.18.1.0/24"},
		{"198.18.1.10", "198.18.1.10", "198.18.1.10/32"},
		{"198.18.1.1", "198.18.1.6", "198.18.1.1/32 198.18.1.2/31 198.18.1.4/31 198.18.1.6/32"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"2001:db8::", "2001:db8::ffff", "2001:db8::/112"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
	}
	for _, c := range cases {
		ts := Selector{From: a(c.from), To: a(c.to), ToPort: 65535}
		var got []string
		for _, p := range ts.Prefixes() {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s..%s: %v, want %s", c.from, c.to, got, c.want)
		}
	}
}

func TestSelectorValidateAndString(t *testing.T) {
	ts := PrefixSelector(netip.MustParsePrefix("198.18.2.0/24"), 0)
	if !ts.Matches(netip.MustParseAddr("198.18.2.77"), 17, 53, true) || ts.Matches(netip.MustParseAddr("198.18.3.1"), 17, 53, true) {
		t.Error("prefix selector containment wrong")
	}
	if ts.String() != "198.18.2.0/24" {
		t.Errorf("String = %q", ts.String())
	}
	udp := Selector{Proto: 17, From: netip.MustParseAddr("198.18.2.1"), To: netip.MustParseAddr("198.18.2.1"), FromPort: 500, ToPort: 500}
	if udp.String() != "198.18.2.1[udp/500]" || udp.Matches(udp.From, 6, 500, true) || !udp.Matches(udp.From, 17, 500, true) {
		t.Errorf("udp selector %s", udp)
	}
	bad := Selector{From: netip.MustParseAddr("198.18.2.9"), To: netip.MustParseAddr("198.18.2.1"), ToPort: 65535}
	if bad.Validate() == nil {
		t.Error("reversed range accepted")
	}
	mixed := Selector{From: netip.MustParseAddr("198.18.2.9"), To: netip.MustParseAddr("2001:db8::1"), ToPort: 65535}
	if mixed.Validate() == nil {
		t.Error("mixed families accepted")
	}
}

func TestPrefixSelector(t *testing.T) {
	s := PrefixSelector(netip.MustParsePrefix("198.19.2.77/24"), 6)
	if s.From != netip.MustParseAddr("198.19.2.0") || s.To != netip.MustParseAddr("198.19.2.255") || s.Proto != 6 {
		t.Fatalf("%+v", s)
	}
	s = PrefixSelector(netip.MustParsePrefix("2001:db8::/33"), 0)
	if s.To != netip.MustParseAddr("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff") {
		t.Fatalf("%+v", s)
	}
}

// TestSelectorJSON: the SA API's form round-trips, the form iked persisted
// before (its own selector type's field names) still reads, and unknown
// fields are refused.
func TestSelectorJSON(t *testing.T) {
	s := Selector{Proto: 17, From: netip.MustParseAddr("198.18.1.0"), To: netip.MustParseAddr("198.18.1.255"), FromPort: 53, ToPort: 53}
	b, err := json.Marshal(s)
	if err != nil || string(b) != `{"proto":17,"from":"198.18.1.0","to":"198.18.1.255","from_port":53,"to_port":53}` {
		t.Fatalf("%s, %v", b, err)
	}
	var back Selector
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	var old Selector
	legacy := `{"IPProtocol":17,"StartPort":53,"EndPort":53,"Start":"198.18.1.0","End":"198.18.1.255"}`
	if err := json.Unmarshal([]byte(legacy), &old); err != nil || old != s {
		t.Errorf("persisted form: %+v, %v", old, err)
	}
	if err := json.Unmarshal([]byte(`{"from":"198.18.1.0","to":"198.18.1.1","typo":1}`), &back); err == nil {
		t.Error("an unknown field was accepted")
	}
}

// TestSelectorZonedAddress: a zoned address (which no selector means)
// gives the prefixes of the address without it, not an endless walk.
func TestSelectorZonedAddress(t *testing.T) {
	a := netip.MustParseAddr("fe80::1%eth0")
	s := Selector{From: a, To: a, ToPort: 65535}
	done := make(chan []netip.Prefix, 1)
	go func() { done <- s.Prefixes() }()
	select {
	case ps := <-done:
		if len(ps) != 1 || ps[0].String() != "fe80::1/128" {
			t.Errorf("prefixes %v, want fe80::1/128", ps)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Prefixes of a zoned address did not return")
	}
	if got := s.String(); got != "fe80::1" {
		t.Errorf("String %q", got)
	}
}
