package ipsec

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// A Range matches exactly what its Selector matches, on random selectors
// and packets of both families, ports known and unknown.
func TestRangeMatchesAsSelector(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func(v4 bool, base netip.Addr) netip.Addr {
		b := base.As16()
		if v4 {
			b4 := base.As4()
			b4[3] = byte(r.IntN(256))
			b4[2] = byte(r.IntN(4))
			return netip.AddrFrom4(b4)
		}
		b[15] = byte(r.IntN(256))
		b[14] = byte(r.IntN(4))
		return netip.AddrFrom16(b)
	}
	v4base, v6base := netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("2001:db8::")
	for i := range 20000 {
		v4 := r.IntN(2) == 0
		base := v6base
		if v4 {
			base = v4base
		}
		a, b := addr(v4, base), addr(v4, base)
		if b.Less(a) {
			a, b = b, a
		}
		s := Selector{From: a, To: b, FromPort: 0, ToPort: 65535}
		if r.IntN(2) == 0 {
			s.Proto = uint8(r.IntN(3) * 6) // 0, 6, 12
		}
		if r.IntN(2) == 0 {
			s.FromPort = uint16(r.IntN(100))
			s.ToPort = s.FromPort + uint16(r.IntN(100))
		}
		pv4 := v4
		if r.IntN(10) == 0 {
			pv4 = !v4
		}
		pb := v6base
		if pv4 {
			pb = v4base
		}
		p := addr(pv4, pb)
		proto := uint8(r.IntN(3) * 6)
		port, hasPort := uint16(r.IntN(220)), r.IntN(4) != 0
		want := pv4 == v4 && s.Matches(p, proto, port, hasPort)
		rg := s.Range()
		iport := NoPort
		if hasPort {
			iport = int(port)
		}
		hi, lo := AddrWords(p)
		if got := rg.Match(pv4, hi, lo, proto, iport); got != want {
			t.Fatalf("case %d: %s against %s proto %d port %d (%v): range %v, selector %v", i, s, p, proto, port, hasPort, got, want)
		}
	}
	if !MatchAny(nil, true, 0, 0, 0, NoPort) {
		t.Errorf("no ranges must match everything")
	}
}
