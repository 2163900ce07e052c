package xsk

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BindMode chooses between the kernel's copy and zero-copy AF_XDP modes.
// Its String (generated: the line comments are the names) is "auto",
// "copy" or "zero-copy".
type BindMode uint8

//go:generate go tool stringer -type=BindMode -linecomment

const (
	// Auto tries zero-copy and falls back to copy mode.
	Auto BindMode = iota // auto
	// Copy forces copy mode (XDP_COPY), which every driver with XDP (and
	// generic XDP) supports.
	Copy // copy
	// ZeroCopy forces zero-copy mode (XDP_ZEROCOPY); Open fails with
	// ErrZeroCopy on drivers without it, veth among them.
	ZeroCopy // zero-copy
)

// ErrZeroCopy is returned (wrapped) by Open when ZeroCopy was asked for and
// the driver refused it.
var ErrZeroCopy = errors.New("zero-copy mode not supported by the driver")

// Config shapes a socket. The zero value is usable.
type Config struct {
	Mode BindMode
	// NoNeedWakeup binds without XDP_USE_NEED_WAKEUP: the port then kicks
	// the kernel on every Transmit instead of only when the kernel asks.
	NoNeedWakeup bool
	// FrameSize is the UMEM chunk size: 2048 (default) or 4096.
	FrameSize int
	// RingSize is the number of slots of each of the four rings, a power of
	// two (default 2048).
	RingSize int
	// NumFrames is the number of UMEM chunks (default 2*RingSize: a full
	// fill ring plus as many for transmission).
	NumFrames int
	// Headroom is the UMEM headroom the kernel leaves before received data
	// on top of XDP_PACKET_HEADROOM (256); default 0.
	Headroom int
	// BindTimeout bounds the retries of a bind that fails with EBUSY: the
	// kernel releases a closed socket's binding asynchronously, so
	// reopening a queue just closed may need a moment (default 2 s).
	BindTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.RingSize == 0 {
		c.RingSize = 2048
	}
	if c.NumFrames == 0 {
		c.NumFrames = 2 * c.RingSize
	}
	if c.BindTimeout == 0 {
		c.BindTimeout = 2 * time.Second
	}
	switch {
	case c.FrameSize != 2048 && c.FrameSize != 4096:
		return fmt.Errorf("frame size %d: want 2048 or 4096", c.FrameSize)
	case c.RingSize < 8 || c.RingSize&(c.RingSize-1) != 0 || c.RingSize > 1<<20:
		return fmt.Errorf("ring size %d: want a power of two from 8 to 2^20", c.RingSize)
	case c.NumFrames < 1 || c.NumFrames > 1<<22:
		return fmt.Errorf("%d frames: want 1 to 2^22", c.NumFrames)
	case c.Headroom < 0 || c.Headroom+unix.XDP_PACKET_HEADROOM+64 > c.FrameSize:
		return fmt.Errorf("headroom %d: leaves no room for a packet in a %d-byte frame", c.Headroom, c.FrameSize)
	case c.Mode > ZeroCopy:
		return fmt.Errorf("bind mode %d unknown", c.Mode)
	}
	return nil
}

// Socket is one AF_XDP socket bound to one (interface, rx queue), with its
// own UMEM. It implements Port. Its data-path methods belong to one
// goroutine; Stats and Info may be called from any.
type Socket struct {
	fd         int
	ifname     string
	ifindex    int
	queue      int
	zeroCopy   bool
	needWakeup bool
	cfg        Config

	pool pool
	fill addrRing
	comp addrRing
	rx   descRing
	tx   descRing
	maps [4][]byte // the rings' mappings, for Close

	txBudget  int // frames one sendto transmits in copy mode
	kickTries int // sendto calls one kick may make

	ctr Counters

	mu     sync.Mutex // orders Stats' getsockopt against Close
	closed bool       // under mu
	dead   bool       // set by Close for the owner's data-path methods
	final  KernelStats
}

var _ Port = (*Socket)(nil)

