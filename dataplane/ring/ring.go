// Package ring is the bounded, lock-free, single-producer single-consumer
// ring that carries frames from the SPU that received them to their anchor
// SPU. Every (sender, anchor) pair of SPUs has its own ring, so each ring has
// exactly one producer and one consumer and needs no atomic read-modify-write:
// the producer publishes with a store-release of the tail, the consumer frees
// with a store-release of the head.
//
// Slots are preallocated and hold a copy of the packet: the sender's frame
// belongs to its own AF_XDP socket (no shared UMEM, see dataplane/xsk), so
// the frame goes back to its fill ring at once and the anchor owns the copy.
// A full ring is not waited on: the producer counts a drop.
package ring

import (
	"fmt"
	"sync/atomic"
)

// SlotSize holds a jumbo-less Ethernet frame with room to grow for ESP in
// place: the packet is copied at Headroom.
const SlotSize = 2048

// Headroom is where a slot's packet starts (Slot.Off after a copy), so that
// the anchor SPU can prepend the outer IP, UDP and ESP headers in place, as
// it does in an AF_XDP frame (see dataplane/xsk).
const Headroom = 256

// Slot is one packet in flight between SPUs.
type Slot struct {
	Buf [SlotSize]byte
	// Off and Len place the packet (from its Ethernet header) in Buf.
	Off, Len int
	Meta     Meta
}

// Meta is what the SPU that received a packet hands on with it to the one
// that processes it: what the steering program found, where the IP header
// starts, and where the packet came in (for a frame to transmit, where it
// goes out).
type Meta struct {
	Class   uint8
	Logical uint16
	Policy  uint32 // cleartext: the SPD policy the steering program matched
	L3      int32  // the IP header's offset in the packet
	Ifindex int32
}

type pad [64]byte

// Ring is an SPSC ring of slots. The zero value is not usable: use New.
type Ring struct {
	slots []Slot
	mask  uint64
	_     pad
	head  atomic.Uint64 // next slot to consume; written by the consumer
	_     pad
	tail  atomic.Uint64 // next slot to produce; written by the producer
	_     pad
	// Producer-private cache of head, so a producer that is not near full
	// never reads the consumer's cache line.
	headCache uint64
	_         pad
	tailCache uint64 // consumer-private cache of tail
}

// New returns a ring of size slots, a power of two.
func New(size int) (*Ring, error) {
	if size < 2 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring: size %d is not a power of two >= 2", size)
	}
	return &Ring{slots: make([]Slot, size), mask: uint64(size - 1)}, nil
}

// Cap is the number of slots.
func (r *Ring) Cap() int { return len(r.slots) }

// Len is the number of slots in flight (approximate from any goroutine).
func (r *Ring) Len() int { return int(r.tail.Load() - r.head.Load()) }

// Reserve returns the next free slot for the producer to fill, or nil when
// the ring is full. The slot is not visible until Commit.
func (r *Ring) Reserve() *Slot {
	t := r.tail.Load()
	if t-r.headCache >= uint64(len(r.slots)) {
		r.headCache = r.head.Load()
		if t-r.headCache >= uint64(len(r.slots)) {
			return nil
		}
	}
	return &r.slots[t&r.mask]
}

// Commit publishes the slot Reserve returned.
func (r *Ring) Commit() {
	r.tail.Store(r.tail.Load() + 1)
}

// Peek returns the oldest published slot for the consumer, or nil.
func (r *Ring) Peek() *Slot {
	h := r.head.Load()
	if h == r.tailCache {
		r.tailCache = r.tail.Load()
		if h == r.tailCache {
			return nil
		}
	}
	return &r.slots[h&r.mask]
}

// Release frees the slot Peek returned.
func (r *Ring) Release() {
	r.head.Store(r.head.Load() + 1)
}
