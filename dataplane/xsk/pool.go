package xsk

import "unsafe"

// Chunk states: where each UMEM chunk is. Kept so that a frame handed back
// twice, or a frame of another port, is counted and dropped instead of
// corrupting the rings (two descriptors for one chunk).
const (
	chunkFree   uint8 = iota // in the free stack
	chunkKernel              // on the fill ring or the rx ring
	chunkUser                // lent to the caller
	chunkTx                  // on the tx ring or the completion ring
)

// pool is a UMEM's chunks: a free stack (O(1) pop and push, unlike asavie's
// GetDescs, which scans every frame) and a state per chunk. One goroutine
// owns it.
type pool struct {
	mem   []byte
	base  uintptr
	size  uint64 // chunk size, a power of two
	shift uint
	free  []uint64 // chunk addresses; cap = number of chunks
	state []uint8
	rxOff int // where the kernel puts received data in a chunk
}

func newPool(mem []byte, size int, rxOff int) pool {
	n := len(mem) / size
	p := pool{
		mem:   mem,
		base:  uintptr(unsafe.Pointer(unsafe.SliceData(mem))),
		size:  uint64(size),
		free:  make([]uint64, n),
		state: make([]uint8, n),
		rxOff: rxOff,
	}
	for p.shift = 0; 1<<p.shift < size; p.shift++ {
	}
	// Pop from the end: hand out low addresses first.
	for i := range p.free {
		p.free[i] = uint64(n-1-i) << p.shift
	}
	return p
}

func (p *pool) frames() int { return len(p.state) }

// frame makes the Frame for the chunk at addr.
func (p *pool) frame(chunk uint64, off, n int) Frame {
	end := chunk + p.size
	return Frame{Buf: p.mem[chunk:end:end], Off: off, Len: n}
}

// chunkOf returns the chunk address of f, or ok=false if f's Buf is not a
// whole chunk of this UMEM or its packet bounds are outside the chunk.
func (p *pool) chunkOf(f *Frame) (uint64, bool) {
	if uint64(len(f.Buf)) != p.size || f.Off < 0 || f.Len < 0 || uint64(f.Off)+uint64(f.Len) > p.size {
		return 0, false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(f.Buf)))
	if a < p.base {
		return 0, false
	}
	off := uint64(a - p.base)
	if off >= uint64(len(p.mem)) || off&(p.size-1) != 0 {
		return 0, false
	}
	return off, true
}

// get pops a free chunk and marks it as going to state to.
func (p *pool) get(to uint8) (uint64, bool) {
	n := len(p.free)
	if n == 0 {
		return 0, false
	}
	a := p.free[n-1]
	p.free = p.free[:n-1]
	p.state[a>>p.shift] = to
	return a, true
}

func (p *pool) put(chunk uint64) {
	p.state[chunk>>p.shift] = chunkFree
	p.free = append(p.free, chunk) // never grows: at most one entry per chunk
}

// take moves a chunk from want to to, reporting false if it was not in
// state want.
func (p *pool) take(chunk uint64, want, to uint8) bool {
	i := chunk >> p.shift
	if i >= uint64(len(p.state)) || p.state[i] != want {
		return false
	}
	p.state[i] = to
	return true
}
