// Package xsktest provides in-memory fakes of xsk.Port, so that the SPU
// loop and everything above it can be tested without privilege, network
// namespaces or an XDP program.
//
// A Port has a UMEM of ordinary memory with the same layout as a real
// AF_XDP socket in copy mode: chunks of FrameSize bytes, received packets at
// Headroom + XDP_PACKET_HEADROOM (256) into their chunk, and the steering
// program's metadata just before them. It models the four rings with their
// limits: a fill ring (a packet arriving while it is empty is dropped and
// counted, as the kernel does), an rx ring (full: dropped and counted), a tx
// ring (full: Transmit returns fewer) and a completion queue. Invalid frames
// are counted in BadFrames exactly like the real port.
//
// NewPair connects two ports like the two ends of a cable: what one
// transmits the other receives, after its steering function (SetSteer) has
// written the metadata or passed the packet to the "kernel". Inject makes a
// packet arrive from outside. Each port also has an eventfd that is
// readable while its rx ring is not empty, so xsk.Waiter and xsk.Poller
// work over fakes as over real sockets.
//
// The two ends of a pair may be driven by two goroutines: a pair shares one
// mutex, taken once per batch call. As with the real port, each port's
// data-path methods belong to one goroutine.
package xsktest

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/spugate/spugate/dataplane/xsk"
	"golang.org/x/sys/unix"
)

// XDPPacketHeadroom is the kernel's XDP_PACKET_HEADROOM, the room it leaves
// before received data in a chunk.
const XDPPacketHeadroom = 256

// Config shapes a fake port. The zero value is usable.
type Config struct {
	FrameSize int // default 2048
	NumFrames int // default 2*RingSize
	RingSize  int // slots of each ring (default 64)
	Headroom  int // UMEM headroom on top of XDPPacketHeadroom
	// MetaLen is the size of the metadata area the steering function gets
	// before each received packet (0: no steering metadata).
	MetaLen int
}

func (c *Config) setDefaults() {
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.RingSize == 0 {
		c.RingSize = 64
	}
	if c.NumFrames == 0 {
		c.NumFrames = 2 * c.RingSize
	}
}

// Chunk states, as in the real port.
const (
	chunkFree uint8 = iota
	chunkKernel
	chunkUser
	chunkTx
)

type desc struct{ chunk, off, n int }

// queue is a fixed-capacity FIFO.
type queue[T any] struct {
	buf        []T
	head, size int
}

func newQueue[T any](n int) queue[T] { return queue[T]{buf: make([]T, n)} }
func (q *queue[T]) full() bool       { return q.size == len(q.buf) }
func (q *queue[T]) push(v T) {
	q.buf[(q.head+q.size)%len(q.buf)] = v
	q.size++
}
func (q *queue[T]) pop() T {
	v := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return v
}

// link is what the two ends of a pair share.
type link struct{ mu sync.Mutex }

// Port is an in-memory xsk.Port.
type Port struct {
	cfg   Config
	rxOff int
	mem   []byte
	base  uintptr
	free  []int // chunk indexes
	state []uint8

	link *link
	peer *Port
	fill queue[int]
	rx   queue[desc]
	tx   queue[desc]
	comp queue[int]
	efd  int

	steer   func(pkt, meta []byte) bool
	sink    func(pkt []byte)
	stalled bool
	passed  uint64
	kernel  xsk.KernelStats
	ctr     xsk.Counters
	closed  bool
}

var _ xsk.Port = (*Port)(nil)

// NewPort returns a port with no peer: what it transmits goes to the sink
// (SetSink), or nowhere.
func NewPort(cfg Config) (*Port, error) {
	return newPort(cfg, &link{})
}

// NewPair returns two ports connected to each other.
func NewPair(cfg Config) (a, b *Port, err error) {
	l := &link{}
	if a, err = newPort(cfg, l); err != nil {
		return nil, nil, err
	}
	if b, err = newPort(cfg, l); err != nil {
		a.Close()
		return nil, nil, err
	}
	a.peer, b.peer = b, a
	return a, b, nil
}

