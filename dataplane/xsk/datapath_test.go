package xsk

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Socket over ordinary memory, with the test playing the kernel's side of
// the rings: the data path's logic, tested without privilege.

func fakeRing(size uint32, slot uintptr) ([]byte, unix.XDPRingOffset) {
	off := unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	mem := make([]byte, ringBytes(off, size, slot))
	return mem, off
}

func newMemSocket(t testing.TB, frames, ringSize int) *Socket {
	t.Helper()
	const fs = 2048
	umem := make([]byte, frames*fs)
	s := &Socket{fd: -1, needWakeup: true, cfg: Config{FrameSize: fs, RingSize: ringSize, NumFrames: frames}, kickTries: 2}
	s.pool = newPool(umem, fs, unix.XDP_PACKET_HEADROOM)
	size := uint32(ringSize)
	m, off := fakeRing(size, 8)
	s.fill.init(m, off, size, true)
	m, off = fakeRing(size, 8)
	s.comp.init(m, off, size, false)
	m, off = fakeRing(size, unsafe.Sizeof(unix.XDPDesc{}))
	s.rx.init(m, off, size, false)
	m, off = fakeRing(size, unsafe.Sizeof(unix.XDPDesc{}))
	s.tx.init(m, off, size, true)
	s.refill()
	return s
}

// kernel is the other side of a memSocket's rings.
type kernel struct {
	s           *Socket
	fillCons    uint32
	rxProd      uint32
	txCons      uint32
	compProd    uint32
	dropped     int
	transmitted [][]byte
}

// receive takes a fill entry per packet, copies the packet at the receive
// offset and puts a descriptor on the rx ring, as copy mode does.
func (k *kernel) receive(pkts ...[]byte) {
	s := k.s
	for _, p := range pkts {
		if atomic.LoadUint32(s.fill.producer) == k.fillCons || k.rxProd-atomic.LoadUint32(s.rx.consumer) == s.rx.size {
			k.dropped++
			continue
		}
		a := s.fill.slots[k.fillCons&s.fill.mask]
		k.fillCons++
		atomic.StoreUint32(s.fill.consumer, k.fillCons)
		copy(s.pool.mem[a+256:], p)
		s.rx.slots[k.rxProd&s.rx.mask] = unix.XDPDesc{Addr: a + 256, Len: uint32(len(p))}
		k.rxProd++
		atomic.StoreUint32(s.rx.producer, k.rxProd)
	}
}

// transmit drains the tx ring onto the completion ring.
func (k *kernel) transmit() {
	s := k.s
	for k.txCons != atomic.LoadUint32(s.tx.producer) && k.compProd-atomic.LoadUint32(s.comp.consumer) < s.comp.size {
		d := s.tx.slots[k.txCons&s.tx.mask]
		k.transmitted = append(k.transmitted, append([]byte(nil), s.pool.mem[d.Addr:d.Addr+uint64(d.Len)]...))
		k.txCons++
		atomic.StoreUint32(s.tx.consumer, k.txCons)
		s.comp.slots[k.compProd&s.comp.mask] = d.Addr
		k.compProd++
		atomic.StoreUint32(s.comp.producer, k.compProd)
	}
}

