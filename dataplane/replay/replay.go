// Package replay is the anti-replay window of an inbound ESP SA (RFC 4303
// section 3.4.3), kept as a ring of 64-bit blocks in the style of RFC 6479
// so that sliding the window clears words instead of shifting bits. Unlike
// RFC 6479's, the ring has no spare block: a slide clears the bits of the
// numbers it passes, not whole blocks, so a window of 1024 (the default)
// takes 16 blocks (128 bytes), not 32.
//
// The check is split in two: Check before the ICV is verified (cheap, and
// the packet may still be a forgery) and Update only after it verified, so
// that a forged packet can never move the window.
//
// A Window is not safe for concurrent use: it belongs to the SA's owner
// goroutine. The zero value is a window of DefaultSize.
//
// For extended sequence numbers (ESN) the receiver sees only the low 32 bits
// on the wire; InferSeq reconstructs the 64-bit number as RFC 4303
// Appendix A2.1 describes.
package replay

import (
	"fmt"
	"math/bits"
)

// Window sizes, in sequence numbers.
const (
	DefaultSize = 1024
	MinSize     = 32
	MaxSize     = 1 << 16
)

// Verdict is the outcome of Check and Update.
type Verdict uint8

// The verdicts; only OK lets a packet through.
const (
	// OK: the sequence number was not seen and is inside or ahead of the window.
	OK Verdict = iota
	// Duplicate: the sequence number was already accepted.
	Duplicate
	// TooOld: the sequence number is left of the window (or zero).
	TooOld
)

var verdictNames = [...]string{OK: "ok", Duplicate: "duplicate", TooOld: "too-old"}

// String is the verdict's name in logs and counters ("too-old"), or
// "verdict(N)" for a value that is none of them.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Window is the anti-replay window of one inbound SA: the highest sequence
// number accepted and which of the Size numbers below it were seen.
type Window struct {
	top uint64 // highest accepted sequence number; 0 before the first
	// size is the window width W: top-W+1 .. top are tracked; mask is
	// len(blocks)-1, len(blocks) a power of two. 32 bits each keep the
	// Window, part of every inbound esp.SA, at 40 bytes.
	size uint32
	mask uint32
	// blocks hold bit (seq%64) of block (seq/64)&mask for the 64*len(blocks)
	// numbers up to top (at least W of them); every other bit is clear.
	blocks []uint64
}

// New returns a window of the given size (MinSize..MaxSize; 0 means DefaultSize).
func New(size int) (*Window, error) {
	w := new(Window)
	if err := w.Init(size); err != nil {
		return nil, err
	}
	return w, nil
}

// Init resets w to an empty window of the given size (0 means DefaultSize).
func (w *Window) Init(size int) error {
	if size == 0 {
		size = DefaultSize
	}
	if size < MinSize || size > MaxSize {
		return fmt.Errorf("replay: window size %d out of range %d..%d", size, MinSize, MaxSize)
	}
	*w = Window{size: uint32(size), mask: uint32(blocksFor(size) - 1)}
	return nil
}

// blocksFor is the blocks of a window of size numbers: a power of two (for
// the mask) of 64 numbers each, at least size of them.
func blocksFor(size int) uint64 {
	n := uint64(size+63) / 64
	return uint64(1) << bits.Len64(n-1)
}

// sized gives a zero Window its default size, without allocating.
func (w *Window) sized() {
	if w.size == 0 {
		_ = w.Init(DefaultSize)
	}
}

// lazyInit makes the bitmap, at the first number accepted: an SA that
// never carries a packet (most of a million, at any moment) holds none.
func (w *Window) lazyInit() {
	if w.blocks == nil {
		w.sized()
		w.blocks = make([]uint64, w.mask+1)
	}
}

// Reset empties the window, keeping its size, without allocating.
func (w *Window) Reset() {
	w.sized()
	w.top = 0
	clear(w.blocks)
}

// Size returns the window width in sequence numbers.
func (w *Window) Size() int {
	w.sized()
	return int(w.size)
}

// Top returns the highest sequence number accepted so far (0 if none).
func (w *Window) Top() uint64 { return w.top }

// Check reports whether seq would be accepted, without changing the window.
// It is small enough to be inlined into the per-packet path; it needs no
// lazy initialisation, because a zero Window (top 0) never reaches the
// bitmap: every seq is either ahead of top or 0.
func (w *Window) Check(seq uint64) Verdict {
	if seq > w.top {
		return OK
	}
	if seq == 0 || w.top-seq >= uint64(w.size) {
		return TooOld
	}
	if w.blocks[(seq>>6)&uint64(w.mask)]&(1<<(seq&63)) != 0 {
		return Duplicate
	}
	return OK
}