func newPort(cfg Config, l *link) (*Port, error) {
	cfg.setDefaults()
	if cfg.Headroom < 0 || cfg.MetaLen < 0 || cfg.MetaLen > XDPPacketHeadroom || cfg.Headroom+XDPPacketHeadroom >= cfg.FrameSize || cfg.NumFrames < 1 || cfg.RingSize < 1 {
		return nil, fmt.Errorf("xsktest: bad config %+v", cfg)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("xsktest: eventfd: %w", err)
	}
	p := &Port{
		cfg:   cfg,
		rxOff: cfg.Headroom + XDPPacketHeadroom,
		mem:   make([]byte, cfg.NumFrames*cfg.FrameSize),
		free:  make([]int, 0, cfg.NumFrames),
		state: make([]uint8, cfg.NumFrames),
		link:  l,
		fill:  newQueue[int](cfg.RingSize),
		rx:    newQueue[desc](cfg.RingSize),
		tx:    newQueue[desc](cfg.RingSize),
		comp:  newQueue[int](cfg.NumFrames),
		efd:   efd,
	}
	p.base = uintptr(unsafe.Pointer(unsafe.SliceData(p.mem)))
	for i := cfg.NumFrames - 1; i >= 0; i-- {
		p.free = append(p.free, i)
	}
	p.refill()
	return p, nil
}

// Close releases the eventfd. The port must not be used afterwards.
func (p *Port) Close() error {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return unix.Close(p.efd)
}

// RxOffset is where received packets start in their chunk.
func (p *Port) RxOffset() int { return p.rxOff }

// SetSteer installs the steering function run on every packet arriving at
// p (from its peer or Inject), the fake's XDP program: it gets the packet
// and the MetaLen bytes before it to write, and returns false to pass the
// packet to the kernel (it is then counted in Passed and not received).
func (p *Port) SetSteer(fn func(pkt, meta []byte) bool) {
	p.link.mu.Lock()
	p.steer = fn
	p.link.mu.Unlock()
}

// SetSink installs a function that gets a copy of every packet p
// transmits (on a peerless port, the only way to see them). It runs under
// the pair's lock: it must not call the ports.
func (p *Port) SetSink(fn func(pkt []byte)) {
	p.link.mu.Lock()
	p.sink = fn
	p.link.mu.Unlock()
}

// Stall stops (true) or restarts (false) p's transmitter: while stalled,
// transmitted frames stay on the tx ring, which fills up.
func (p *Port) Stall(on bool) {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	p.stalled = on
	if !on {
		p.drainTx()
	}
}

// Passed is how many arriving packets the steering function passed to the
// kernel.
func (p *Port) Passed() uint64 {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	return p.passed
}

// Inject makes pkt arrive at p as if from the wire, and reports whether it
// reached the rx ring (false: passed by the steering function, or dropped
// and counted for a full rx ring, an empty fill ring or a packet larger
// than a frame). Safe from any goroutine.
func (p *Port) Inject(pkt []byte) bool {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	return p.arrive(pkt)
}

// arrive is the fake kernel's receive path: fill ring, copy, metadata,
// rx ring, wakeup. Under the lock.
func (p *Port) arrive(pkt []byte) bool {
	if p.closed {
		return false
	}
	if len(pkt) > p.cfg.FrameSize-p.rxOff {
		p.kernel.RxDropped++
		return false
	}
	if p.fill.size == 0 {
		p.kernel.RxFillRingEmptyDescs++
		p.kernel.RxDropped++
		return false
	}
	if p.rx.full() {
		p.kernel.RxRingFull++
		return false
	}
	c := p.fill.buf[p.fill.head]
	chunk := p.mem[c*p.cfg.FrameSize : (c+1)*p.cfg.FrameSize]
	clear(chunk[p.rxOff-p.cfg.MetaLen : p.rxOff])
	copy(chunk[p.rxOff:], pkt)
	if p.steer != nil && !p.steer(chunk[p.rxOff:p.rxOff+len(pkt)], chunk[p.rxOff-p.cfg.MetaLen:p.rxOff]) {
		p.passed++
		return false
	}
	p.fill.pop()
	if p.rx.size == 0 {
		var one = [8]byte{1}
		unix.Write(p.efd, one[:])
	}
	p.rx.push(desc{c, p.rxOff, len(pkt)})
	return true
}

// Receive implements xsk.Port.
func (p *Port) Receive(frames []xsk.Frame) int {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return 0
	}
	n, bytes := 0, 0
	for n < len(frames) && p.rx.size > 0 {
		d := p.rx.pop()
		p.state[d.chunk] = chunkUser
		frames[n] = p.frame(d.chunk, d.off, d.n)
		bytes += d.n
		n++
	}
	if p.rx.size == 0 {
		var b [8]byte
		unix.Read(p.efd, b[:])
	}
	p.refill()
	if n > 0 {
		p.ctr.RxFrames.Add(uint64(n))
		p.ctr.RxBytes.Add(uint64(bytes))
	}
	return n
}

