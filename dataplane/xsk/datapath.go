package xsk

import (
	"golang.org/x/sys/unix"
)

// The data path. Every method runs on the owner goroutine, takes a batch,
// touches the shared rings once per batch, and allocates nothing.

// Receive implements Port.
func (s *Socket) Receive(frames []Frame) int {
	if s.dead || len(frames) == 0 {
		return 0
	}
	n := s.rx.avail(uint32(min(len(frames), int(s.rx.size))))
	got, bytes := 0, 0
	for i := uint32(0); i < n; i++ {
		d := s.rx.slots[(s.rx.local+i)&s.rx.mask]
		chunk := d.Addr &^ (s.pool.size - 1)
		off := d.Addr - chunk
		if d.Addr >= uint64(len(s.pool.mem)) || off+uint64(d.Len) > s.pool.size || !s.pool.take(chunk, chunkKernel, chunkUser) {
			// Not a chunk we gave the kernel: drop the descriptor. A
			// chunk of ours with bad bounds goes back to the free stack.
			s.ctr.BadDescs.Add(1)
			if d.Addr < uint64(len(s.pool.mem)) && s.pool.take(chunk, chunkKernel, chunkFree) {
				s.pool.put(chunk)
			}
			continue
		}
		frames[got] = s.pool.frame(chunk, int(off), int(d.Len))
		bytes += int(d.Len)
		got++
	}
	if n > 0 {
		s.rx.release(n)
	}
	s.refill()
	if got > 0 {
		s.ctr.RxFrames.Add(uint64(got))
		s.ctr.RxBytes.Add(uint64(bytes))
	} else if s.needWakeup && s.fill.needWakeup() {
		// A zero-copy driver stopped for want of fill entries and waits
		// for a syscall to restart (copy mode never sets this flag).
		s.ctr.RxKicks.Add(1)
		unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
	return got
}

// refill moves free chunks onto the fill ring and counts a fill ring left
// empty (the kernel will drop what arrives until frames come back).
func (s *Socket) refill() {
	n := s.fill.free(uint32(len(s.pool.free)))
	for i := uint32(0); i < n; i++ {
		a, _ := s.pool.get(chunkKernel)
		s.fill.slots[(s.fill.local+i)&s.fill.mask] = a
	}
	if n > 0 {
		s.fill.submit(n)
		s.ctr.FreeFrames.Store(uint64(len(s.pool.free)))
	} else if s.fill.pending() == 0 {
		s.ctr.FillRingEmpty.Add(1)
	}
}

// Release implements Port.
func (s *Socket) Release(frames []Frame) {
	if s.dead {
		return
	}
	bad := 0
	for i := range frames {
		c, ok := s.pool.chunkOf(&frames[i])
		if !ok || !s.pool.take(c, chunkUser, chunkFree) {
			bad++
			continue
		}
		s.pool.put(c)
	}
	if bad > 0 {
		s.ctr.BadFrames.Add(uint64(bad))
	}
	s.refill()
	s.ctr.FreeFrames.Store(uint64(len(s.pool.free)))
}

// Alloc implements Port.
func (s *Socket) Alloc(frames []Frame) int {
	if s.dead {
		return 0
	}
	if len(s.pool.free) < len(frames) {
		s.Complete()
	}
	n := min(len(frames), len(s.pool.free))
	for i := 0; i < n; i++ {
		a, _ := s.pool.get(chunkUser)
		frames[i] = s.pool.frame(a, s.pool.rxOff, 0)
	}
	s.ctr.FreeFrames.Store(uint64(len(s.pool.free)))
	return n
}

// Transmit implements Port.
func (s *Socket) Transmit(frames []Frame) int {
	if s.dead || len(frames) == 0 {
		return 0
	}
	room := s.tx.free(uint32(min(len(frames), int(s.tx.size))))
	if int(room) < len(frames) && s.tx.pending() > 0 {
		// The kernel has not taken what we queued before: reap and kick,
		// then look again.
		s.Complete()
		s.kick()
		room = s.tx.free(uint32(min(len(frames), int(s.tx.size))))
	}
	i, q, bad, bytes := 0, uint32(0), 0, 0
	for ; i < len(frames) && q < room; i++ {
		f := &frames[i]
		c, ok := s.pool.chunkOf(f)
		if !ok || f.Len == 0 || !s.pool.take(c, chunkUser, chunkTx) {
			bad++
			if ok && s.pool.take(c, chunkUser, chunkFree) {
				s.pool.put(c) // ours, but an empty packet
			}
			continue
		}
		s.tx.slots[(s.tx.local+q)&s.tx.mask] = unix.XDPDesc{Addr: c + uint64(f.Off), Len: uint32(f.Len)}
		bytes += f.Len
		q++
	}
	if q > 0 {
		s.tx.submit(q)
		s.ctr.TxFrames.Add(uint64(q))
		s.ctr.TxBytes.Add(uint64(bytes))
	}
	if bad > 0 {
		s.ctr.BadFrames.Add(uint64(bad))
	}
	if i < len(frames) {
		s.ctr.TxRingFull.Add(uint64(len(frames) - i))
	}
	if q > 0 && (!s.needWakeup || s.tx.needWakeup()) {
		s.kick()
	}
	return i
}

// kick asks the kernel to transmit what the tx ring holds. In copy mode
// the sendto itself transmits, up to a budget per call, and returns EAGAIN
// when the budget or the completion ring ran out: reap and go again while
// frames remain. Errors are counted, never raised (asavie v0.3.3 panics on
// errno values it does not expect, such as ENETDOWN or ENOBUFS).
func (s *Socket) kick() {
	for try := 0; try < s.kickTries; try++ {
		s.ctr.TxKicks.Add(1)
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return
		case unix.EINTR:
		case unix.EAGAIN:
			s.Complete()
			if s.tx.pending() == 0 {
				return
			}
		case unix.EBUSY:
			// The driver or another sendto is busy with this queue: the
			// frames stay on the ring for the next kick.
			return
		default:
			s.ctr.KickErrors.Add(1)
			return
		}
	}
}

// Complete implements Port.
func (s *Socket) Complete() int {
	if s.dead {
		return 0
	}
	n := s.comp.avail(s.comp.size)
	bad := 0
	for i := uint32(0); i < n; i++ {
		a := s.comp.slots[(s.comp.local+i)&s.comp.mask]
		chunk := a &^ (s.pool.size - 1)
		if a >= uint64(len(s.pool.mem)) || !s.pool.take(chunk, chunkTx, chunkFree) {
			bad++
			continue
		}
		s.pool.put(chunk)
	}
	if n > 0 {
		s.comp.release(n)
		s.ctr.TxCompleted.Add(uint64(n) - uint64(bad))
		s.ctr.FreeFrames.Store(uint64(len(s.pool.free)))
	}
	if bad > 0 {
		s.ctr.BadDescs.Add(uint64(bad))
	}
	return int(n) - bad
}

// PrepareWait implements Port.
func (s *Socket) PrepareWait() (int, bool) {
	if s.dead {
		return -1, false
	}
	if s.tx.pending() > 0 {
		s.kick()
	}
	return s.fd, s.rx.avail(1) > 0
}