func pkt(i int) []byte {
	b := make([]byte, 60)
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

func TestMemSocketReceiveReleaseConserves(t *testing.T) {
	s := newMemSocket(t, 64, 32)
	k := &kernel{s: s}
	if s.fill.pending() != 32 || len(s.pool.free) != 32 {
		t.Fatalf("after open: fill %d free %d, want 32 and 32", s.fill.pending(), len(s.pool.free))
	}
	frames := make([]Frame, 16)
	for round := 0; round < 10; round++ {
		for i := 0; i < 20; i++ {
			k.receive(pkt(round*100 + i))
		}
		got := 0
		for {
			n := s.Receive(frames)
			if n == 0 {
				break
			}
			for i := range frames[:n] {
				f := &frames[i]
				if f.Off != 256 || f.Len != 60 || len(f.Buf) != 2048 {
					t.Fatalf("frame off %d len %d buf %d", f.Off, f.Len, len(f.Buf))
				}
				if v := binary.BigEndian.Uint32(f.Packet()); v != uint32(round*100+got) {
					t.Fatalf("packet %d, want %d", v, round*100+got)
				}
				got++
			}
			s.Release(frames[:n])
		}
		if got != 20 {
			t.Fatalf("round %d: got %d of 20", round, got)
		}
	}
	if k.dropped != 0 {
		t.Errorf("kernel dropped %d", k.dropped)
	}
	st := s.Stats()
	if st.RxFrames != 200 || st.BadDescs != 0 || st.BadFrames != 0 {
		t.Errorf("stats %+v", st)
	}
	if free, fill := len(s.pool.free), int(s.fill.pending()); free+fill != 64 {
		t.Errorf("%d free + %d fill != 64", free, fill)
	}
}

func TestMemSocketTransmitHairpinAndFull(t *testing.T) {
	s := newMemSocket(t, 64, 8)
	k := &kernel{s: s}
	k.receive(pkt(1), pkt(2))
	frames := make([]Frame, 16)
	n := s.Receive(frames)
	if n != 2 {
		t.Fatalf("received %d", n)
	}
	// Hairpin: prepend 4 bytes and send the received frames.
	for i := range frames[:n] {
		copy(frames[i].Prepend(4), "ESP!")
	}
	if q := s.Transmit(frames[:n]); q != 2 {
		t.Fatalf("Transmit took %d of 2", q)
	}
	k.transmit()
	if c := s.Complete(); c != 2 {
		t.Fatalf("Complete reaped %d", c)
	}
	if string(k.transmitted[0][:4]) != "ESP!" || binary.BigEndian.Uint32(k.transmitted[0][4:]) != 1 {
		t.Errorf("sent % x", k.transmitted[0][:8])
	}
	// More than the tx ring (8 slots) in one call: 8 taken, 8 counted.
	if a := s.Alloc(frames); a != 16 {
		t.Fatalf("Alloc %d of 16", a)
	}
	for i := range frames {
		frames[i].SetPacket(frames[i].Off, pkt(i))
	}
	q := s.Transmit(frames)
	if q != 8 || s.Stats().TxRingFull != 8 {
		t.Fatalf("Transmit took %d, TxRingFull %d; want 8 and 8", q, s.Stats().TxRingFull)
	}
	// No kernel progress: the ring stays full; the kick fails on fd -1 and
	// is counted, nothing panics.
	if q2 := s.Transmit(frames[q:]); q2 != 0 {
		t.Fatalf("Transmit on a full ring took %d", q2)
	}
	if s.Stats().KickErrors == 0 {
		t.Errorf("failed kick not counted")
	}
	k.transmit()
	s.Complete()
	if q2 := s.Transmit(frames[q:]); q2 != 8 {
		t.Fatalf("after the kernel drained: took %d of 8", q2)
	}
	k.transmit()
	s.Complete()
	if len(s.pool.free)+int(s.fill.pending()) != 64 {
		t.Errorf("frames lost: %d free + %d fill", len(s.pool.free), s.fill.pending())
	}
}

func TestMemSocketNeedWakeupKicks(t *testing.T) {
	s := newMemSocket(t, 32, 8)
	frames := make([]Frame, 2)
	s.Alloc(frames)
	for i := range frames {
		frames[i].SetPacket(0, pkt(i))
	}
	s.Transmit(frames[:1])
	if s.Stats().TxKicks != 0 {
		t.Errorf("kicked without the kernel asking")
	}
	atomic.StoreUint32(s.tx.flags, unix.XDP_RING_NEED_WAKEUP)
	s.Transmit(frames[1:])
	if s.Stats().TxKicks == 0 {
		t.Errorf("no kick although the tx ring needs a wakeup")
	}
	s.needWakeup = false
	atomic.StoreUint32(s.tx.flags, 0)
	before := s.Stats().TxKicks
	(&kernel{s: s, txCons: 0}).transmit()
	s.Complete()
	s.Alloc(frames[:1])
	frames[0].SetPacket(0, pkt(9))
	s.Transmit(frames[:1])
	if s.Stats().TxKicks == before {
		t.Errorf("without need_wakeup every Transmit must kick")
	}
	// An empty rx ring with the fill ring asking for a wakeup: a recvfrom.
	s.needWakeup = true
	atomic.StoreUint32(s.fill.flags, unix.XDP_RING_NEED_WAKEUP)
	s.Receive(frames)
	if s.Stats().RxKicks != 1 {
		t.Errorf("RxKicks %d, want 1", s.Stats().RxKicks)
	}
}

func TestMemSocketNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	s := newMemSocket(t, 256, 64)
	k := &kernel{s: s}
	frames := make([]Frame, BatchSize)
	p := pkt(7)
	k.transmitted = make([][]byte, 0, 1)
	allocs := testing.AllocsPerRun(100, func() {
		// The fake kernel side allocates nothing either: receive writes
		// into the UMEM; transmit's copies are dropped below.
		k.receive(p, p, p, p)
		n := s.Receive(frames)
		q := s.Transmit(frames[:n])
		s.Release(frames[q:n])
		k.txCons = atomic.LoadUint32(s.tx.producer)
		for k.compProd != k.txCons {
			s.comp.slots[k.compProd&s.comp.mask] = s.tx.slots[k.compProd&s.tx.mask].Addr
			k.compProd++
		}
		atomic.StoreUint32(s.tx.consumer, k.txCons)
		atomic.StoreUint32(s.comp.producer, k.compProd)
		s.Complete()
		a := s.Alloc(frames[:8])
		s.Release(frames[:a])
		_ = s.Stats()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
	if s.Stats().RxFrames == 0 || s.Stats().TxCompleted == 0 {
		t.Errorf("the runs did nothing: %+v", s.Stats())
	}
}

// FuzzRxDescs puts arbitrary descriptors on the rx and completion rings:
// the port must count and drop what it did not lend, never panic, never
// hand out a frame outside its chunk, and never lose a chunk.
func FuzzRxDescs(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(make([]byte, 120))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newMemSocket(t, 16, 8)
		frames := make([]Frame, 8)
		var prod uint32
		for len(data) >= 12 {
			addr := binary.LittleEndian.Uint64(data)
			l := binary.LittleEndian.Uint32(data[8:])
			data = data[12:]
			if l&1 == 0 {
				s.rx.slots[prod&s.rx.mask] = unix.XDPDesc{Addr: addr, Len: l >> 1}
				prod++
				atomic.StoreUint32(s.rx.producer, prod)
			} else {
				s.comp.slots[0] = addr
				atomic.StoreUint32(s.comp.producer, atomic.LoadUint32(s.comp.producer)+1)
				s.Complete()
			}
			n := s.Receive(frames)
			for i := range frames[:n] {
				fr := &frames[i]
				if fr.Off < 0 || fr.Len < 0 || fr.Off+fr.Len > len(fr.Buf) || len(fr.Buf) != 2048 {
					t.Fatalf("frame out of its chunk: off %d len %d", fr.Off, fr.Len)
				}
				_ = fr.Packet()
			}
			s.Release(frames[:n])
			if prod-atomic.LoadUint32(s.rx.consumer) >= s.rx.size {
				break
			}
		}
		// Every chunk is somewhere we know.
		counts := [4]int{}
		for _, st := range s.pool.state {
			counts[st]++
		}
		if counts[chunkFree] != len(s.pool.free) || counts[chunkUser] != 0 {
			t.Fatalf("chunk states %v, free stack %d", counts, len(s.pool.free))
		}
	})
}