// Info describes what a socket got from the kernel.
type Info struct {
	Ifname     string
	Ifindex    int
	Queue      int
	ZeroCopy   bool // false: copy mode
	NeedWakeup bool // bound with XDP_USE_NEED_WAKEUP
	FrameSize  int
	NumFrames  int
	RingSize   int
	RxOffset   int // offset of received data in a chunk: Headroom + XDP_PACKET_HEADROOM
	TxBudget   int // frames one sendto transmits in copy mode (32, or RingSize with XDP_MAX_TX_SKB_BUDGET)
}

// Open creates an AF_XDP socket with its own UMEM and binds it to queue of
// the interface called ifname, in the calling thread's network namespace
// (lock the thread if it matters). The socket then needs registering in
// the XSKMAP of the interface's XDP program (FD) to receive anything.
func Open(ifname string, queue int, cfg Config) (*Socket, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("xsk: %s queue %d: %w", ifname, queue, err)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xsk: %s queue %d: %w", ifname, queue, err)
	}
	if queue < 0 {
		return nil, fmt.Errorf("xsk: %s queue %d: negative queue", ifname, queue)
	}
	var flags uint16
	if !cfg.NoNeedWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	switch cfg.Mode {
	case Copy:
		return openWakeup(ifi, queue, cfg, flags|unix.XDP_COPY)
	case ZeroCopy:
		return openWakeup(ifi, queue, cfg, flags|unix.XDP_ZEROCOPY)
	}
	s, err := openWakeup(ifi, queue, cfg, flags|unix.XDP_ZEROCOPY)
	if errors.Is(err, ErrZeroCopy) {
		return openWakeup(ifi, queue, cfg, flags|unix.XDP_COPY)
	}
	return s, err
}

// openWakeup is open, again without XDP_USE_NEED_WAKEUP where the kernel
// refuses the flag (before Linux 5.4): the port then kicks the kernel on
// every Transmit, and Info.NeedWakeup says so.
func openWakeup(ifi *net.Interface, queue int, cfg Config, flags uint16) (*Socket, error) {
	s, err := open(ifi, queue, cfg, flags)
	if err != nil && flags&unix.XDP_USE_NEED_WAKEUP != 0 && errors.Is(err, unix.EINVAL) && !errors.Is(err, ErrZeroCopy) {
		return open(ifi, queue, cfg, flags&^unix.XDP_USE_NEED_WAKEUP)
	}
	return s, err
}

