package suite

import (
	"sync"
	"testing"
)

// TestShare: equal chosen proposals share one array of transforms, which
// an append does not change; another list gets its own; a proposal with
// an SPI or attributes keeps its own; several workers at once are safe.
func TestShare(t *testing.T) {
	mk := func(bits uint16) Proposal {
		return Proposal{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{{Type: TransformEncr, ID: uint16(EncrAESGCM16), KeyLength: bits},
			{Type: TransformPRF, ID: uint16(PRFHMACSHA256)}, {Type: TransformKE, ID: uint16(GroupCurve25519)}}}
	}
	a, b := mk(256).Share(), mk(256).Share()
	if &a.Transforms[0] != &b.Transforms[0] || cap(a.Transforms) != 3 || a.String() != mk(256).String() {
		t.Fatalf("equal proposals not shared: %v %v", a, b)
	}
	b.Number = 2
	if a.Number != 1 {
		t.Fatal("the proposal number is shared")
	}
	if c := append(a.Transforms, Transform{Type: TransformESN}); &c[0] == &a.Transforms[0] {
		t.Fatal("an append writes into the shared transforms")
	}
	if c := mk(128).Share(); &c.Transforms[0] == &a.Transforms[0] || c.String() != mk(128).String() {
		t.Fatalf("another proposal: %v", c)
	}
	spi := mk(256)
	spi.SPI = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	if c := spi.Share(); &c.Transforms[0] != &spi.Transforms[0] {
		t.Error("a proposal with an SPI shared")
	}
	attr := mk(256)
	attr.Transforms[1].Attributes = []Attribute{{Type: 1, Value: []byte{1}}}
	if c := attr.Share(); &c.Transforms[0] != &attr.Transforms[0] {
		t.Error("a proposal with attributes shared")
	}
	p := mk(256)
	if n := testing.AllocsPerRun(100, func() { p.Share() }); n != 0 {
		t.Errorf("shared transforms found in %v allocations, want none", n)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				p := mk(uint16(w*2000 + i))
				if got := p.Share(); got.String() != p.String() {
					t.Errorf("shared %v for %v", got, p)
					return
				}
			}
		})
	}
	wg.Wait()
}
