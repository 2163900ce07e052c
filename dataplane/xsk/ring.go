package xsk

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is our side of one single-producer single-consumer ring shared with
// the kernel. The kernel's side is the other index. Indexes are free-running
// uint32s; the slot is index & mask.
//
// Ordering: we read the other side's index with an atomic load (acquire)
// before touching the slots it covers, and publish ours with an atomic store
// (release) after writing (or reading) the slots. Go's sync/atomic is
// sequentially consistent, which is stronger than the acquire/release pair
// the kernel's ring protocol needs (asavie v0.3.3 has these fences commented
// out), and on amd64 costs one locked store per batch.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
	local    uint32 // our index: producer of a ring we fill, consumer of one we drain
	cached   uint32 // the kernel's index as last read (+size for rings we fill)
}

func (r *ring) init(mem []byte, off unix.XDPRingOffset, size uint32, weProduce bool) {
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r.producer = (*uint32)(unsafe.Add(base, off.Producer))
	r.consumer = (*uint32)(unsafe.Add(base, off.Consumer))
	r.flags = (*uint32)(unsafe.Add(base, off.Flags))
	r.size, r.mask = size, size-1
	if weProduce {
		r.local = atomic.LoadUint32(r.producer)
		r.cached = atomic.LoadUint32(r.consumer) + size
	} else {
		r.local = atomic.LoadUint32(r.consumer)
		r.cached = atomic.LoadUint32(r.producer)
	}
}

// free returns how many of n slots we can produce now (ring we fill).
func (r *ring) free(n uint32) uint32 {
	f := r.cached - r.local
	if f < n {
		r.cached = atomic.LoadUint32(r.consumer) + r.size
		f = r.cached - r.local
		if f > r.size { // a kernel index out of range: trust nothing
			f = 0
		}
	}
	return min(f, n)
}

// submit publishes n produced slots.
func (r *ring) submit(n uint32) {
	r.local += n
	atomic.StoreUint32(r.producer, r.local)
}

// avail returns how many of n slots we can consume now (ring we drain).
func (r *ring) avail(n uint32) uint32 {
	a := r.cached - r.local
	if a < n {
		r.cached = atomic.LoadUint32(r.producer)
		a = r.cached - r.local
		if a > r.size {
			a = 0
		}
	}
	return min(a, n)
}

// release publishes n consumed slots.
func (r *ring) release(n uint32) {
	r.local += n
	atomic.StoreUint32(r.consumer, r.local)
}

// pending is, for a ring we fill, how many produced slots the kernel has
// not consumed yet.
func (r *ring) pending() uint32 {
	return r.local - atomic.LoadUint32(r.consumer)
}

// needWakeup reports whether the kernel set XDP_RING_NEED_WAKEUP.
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// addrRing is a fill or completion ring: slots are UMEM addresses.
type addrRing struct {
	ring
	slots []uint64
}

func (r *addrRing) init(mem []byte, off unix.XDPRingOffset, size uint32, weProduce bool) {
	r.ring.init(mem, off, size, weProduce)
	r.slots = unsafe.Slice((*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(mem)), off.Desc)), size)
}

// descRing is an rx or tx ring: slots are descriptors.
type descRing struct {
	ring
	slots []unix.XDPDesc
}

func (r *descRing) init(mem []byte, off unix.XDPRingOffset, size uint32, weProduce bool) {
	r.ring.init(mem, off, size, weProduce)
	r.slots = unsafe.Slice((*unix.XDPDesc)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(mem)), off.Desc)), size)
}

// ringBytes is the length to map for a ring of size slots of slot bytes.
func ringBytes(off unix.XDPRingOffset, size uint32, slot uintptr) int {
	return int(off.Desc) + int(size)*int(slot)
}