func open(ifi *net.Interface, queue int, cfg Config, flags uint16) (_ *Socket, err error) {
	s := &Socket{fd: -1, ifname: ifi.Name, ifindex: ifi.Index, queue: queue, cfg: cfg}
	fail := func(what string, e error) error {
		s.unmap()
		return fmt.Errorf("xsk: %s queue %d: %s: %w", ifi.Name, queue, what, e)
	}
	s.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fail("socket", err)
	}
	umem, err := unix.Mmap(-1, 0, cfg.NumFrames*cfg.FrameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fail("mmap umem", err)
	}
	s.pool = newPool(umem, cfg.FrameSize, cfg.Headroom+unix.XDP_PACKET_HEADROOM)
	reg := unix.XDPUmemReg{
		Addr:     uint64(s.pool.base),
		Len:      uint64(len(umem)),
		Size:     uint32(cfg.FrameSize),
		Headroom: uint32(cfg.Headroom),
	}
	if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fail("register umem", err)
	}
	for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, o, cfg.RingSize); err != nil {
			return nil, fail(fmt.Sprintf("ring size (option %d)", o), err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fail("mmap offsets", err)
	}
	size := uint32(cfg.RingSize)
	rings := []struct {
		pgoff int64
		off   unix.XDPRingOffset
		slot  uintptr
	}{
		{unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, 8},
		{unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, 8},
		{unix.XDP_PGOFF_RX_RING, off.Rx, unsafe.Sizeof(unix.XDPDesc{})},
		{unix.XDP_PGOFF_TX_RING, off.Tx, unsafe.Sizeof(unix.XDPDesc{})},
	}
	for i, r := range rings {
		m, err := unix.Mmap(s.fd, r.pgoff, ringBytes(r.off, size, r.slot), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fail(fmt.Sprintf("mmap ring at %#x", r.pgoff), err)
		}
		s.maps[i] = m
	}
	s.fill.init(s.maps[0], off.Fr, size, true)
	s.comp.init(s.maps[1], off.Cr, size, false)
	s.rx.init(s.maps[2], off.Rx, size, false)
	s.tx.init(s.maps[3], off.Tx, size, true)

	// Copy mode sends at most a budget of frames per sendto (32 by
	// default); raise it to the ring size where the kernel allows
	// (XDP_MAX_TX_SKB_BUDGET, Linux 6.17), else kick more often.
	budget := 32
	if unix.SetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, cfg.RingSize) == nil {
		budget = cfg.RingSize
	}
	s.txBudget, s.kickTries = budget, cfg.RingSize/budget+2

	sa := unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifi.Index), QueueID: uint32(queue)}
	deadline := time.Now().Add(cfg.BindTimeout)
	for {
		err = unix.Bind(s.fd, &sa)
		if err != unix.EBUSY || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		if flags&unix.XDP_ZEROCOPY != 0 && (err == unix.EOPNOTSUPP || err == unix.EINVAL || err == unix.EPROTONOSUPPORT) {
			err = fmt.Errorf("%w (%v)", ErrZeroCopy, err)
		}
		if err == unix.EBUSY {
			err = fmt.Errorf("%w: another AF_XDP socket or zero-copy user holds the queue", err)
		}
		return nil, fail("bind", err)
	}
	var opts uint32
	if err := getsockopt(s.fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
		return nil, fail("options", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	s.needWakeup = flags&unix.XDP_USE_NEED_WAKEUP != 0
	s.refill()
	s.ctr.FreeFrames.Store(uint64(len(s.pool.free)))
	return s, nil
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// FD is the socket's descriptor, to register in an XSKMAP and to poll.
func (s *Socket) FD() int { return s.fd }

// Info says what the socket got: mode, sizes and the receive offset.
func (s *Socket) Info() Info {
	return Info{
		Ifname: s.ifname, Ifindex: s.ifindex, Queue: s.queue,
		ZeroCopy: s.zeroCopy, NeedWakeup: s.needWakeup,
		FrameSize: s.cfg.FrameSize, NumFrames: s.cfg.NumFrames, RingSize: s.cfg.RingSize,
		RxOffset: s.pool.rxOff, TxBudget: s.txBudget,
	}
}

// Stats returns the counters. Safe from any goroutine, also after Close
// (the kernel's counters are then those read at Close).
func (s *Socket) Stats() Stats {
	st := s.ctr.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		st.Kernel = s.final
		return st
	}
	st.Kernel, _ = s.kernelStats()
	return st
}

func (s *Socket) kernelStats() (KernelStats, error) {
	var x unix.XDPStatistics
	// The bare errno: Stats ignores it and must not allocate.
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&x), unsafe.Sizeof(x)); err != nil {
		return KernelStats{}, err
	}
	return KernelStats{
		RxDropped: x.Rx_dropped, RxInvalidDescs: x.Rx_invalid_descs, TxInvalidDescs: x.Tx_invalid_descs,
		RxRingFull: x.Rx_ring_full, RxFillRingEmptyDescs: x.Rx_fill_ring_empty_descs, TxRingEmptyDescs: x.Tx_ring_empty_descs,
	}, nil
}

// Close unbinds the socket and frees its UMEM. Call it from the owner
// goroutine, or once the owner has stopped: frames still lent out point into
// the UMEM and must not be touched afterwards. Data-path methods called
// after Close do nothing. Closing twice is a no-op.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.final, _ = s.kernelStats()
	s.closed, s.dead = true, true
	return s.unmap()
}

// unmap closes the descriptor and unmaps everything. The rings' mappings
// hold references to the socket: the kernel releases the binding only once
// all are gone (asavie v0.3.3 never unmaps them, so a queue it used stays
// busy until the process exits).
func (s *Socket) unmap() error {
	var errs []error
	for i, m := range s.maps {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, fmt.Errorf("munmap ring %d: %w", i, err))
			}
			s.maps[i] = nil
		}
	}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		s.fd = -1
	}
	if s.pool.mem != nil {
		if err := unix.Munmap(s.pool.mem); err != nil {
			errs = append(errs, fmt.Errorf("munmap umem: %w", err))
		}
		s.pool.mem = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xsk: %s queue %d: close: %w", s.ifname, s.queue, err)
	}
	return nil
}