func (p *Port) frame(c, off, n int) xsk.Frame {
	lo, hi := c*p.cfg.FrameSize, (c+1)*p.cfg.FrameSize
	return xsk.Frame{Buf: p.mem[lo:hi:hi], Off: off, Len: n}
}

func (p *Port) refill() {
	for !p.fill.full() && len(p.free) > 0 {
		c := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.state[c] = chunkKernel
		p.fill.push(c)
	}
	if p.fill.size == 0 {
		p.ctr.FillRingEmpty.Add(1)
	}
	p.ctr.FreeFrames.Store(uint64(len(p.free)))
}

// chunkOf returns f's chunk index, or -1 if f is not a valid frame of p.
func (p *Port) chunkOf(f *xsk.Frame) int {
	fs := p.cfg.FrameSize
	if len(f.Buf) != fs || f.Off < 0 || f.Len < 0 || f.Off+f.Len > fs {
		return -1
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(f.Buf)))
	if a < p.base || a-p.base >= uintptr(len(p.mem)) || (a-p.base)%uintptr(fs) != 0 {
		return -1
	}
	return int((a - p.base) / uintptr(fs))
}

// Release implements xsk.Port.
func (p *Port) Release(frames []xsk.Frame) {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return
	}
	for i := range frames {
		c := p.chunkOf(&frames[i])
		if c < 0 || p.state[c] != chunkUser {
			p.ctr.BadFrames.Add(1)
			continue
		}
		p.state[c] = chunkFree
		p.free = append(p.free, c)
	}
	p.refill()
}

// Alloc implements xsk.Port.
func (p *Port) Alloc(frames []xsk.Frame) int {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return 0
	}
	if len(p.free) < len(frames) {
		p.complete()
	}
	n := 0
	for n < len(frames) && len(p.free) > 0 {
		c := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.state[c] = chunkUser
		frames[n] = p.frame(c, p.rxOff, 0)
		n++
	}
	p.ctr.FreeFrames.Store(uint64(len(p.free)))
	return n
}

// Transmit implements xsk.Port.
func (p *Port) Transmit(frames []xsk.Frame) int {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return 0
	}
	i, q, bytes := 0, 0, 0
	for ; i < len(frames) && !p.tx.full(); i++ {
		f := &frames[i]
		c := p.chunkOf(f)
		if c < 0 || f.Len == 0 || p.state[c] != chunkUser {
			p.ctr.BadFrames.Add(1)
			if c >= 0 && p.state[c] == chunkUser {
				p.state[c] = chunkFree
				p.free = append(p.free, c)
			}
			continue
		}
		p.state[c] = chunkTx
		p.tx.push(desc{c, f.Off, f.Len})
		bytes += f.Len
		q++
	}
	if q > 0 {
		p.ctr.TxFrames.Add(uint64(q))
		p.ctr.TxBytes.Add(uint64(bytes))
		p.ctr.TxKicks.Add(1)
	}
	if i < len(frames) {
		p.ctr.TxRingFull.Add(uint64(len(frames) - i))
	}
	p.drainTx()
	return i
}

// drainTx is the fake kernel's transmit path: deliver to the peer (or the
// sink) and complete. Under the lock.
func (p *Port) drainTx() {
	for !p.stalled && p.tx.size > 0 {
		d := p.tx.pop()
		pkt := p.mem[d.chunk*p.cfg.FrameSize+d.off : d.chunk*p.cfg.FrameSize+d.off+d.n]
		if p.sink != nil {
			p.sink(pkt)
		}
		if p.peer != nil {
			p.peer.arrive(pkt)
		}
		p.comp.push(d.chunk)
	}
}

// Complete implements xsk.Port.
func (p *Port) Complete() int {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return 0
	}
	return p.complete()
}

func (p *Port) complete() int {
	n := 0
	for p.comp.size > 0 {
		c := p.comp.pop()
		p.state[c] = chunkFree
		p.free = append(p.free, c)
		n++
	}
	if n > 0 {
		p.ctr.TxCompleted.Add(uint64(n))
		p.ctr.FreeFrames.Store(uint64(len(p.free)))
	}
	return n
}

// PrepareWait implements xsk.Port: the eventfd is readable while the rx
// ring holds frames.
func (p *Port) PrepareWait() (int, bool) {
	p.link.mu.Lock()
	defer p.link.mu.Unlock()
	if p.closed {
		return -1, false
	}
	return p.efd, p.rx.size > 0
}

// Stats implements xsk.Port.
func (p *Port) Stats() xsk.Stats {
	st := p.ctr.Load()
	p.link.mu.Lock()
	st.Kernel = p.kernel
	p.link.mu.Unlock()
	return st
}
