package esp

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// warm is what an SA needs only while it carries packets: its cipher
// state, made from the keys the SA keeps, the outer header templates and
// the per-packet scratch of the nonce and AAD. An SA makes it at its
// first packet (warmUp) and its Owner drops it once the SA has been
// idle, so that a million mostly idle tunnels do not each hold two
// expanded AES keys and GHASH tables (~700 bytes an SA in Go's AES-GCM).
type warm struct {
	aead cipher.AEAD
	cbc  *cbcState // the CBC suites' (nil for AEAD)
	// hdrSum is the checksum of the IPv4 header's constant words or the
	// IPv6 UDP pseudo-header sum of the addresses and protocol.
	hdrSum uint64
	// idx is the SA's place in its owner's list of warm SAs (-1: none).
	idx int32
	// used: the SA carried a packet since its owner's Sweep last looked.
	used  bool
	seqHi [4]byte
	nonce [12]byte // salt || IV
	aad   [12]byte // SPI || [seq-hi] || seq-lo
	// The outer header template, by v4outer, each an array of its own
	// type so that writeOuter copies it inline (a 20-byte part of a
	// shared array went through memmove).
	hdr4 [iphdr.IPv4MinLen]byte
	hdr6 [iphdr.IPv6Len]byte
}

// hot returns the SA's warm state, making it if the SA is cold, and marks
// the SA used. Owner only; it allocates only when the SA was cold.
func (sa *SA) hot() *warm {
	w := sa.w
	if w == nil {
		w = sa.warmUp()
	}
	w.used = true
	return w
}

// warmUp makes the SA's warm state: the cipher state from its keys, the
// header templates from its endpoints. Kept out of line so that hot stays
// small enough to inline into the packet paths.
//
//go:noinline
func (sa *SA) warmUp() *warm {
	w := &warm{idx: -1}
	if err := sa.initCrypto(w); err != nil {
		// validate checked the keys NewSA took, and nothing else can
		// make the constructors fail.
		panic(fmt.Sprintf("esp: sa 0x%08x: cipher state: %v", sa.spi, err))
	}
	binary.BigEndian.PutUint32(w.aad[0:4], sa.spi)
	sa.buildHeaders(w)
	sa.resetIVs(w)
	sa.w = w
	if o := sa.owner; o != nil {
		o.add(sa)
		o.warmed.Store(o.warmed.Load() + 1)
	}
	return w
}

// Warm reports whether the SA holds its cipher state now. Owner only.
func (sa *SA) Warm() bool { return sa.w != nil }

// SetOwner makes o the SA's owner: the drop totals it counts into as well
// as its own, and the list that cools it when idle (nil: none; the SA
// stays warm once warm, as it does before it is given one). A warm SA
// moves to o with its state: an SA that moves to another SPU takes that
// SPU's Owner, so that each keeps one writer. Owner only (the old owner's
// list is changed: call it with the old owner stopped, or between its
// packets, as a migration does).
func (sa *SA) SetOwner(o *Owner) {
	if sa.owner == o {
		return
	}
	if sa.w != nil && sa.owner != nil {
		sa.owner.remove(sa)
	}
	sa.owner = o
	if sa.w != nil && o != nil {
		o.add(sa)
	}
}

// Release drops the SA's cipher state and takes it off its owner, for an
// SA that is deleted: the owner then holds no pointer to it. Owner only.
func (sa *SA) Release() {
	sa.SetOwner(nil)
	sa.w = nil
}

// Owner is what the SAs of one owner (an SPU) share: the totals of their
// drops, and the list of those that are warm, whose cipher state Sweep
// drops once they carried no packet for a while. The owner's goroutine
// alone uses it, but for its counts (Warm, Warmed, Cooled) and the
// DropTotals, which anyone may read.
type Owner struct {
	drops *DropTotals
	warm  []*SA
	// idle is the time between two looks at an SA; an SA unused
	// between them is cooled. 0: never.
	idle int64
	// next is the next SA of the pass to look at; pass is when the pass
	// began (a pass begins idle after the last one began).
	next int
	pass int64
	// nwarm is len(warm), and warmed and cooled count the SAs made warm
	// and cooled: written by the owner, read by anyone (an SPU's stats).
	nwarm, warmed, cooled counter
}

// NewOwner returns an owner whose SAs count their drops into drops as well
// (nil: their own only), and which cools an SA once it has carried no
// packet for between idle and twice idle (and the time Sweep takes to come
// round to it); idle <= 0 never cools one.
func NewOwner(drops *DropTotals, idle time.Duration) *Owner {
	if idle < 0 {
		idle = 0
	}
	return &Owner{drops: drops, idle: int64(idle)}
}

func (o *Owner) add(sa *SA) {
	sa.w.idx = int32(len(o.warm))
	o.warm = append(o.warm, sa)
	o.nwarm.Store(uint64(len(o.warm)))
}

// remove takes sa off the list, moving the last SA into its place.
func (o *Owner) remove(sa *SA) {
	i := int(sa.w.idx)
	if i < 0 || i >= len(o.warm) || o.warm[i] != sa {
		return
	}
	last := len(o.warm) - 1
	if i != last {
		m := o.warm[last]
		o.warm[i] = m
		m.w.idx = int32(i)
	}
	o.warm[last] = nil
	o.warm = o.warm[:last]
	o.nwarm.Store(uint64(last))
	sa.w.idx = -1
	if o.next > last {
		o.next = last
	}
}

// Sweep looks at up to max warm SAs, at time now (nanoseconds, on any
// clock the owner keeps to): an SA used since the last look is kept and
// marked unused, one not used is cooled (its next packet makes its state
// again). A pass over the list begins at most once per idle period; a call
// between passes returns at once, so that the owner may call it on every
// turn of its loop, with a small max to bound the time one call takes.
func (o *Owner) Sweep(now int64, max int) {
	if o.next == 0 && (o.idle == 0 || now-o.pass < o.idle) {
		return
	}
	o.sweep(now, max)
}

func (o *Owner) sweep(now int64, max int) {
	if o.next == 0 {
		o.pass = now
	}
	for n := 0; n < max && o.next < len(o.warm); n++ {
		sa := o.warm[o.next]
		if w := sa.w; w.used {
			w.used = false
			o.next++
			continue
		}
		// The last SA takes this place and is looked at next.
		o.remove(sa)
		sa.w = nil
		o.cooled.Store(o.cooled.Load() + 1)
	}
	if o.next >= len(o.warm) {
		o.next = 0
	}
}

// Warm is the number of warm SAs of the owner. Any goroutine.
func (o *Owner) Warm() int { return int(o.nwarm.Load()) }

// Warmed is how many times an SA of the owner was made warm. Any
// goroutine.
func (o *Owner) Warmed() uint64 { return o.warmed.Load() }

// Cooled is how many times Sweep cooled an SA of the owner. Any
// goroutine.
func (o *Owner) Cooled() uint64 { return o.cooled.Load() }
