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

// Slot is one packet in flight between SPUs: Meta.Off and Meta.Len place
// it in Buf.
type Slot struct {
	// Buf holds the packet, copied at Headroom.
	Buf [SlotSize]byte
	// Meta places the packet in Buf and carries what travels with it.
	Meta Meta
}

// Meta is the one element that travels with a packet along an SPU's path,
// from the socket that received it through the handoff ring to the
// function that encapsulates or decapsulates it: where the packet is in its
// buffer, what the steering program found, and where it came in (for a
// frame to transmit, where it goes out). Together with the buffer it is the
// whole packet, so no function on the path takes offsets, class or policy
// one by one. 32-bit fields keep it in 24 bytes.
type Meta struct {
	// Off and Len place the packet in its buffer, from its Ethernet header
	// (or from its IP header when L3 is 0: a packet held, parked or
	// reassembled has none).
	Off, Len int32
	// L3 is the IP header's offset from Off.
	L3 int32
	// Ifindex is the interface the packet came in on, or for a frame to
	// transmit the one it goes out on.
	Ifindex int32
	// Policy is, for cleartext, the SPD policy the steering program matched.
	Policy uint32
	// Logical is the logical SPU the steering program named.
	Logical uint16
	// Class is the steering program's class (steer.Class), or the SPU's
	// mark of a frame to transmit.
	Class uint8
}

// IP returns the bounds of the IP packet in its buffer: buf[start:end].
func (m *Meta) IP() (start, end int) {
	return int(m.Off + m.L3), int(m.Off + m.Len)
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
