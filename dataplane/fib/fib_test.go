package fib

import (
	"net/netip"
	"testing"
)

func testSnapshot() *snapshot {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	s := &snapshot{
		links: map[int]link{
			2: {mac: [6]byte{2, 0, 0, 0, 0, 2}, mtu: 1500, name: "lan0", src4: a("198.18.1.1"), src6: a("2001:db8:1::1")},
			3: {mac: [6]byte{2, 0, 0, 0, 0, 3}, mtu: 1400, name: "wan0", src4: a("198.18.0.1")},
		},
		neighs: map[neighKey][6]byte{
			{3, a("198.18.0.2")}:  {2, 0, 0, 0, 9, 9},
			{2, a("198.18.1.10")}: {2, 0, 0, 0, 1, 10},
		},
		routes: []route{
			{dst: p("0.0.0.0/0"), gw: a("198.18.0.2"), ifindex: 3},
			{dst: p("198.18.1.0/24"), ifindex: 2},
			{dst: p("198.18.0.0/24"), ifindex: 3},
			{dst: p("198.18.1.1/32"), ifindex: 2, local: true},
			{dst: p("198.18.2.0/24"), gw: a("198.18.0.2"), ifindex: 3, metric: 10},
			{dst: p("198.18.2.0/24"), gw: a("198.18.0.3"), ifindex: 3, metric: 5},
			{dst: p("2001:db8:1::/64"), ifindex: 2},
		},
	}
	sortRoutes(s.routes)
	return s
}

func TestLookup(t *testing.T) {
	s := testSnapshot()
	a := netip.MustParseAddr
	cases := []struct {
		dst      string
		ifindex  int
		gw       string
		resolved bool
		local    bool
		src      string
	}{
		{"198.18.1.10", 2, "198.18.1.10", true, false, "198.18.1.1"},
		{"198.18.1.11", 2, "198.18.1.11", false, false, "198.18.1.1"},
		{"198.18.1.1", 2, "", false, true, ""},
		{"198.18.2.10", 3, "198.18.0.3", false, false, "198.18.0.1"}, // lower metric wins
		{"198.18.0.2", 3, "198.18.0.2", true, false, "198.18.0.1"},
		{"198.19.7.7", 3, "198.18.0.2", true, false, "198.18.0.1"}, // default route
		{"2001:db8:1::5", 2, "2001:db8:1::5", false, false, "2001:db8:1::1"},
	}
	for _, c := range cases {
		nh, ok := s.lookup(a(c.dst))
		if !ok {
			t.Errorf("%s: no route", c.dst)
			continue
		}
		if nh.Ifindex != c.ifindex || nh.Local != c.local || (!c.local && (nh.Gateway.String() != c.gw || nh.Resolved != c.resolved || nh.Src.String() != c.src)) {
			t.Errorf("%s: %+v", c.dst, nh)
		}
	}
	if _, ok := s.lookup(a("2001:db8:9::1")); ok {
		t.Error("route found for an IPv6 destination with no route")
	}
	nh, _ := s.lookup(a("198.18.0.2"))
	if nh.DstMAC != [6]byte{2, 0, 0, 0, 9, 9} || nh.SrcMAC != [6]byte{2, 0, 0, 0, 0, 3} || nh.MTU != 1400 {
		t.Errorf("MACs/MTU %+v", nh)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	tb := &Table{}
	tb.cur.Store(testSnapshot())
	dst := netip.MustParseAddr("198.18.2.10")
	if n := testing.AllocsPerRun(1000, func() { tb.Lookup(dst) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}
