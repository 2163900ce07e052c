package xsk

import "sync/atomic"

// BatchSize is the ideal number of frames per call of a Port's batch
// methods: big enough to spread a ring update and a syscall over many
// packets, small enough that a batch stays in the L1 cache.
const BatchSize = 64

// Port is what an SPU loop needs from one AF_XDP socket, and what
// xsktest fakes. All methods but Stats belong to the one goroutine that owns
// the port: none of them is safe for concurrent use, and none allocates.
//
// Frame ownership: frames returned by Receive and Alloc belong to the
// caller until it hands them back with Release or Transmit. A frame must go
// back to the port it came from.
type Port interface {
	// Receive fills frames with received packets and returns how many. It
	// never blocks. It also tops the fill ring up from the free frames.
	Receive(frames []Frame) int
	// Release hands frames (received or allocated) back to the port, which
	// reuses them for reception.
	Release(frames []Frame)
	// Alloc fills frames with free chunks to build packets in, each with
	// Off at the receive headroom and Len 0, and returns how many (fewer
	// when the free frames run out). It reaps completions first if needed.
	Alloc(frames []Frame) int
	// Transmit queues frames for transmission and returns n: frames[:n]
	// now belong to the port, frames[n:] (the tx ring was full) still
	// belong to the caller, to retry or Release. Any frame of this port's
	// UMEM may be sent, received ones included (hairpin). An invalid frame
	// among frames[:n] is dropped and counted in BadFrames. It kicks the
	// kernel when the kernel needs it.
	Transmit(frames []Frame) int
	// Complete reaps transmitted frames back to the free frames and returns
	// how many.
	Complete() int
	// PrepareWait is called before sleeping in poll(2): it pushes pending
	// transmissions to the kernel and returns the descriptor to poll for
	// POLLIN, and ready=true when frames are already waiting (do not
	// sleep). Waiter and Poller call it.
	PrepareWait() (fd int, ready bool)
	// Stats returns the port's counters. Safe from any goroutine.
	Stats() Stats
}

// Stats are a port's counters. Frame and byte counts are cumulative;
// FreeFrames is a gauge.
type Stats struct {
	RxFrames    uint64 // frames returned by Receive
	RxBytes     uint64
	TxFrames    uint64 // frames queued on the tx ring
	TxBytes     uint64
	TxCompleted uint64 // frames reaped from the completion ring

	FillRingEmpty uint64 // refills that left the fill ring empty: no free frame for the kernel, which drops
	TxRingFull    uint64 // frames Transmit refused because the tx ring was full
	TxKicks       uint64 // sendto(2) calls to make the kernel transmit
	RxKicks       uint64 // recvfrom(2) calls because the fill ring asked for a wakeup
	KickErrors    uint64 // kicks that failed with something else than "try again" (ENETDOWN, ENOBUFS, ...)
	BadFrames     uint64 // frames handed back that are not this port's, not lent out, or out of bounds: dropped
	BadDescs      uint64 // descriptors from the kernel that fail validation: dropped

	FreeFrames uint64 // frames in the free stack now

	Kernel KernelStats // the kernel's own counters (XDP_STATISTICS)
}

// KernelStats are the kernel's counters of an AF_XDP socket
// (getsockopt XDP_STATISTICS).
type KernelStats struct {
	RxDropped            uint64 // dropped for another reason than those below (e.g. frame too big)
	RxInvalidDescs       uint64 // invalid descriptors on the fill ring
	TxInvalidDescs       uint64 // invalid descriptors on the tx ring
	RxRingFull           uint64 // dropped because the rx ring was full (the reader is slow)
	RxFillRingEmptyDescs uint64 // times the fill ring was found empty
	TxRingEmptyDescs     uint64 // times the tx ring was found empty on a kick
}

// Counters are Stats kept by their owner goroutine and read from any other:
// each field is atomic, updated once per batch. Exported for xsktest.
type Counters struct {
	RxFrames, RxBytes, TxFrames, TxBytes, TxCompleted atomic.Uint64
	FillRingEmpty, TxRingFull, TxKicks, RxKicks       atomic.Uint64
	KickErrors, BadFrames, BadDescs, FreeFrames       atomic.Uint64
}

// Load reads the counters into a Stats (Kernel left zero).
func (c *Counters) Load() Stats {
	return Stats{
		RxFrames: c.RxFrames.Load(), RxBytes: c.RxBytes.Load(),
		TxFrames: c.TxFrames.Load(), TxBytes: c.TxBytes.Load(), TxCompleted: c.TxCompleted.Load(),
		FillRingEmpty: c.FillRingEmpty.Load(), TxRingFull: c.TxRingFull.Load(),
		TxKicks: c.TxKicks.Load(), RxKicks: c.RxKicks.Load(), KickErrors: c.KickErrors.Load(),
		BadFrames: c.BadFrames.Load(), BadDescs: c.BadDescs.Load(), FreeFrames: c.FreeFrames.Load(),
	}
}
