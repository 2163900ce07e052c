// Package replay is the anti-replay window of an inbound ESP SA (RFC 4303
// section 3.4.3), kept as a ring of 64-bit blocks in the style of RFC 6479
// so that sliding the window clears whole words instead of shifting bits.
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
	top    uint64   // highest accepted sequence number; 0 before the first
	size   uint64   // window width W: top-W+1 .. top are tracked
	mask   uint64   // len(blocks)-1; len(blocks) is a power of two
	blocks []uint64 // bit (seq%64) of block (seq/64)&mask
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
	// The span top-W+1..top touches at most ceil(W/64)+1 blocks; one more
	// block than that lets Update clear ahead without touching live bits.
	n := uint64(1) << bits.Len64(uint64((size+63)/64))
	if n < 2 {
		n = 2
	}
	*w = Window{size: uint64(size), mask: n - 1, blocks: make([]uint64, n)}
	return nil
}

func (w *Window) lazyInit() {
	if w.blocks == nil {
		_ = w.Init(DefaultSize)
	}
}

// Reset empties the window, keeping its size, without allocating.
func (w *Window) Reset() {
	w.lazyInit()
	w.top = 0
	clear(w.blocks)
}

// Size returns the window width in sequence numbers.
func (w *Window) Size() int {
	w.lazyInit()
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
	if seq == 0 || w.top-seq >= w.size {
		return TooOld
	}
	if w.blocks[(seq>>6)&w.mask]&(1<<(seq&63)) != 0 {
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
		cur, next := w.top>>6, seq>>6
		if d := next - cur; d > w.mask {
			clear(w.blocks)
		} else {
			for b := cur + 1; b <= next; b++ {
				w.blocks[b&w.mask] = 0
			}
		}
		w.top = seq
	}
	w.blocks[(seq>>6)&w.mask] |= 1 << (seq & 63)
	return OK
}

// InferSeq returns the 64-bit sequence number of a packet whose low 32
// bits are low, on an SA with extended sequence numbers, following RFC 4303
// Appendix A2.1: a number in the window's 2^32 span is placed in the
// current epoch, one that is below the window's bottom is taken to be in
// the next epoch (the window's top crossed 2^32 there). ok is false when the
// guess would fall before sequence number 1.
func (w *Window) InferSeq(low uint32) (seq uint64, ok bool) {
	w.lazyInit()
	tl := uint32(w.top)
	th := uint32(w.top >> 32)
	wm1 := uint32(w.size - 1)
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
	w.lazyInit()
	return State{Size: int(w.size), Top: w.top, Bitmap: append([]uint64(nil), w.blocks...)}
}

// Restore replaces the window with a copy of s, which must come from
// State of a window of the same size.
func (w *Window) Restore(s State) error {
	if err := w.Init(s.Size); err != nil {
		return err
	}
	if len(s.Bitmap) != len(w.blocks) {
		return fmt.Errorf("replay: state has %d blocks, a window of size %d has %d", len(s.Bitmap), s.Size, len(w.blocks))
	}
	copy(w.blocks, s.Bitmap)
	w.top = s.Top
	return nil
}