// Update records seq as received, sliding the window if seq is ahead of it.
// Call it only once the packet's ICV verified. It checks again and returns
// the same verdict as Check, so a caller that verified a batch before
// updating still catches a duplicate inside the batch.
func (w *Window) Update(seq uint64) Verdict {
	w.lazyInit()
	if v := w.Check(seq); v != OK {
		return v
	}
	if seq > w.top {
		w.slide(seq)
	}
	w.blocks[(seq>>6)&uint64(w.mask)] |= 1 << (seq & 63)
	return OK
}

// slide makes seq the top, clearing the bits of top+1..seq: they were
// those of the numbers 64*len(blocks) below, which fall out of the ring.
// The bits of the numbers between seq's and top's bits in a block both
// share (seq less than a ring ahead) stay: they are still in the ring.
func (w *Window) slide(seq uint64) {
	mask := uint64(w.mask)
	if seq-w.top >= (mask+1)*64 {
		clear(w.blocks)
		w.top = seq
		return
	}
	cur, next := w.top>>6, seq>>6
	above := ^uint64(0) << (w.top & 63) << 1 // bits after top's in its block
	upTo := ^uint64(0) >> (63 - seq&63)      // bits up to seq's in its block
	if cur == next {
		w.blocks[cur&mask] &^= above & upTo
	} else {
		w.blocks[cur&mask] &^= above
		for b := cur + 1; b < next; b++ {
			w.blocks[b&mask] = 0
		}
		w.blocks[next&mask] &^= upTo
	}
	w.top = seq
}

// InferSeq returns the 64-bit sequence number of a packet whose low 32
// bits are low, on an SA with extended sequence numbers, following RFC 4303
// Appendix A2.1: a number in the window's 2^32 span is placed in the
// current epoch, one that is below the window's bottom is taken to be in
// the next epoch (the window's top crossed 2^32 there). ok is false when the
// guess would fall before sequence number 1.
func (w *Window) InferSeq(low uint32) (seq uint64, ok bool) {
	w.sized()
	tl := uint32(w.top)
	th := uint32(w.top >> 32)
	wm1 := w.size - 1
	var hi uint32
	if tl >= wm1 {
		// Case A: the window lies within one epoch.
		if low >= tl-wm1 {
			hi = th
		} else {
			hi = th + 1
			if hi == 0 {
				return 0, false // past 2^64: the SA is exhausted
			}
		}
	} else {
		// Case B: the window straddles an epoch boundary.
		if low >= tl-wm1 { // wraps modulo 2^32 on purpose
			if th == 0 {
				return 0, false
			}
			hi = th - 1
		} else {
			hi = th
		}
	}
	return uint64(hi)<<32 | uint64(low), true
}

// State is a copy of a window, for moving an SA to another core.
type State struct {
	Size   int
	Top    uint64
	Bitmap []uint64
}

// State returns a copy of the window. It allocates; it is not for the
// per-packet path.
func (w *Window) State() State {
	w.sized()
	bm := make([]uint64, w.mask+1)
	copy(bm, w.blocks)
	return State{Size: int(w.size), Top: w.top, Bitmap: bm}
}

// Restore replaces the window with a copy of s, which must come from
// State of a window of the same size: of this build, or of one whose ring
// had another number of blocks (a power of two covering the window, as
// the spare block of RFC 6479 made it), whose bits are carried over.
func (w *Window) Restore(s State) error {
	if err := w.Init(s.Size); err != nil {
		return err
	}
	w.lazyInit()
	n := uint64(len(s.Bitmap))
	if n == uint64(len(w.blocks)) {
		copy(w.blocks, s.Bitmap)
		w.top = s.Top
		return nil
	}
	if n == 0 || n&(n-1) != 0 || n*64 < uint64(w.size) {
		return fmt.Errorf("replay: state has %d blocks, not a ring for a window of size %d", len(s.Bitmap), s.Size)
	}
	w.top = s.Top
	for seq := s.Top; seq > 0 && s.Top-seq < uint64(w.size); seq-- {
		if s.Bitmap[(seq>>6)&(n-1)]&(1<<(seq&63)) != 0 {
			w.blocks[(seq>>6)&uint64(w.mask)] |= 1 << (seq & 63)
		}
	}
	return nil
}
