package suite

import (
	"math/rand/v2"
	"sync/atomic"
)

// maxSharedTransforms bounds the transforms of a proposal Share looks up:
// a chosen proposal has one of each type (five at most).
const maxSharedTransforms = 6

// transformsKey is a list of transforms without attributes, comparable.
type transformsKey struct {
	n  int
	ts [maxSharedTransforms]struct {
		Type      TransformType
		ID        uint16
		KeyLength uint16
	}
}

// sharedTransforms is a list of transforms IKE SAs share, with its key.
type sharedTransforms struct {
	key transformsKey
	ts  []Transform
}

// sharedSlots is the size of the table of shared transform lists.
const sharedSlots = 256

// shared holds transform lists IKE SAs hold, each in the slot of its
// key's hash; a list that lands on a taken slot replaces the one there,
// which its IKE SAs keep. Safe for every worker at once.
var shared [sharedSlots]atomic.Pointer[sharedTransforms]

// sharedSeed makes the slots differ from one iked to the next.
var sharedSeed = rand.Uint64()

// slot is the key's slot in shared: a multiply-xorshift mix of its
// transforms (maphash.Comparable makes its argument escape, an
// allocation a lookup).
func (k *transformsKey) slot() uint64 {
	h := sharedSeed ^ uint64(k.n)
	for _, t := range k.ts[:k.n] {
		h = (h ^ (uint64(t.Type)<<32 | uint64(t.ID)<<16 | uint64(t.KeyLength))) * 0x9e3779b97f4a7c15
		h ^= h >> 32
	}
	return h % sharedSlots
}

// Share returns p with its transforms shared with other IKE SAs' equal
// ones: the chosen proposal of every IKE SA of a connection is mostly the
// same, 96 bytes of transforms (AES-GCM, a PRF, a group) each when every
// one holds its own copy, at a million IKE SAs. A proposal with an SPI
// or attributes, or more transforms than a chosen one has, is returned as
// it is. The transforms returned must not be changed: their capacity is
// their length, so that an append copies them.
func (p Proposal) Share() Proposal {
	if len(p.SPI) != 0 || len(p.Transforms) == 0 || len(p.Transforms) > maxSharedTransforms {
		return p
	}
	k := transformsKey{n: len(p.Transforms)}
	for i, t := range p.Transforms {
		if len(t.Attributes) != 0 {
			return p
		}
		k.ts[i].Type, k.ts[i].ID, k.ts[i].KeyLength = t.Type, t.ID, t.KeyLength
	}
	slot := &shared[k.slot()]
	if s := slot.Load(); s != nil && s.key == k {
		p.Transforms = s.ts
		return p
	}
	s := &sharedTransforms{key: k, ts: make([]Transform, len(p.Transforms))}
	for i, t := range p.Transforms {
		s.ts[i] = Transform{Type: t.Type, ID: t.ID, KeyLength: t.KeyLength}
	}
	slot.Store(s)
	p.Transforms = s.ts
	return p
}
