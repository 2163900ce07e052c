package ts

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"github.com/spugate/spugate/ipsec"
)

// sharedSlots is the size of the table of shared selector lists: enough
// for the selectors of many connections at once, 8 KiB of pointers.
const sharedSlots = 1024

// maxShared is the longest list Share looks up: a Child SA's selectors
// are a subnet or two a side (IPv4 and IPv6), rarely more.
const maxShared = 8

// shared holds selector lists that Child SAs hold, each in the slot of
// its hash; a list that lands on a taken slot replaces the one there,
// which its Child SAs keep. Safe for every worker at once.
var shared [sharedSlots]atomic.Pointer[[]ipsec.Selector]

// sharedSeed makes the slots of selectors differ from one iked to the
// next, so that a peer cannot tell which of its selectors push a shared
// one out (which would only cost the memory of unshared copies anyway).
var sharedSeed = rand.Uint64()

// slotOf is the slot of a list in shared: a multiply-xorshift mix of its
// selectors' fields (maphash.Comparable makes its argument escape, an
// allocation a lookup).
func slotOf(sels []ipsec.Selector) uint64 {
	h := sharedSeed ^ uint64(len(sels))
	for i := range sels {
		s := &sels[i]
		f, t := s.From.As16(), s.To.As16()
		for _, w := range [...]uint64{uint64(s.Proto)<<32 | uint64(s.FromPort)<<16 | uint64(s.ToPort),
			binary.LittleEndian.Uint64(f[:8]), binary.LittleEndian.Uint64(f[8:]),
			binary.LittleEndian.Uint64(t[:8]), binary.LittleEndian.Uint64(t[8:])} {
			h = (h ^ w) * 0x9e3779b97f4a7c15
			h ^= h >> 32
		}
	}
	return h % sharedSlots
}

// Share returns a list equal to sels that other Child SAs may hold too:
// the Child SAs of one connection mostly have the same selectors (a
// site's subnets, a load run's tunnels), 64 bytes a selector each when
// every one holds its own copy, at a million Child SAs. A list of up to
// maxShared selectors is looked up among those shared recently (by its
// hash, in a table of fixed size: selectors of their own, a road
// warrior's address, cost no more than a copy); a longer one is copied.
// The list returned is never sels itself, and must not be changed: its
// capacity is its length, so that an append copies it. Nil stays nil.
func Share(sels []ipsec.Selector) []ipsec.Selector {
	if len(sels) == 0 || len(sels) > maxShared {
		return slices.Clip(slices.Clone(sels))
	}
	slot := &shared[slotOf(sels)]
	if p := slot.Load(); p != nil && slices.Equal(*p, sels) {
		return *p
	}
	p := slices.Clip(slices.Clone(sels))
	slot.Store(&p)
	return p
}
