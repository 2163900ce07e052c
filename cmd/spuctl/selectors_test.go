package main

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/ipsec"
)

// randomAddr is an address near base, of its family: ranges of random
// selectors then are prefixes, single addresses or neither.
func randomAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		b := netip.MustParseAddr("2001:db8::").As16()
		b[14], b[15] = byte(rng.IntN(4)), byte(rng.IntN(256))
		if rng.IntN(8) == 0 {
			b[15] = 0xff
		}
		return netip.AddrFrom16(b)
	}
	b := [4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))}
	switch rng.IntN(4) {
	case 0:
		b[3] = 0
	case 1:
		b[3] = 255
	}
	return netip.AddrFrom4(b)
}

// appendSelector writes Selector.String's bytes: prefixes, single
// addresses, ranges, protocols and ports, both families, and the odd
// selectors (ends of two families, reversed, invalid, mapped). Not zoned
// ones: Selector.String does not return for them (Prefixes never reaches
// the zoned end).
func TestAppendSelector(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 7))
	var ts []ipsec.Selector
	for range 20000 {
		v6 := rng.IntN(2) == 0
		s := ipsec.Selector{From: randomAddr(rng, v6), To: randomAddr(rng, v6), ToPort: 65535}
		if rng.IntN(3) == 0 {
			p := netip.PrefixFrom(s.From, rng.IntN(s.From.BitLen()+1)).Masked()
			s = ipsec.PrefixSelector(p, 0)
		}
		switch rng.IntN(6) {
		case 0:
			s.Proto = []uint8{1, 6, 17, 47, 58, 132, 99}[rng.IntN(7)]
		case 1:
			s.Proto, s.FromPort, s.ToPort = 17, 53, 53
		case 2:
			s.Proto, s.FromPort, s.ToPort = 6, uint16(rng.IntN(2000)), uint16(1000+rng.IntN(2000))
		}
		ts = append(ts, s)
	}
	odd := []ipsec.Selector{{}, {From: netip.MustParseAddr("198.18.0.1"), To: netip.MustParseAddr("2001:db8::1")},
		{From: netip.MustParseAddr("198.18.0.9"), To: netip.MustParseAddr("198.18.0.1"), ToPort: 65535},
		{From: netip.MustParseAddr("::ffff:198.18.0.0"), To: netip.MustParseAddr("::ffff:198.18.0.255"), ToPort: 65535},
		{From: netip.MustParseAddr("0.0.0.0"), To: netip.MustParseAddr("255.255.255.255"), ToPort: 65535}}
	for _, s := range append(ts, odd...) {
		if got, want := string(appendSelector(nil, s)), s.String(); got != want {
			t.Fatalf("%#v: %q, String gives %q", s, got, want)
		}
	}
	for i := 0; i+3 <= len(ts); i += 3 {
		if got, want := string(appendSelectors(nil, ts[i:i+3])), tsList(ts[i:i+3]); got != want {
			t.Fatalf("%q, tsList gives %q", got, want)
		}
	}
	if got := string(appendSelectors(nil, nil)); got != "any" {
		t.Errorf("none: %q", got)
	}
	b := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { b = appendSelectors(b[:0], ts[:4]) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
