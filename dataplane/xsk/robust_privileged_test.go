package xsk

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"golang.org/x/sys/unix"
)

// rxRig is a rig with the redirect program and one socket on queue 0.
func rxRig(t *testing.T, cfg Config) (*rig, *Socket) {
	r := newRig(t, lab.LinkOptions{Queues: 1})
	prog := newXDPProgram(t, 1, false)
	prog.attach(t, r, false)
	s := r.open(t, 0, cfg)
	prog.register(t, 0, s)
	return r, s
}

// send sends n datagrams from c, pacing so that a veth does not drop.
func send(c *net.UDPConn, n int, tag string) {
	for i := 0; i < n; i++ {
		fmt.Fprintf(c, "spugate %s %05d", tag, i)
		if i%32 == 31 {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// frameTotal checks that no chunk was lost: free + on the fill ring + held
// by the test + in flight on tx must be the whole UMEM.
func frameTotal(t *testing.T, s *Socket, held int) {
	t.Helper()
	s.Complete()
	free, fill, tx := len(s.pool.free), int(s.fill.pending()), int(s.tx.pending())
	// Frames the kernel took from the fill ring but did not put on the rx
	// ring yet cannot be seen from here; let them land first.
	rx := int(s.rx.avail(s.rx.size))
	if free+fill+held+tx+rx != s.pool.frames() {
		t.Errorf("frames: %d free + %d fill + %d held + %d tx + %d rx != %d", free, fill, held, tx, rx, s.pool.frames())
	}
}

func TestPrivilegedCloseWhilePeerSends(t *testing.T) {
	r, s := rxRig(t, Config{RingSize: 64})
	c := r.peerSockets(t, 1)[0]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the peer keeps sending, bounded in time and packets
		defer wg.Done()
		for i := 0; i < 200000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			fmt.Fprintf(c, "spugate flood %d", i)
		}
	}()
	var got atomic.Int64
	go func() { // the owner receives for a while, then closes its socket
		defer wg.Done()
		frames := make([]Frame, BatchSize)
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			n := s.Receive(frames)
			got.Add(int64(n))
			s.Release(frames[:n])
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		// Everything after Close is a no-op, not a crash.
		if n := s.Receive(frames); n != 0 {
			t.Errorf("Receive after Close returned %d", n)
		}
		s.Release(frames[:1])
		if n := s.Alloc(frames); n != 0 {
			t.Errorf("Alloc after Close returned %d", n)
		}
		if n := s.Transmit(frames[:1]); n != 0 {
			t.Errorf("Transmit after Close returned %d", n)
		}
		s.Complete()
		if fd, ready := s.PrepareWait(); fd != -1 || ready {
			t.Errorf("PrepareWait after Close: %d %v", fd, ready)
		}
		if ok, err := NewWaiter([]Port{s}).Wait(10 * time.Millisecond); ok || err != nil {
			t.Errorf("Wait after Close: %v %v", ok, err)
		}
		time.Sleep(200 * time.Millisecond) // the peer sends into a closed socket's queue
		close(stop)
	}()
	wg.Wait()
	st := s.Stats()
	t.Logf("received %d before Close; stats after Close %+v", got.Load(), st)
	if got.Load() == 0 {
		t.Errorf("received nothing before Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The queue is free again.
	s2 := r.open(t, 0, Config{RingSize: 64})
	s2.Close()
}

func TestPrivilegedFillRingEmpty(t *testing.T) {
	// As many frames as the fill ring: holding every received frame leaves
	// the kernel nothing to receive into.
	r, s := rxRig(t, Config{RingSize: 64, NumFrames: 64})
	c := r.peerSockets(t, 1)[0]
	send(c, 200, "fill")
	time.Sleep(50 * time.Millisecond)
	held := make([]Frame, 0, 64)
	frames := make([]Frame, BatchSize)
	for i := 0; i < 10; i++ {
		n := s.Receive(frames)
		held = append(held, frames[:n]...)
	}
	st := s.Stats()
	t.Logf("holding %d frames; fill ring asks for a wakeup: %v; stats %+v", len(held), s.fill.needWakeup(), st)
	if len(held) != 64 {
		t.Errorf("holding %d frames, want all 64", len(held))
	}
	if st.FillRingEmpty == 0 {
		t.Errorf("FillRingEmpty not counted")
	}
	if st.Kernel.RxFillRingEmptyDescs == 0 && st.Kernel.RxDropped == 0 {
		t.Errorf("kernel counted no drop for the empty fill ring")
	}
	frameTotal(t, s, len(held))
	// Releasing them gets reception going again.
	s.Release(held)
	send(c, 10, "again")
	total := &countdown{n: 10}
	if res := receiveUntil(s, total, time.Now().Add(2*time.Second)); len(res.got) != 10 {
		t.Errorf("after Release: received %d of 10", len(res.got))
	}
	frameTotal(t, s, 0)
}

func TestPrivilegedRxRingFull(t *testing.T) {
	// More frames than the rx ring, and a reader that does not read.
	r, s := rxRig(t, Config{RingSize: 64, NumFrames: 256})
	c := r.peerSockets(t, 1)[0]
	send(c, 64, "rxfull")
	time.Sleep(50 * time.Millisecond)
	// The rx ring is full and the fill ring empty; give the kernel frames
	// without reading the rx ring: it now has somewhere to receive but
	// nowhere to put the descriptors.
	s.Release(nil)
	if p := s.fill.pending(); p != 64 {
		t.Errorf("fill ring holds %d after a refill, want 64", p)
	}
	send(c, 100, "rxfull")
	time.Sleep(50 * time.Millisecond)
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.Kernel.RxRingFull == 0 {
		t.Errorf("kernel counted no rx ring full")
	}
	// The fill ring is full too (256 frames, 64 slots): the rest wait in the
	// free stack, nothing is lost.
	frames := make([]Frame, BatchSize)
	n := s.Receive(frames)
	s.Release(frames[:n])
	frameTotal(t, s, 0)
}

func TestPrivilegedTxRingFull(t *testing.T) {
	r, s := rxRig(t, Config{RingSize: 64, NumFrames: 256})
	peer := r.peerListen(t, 9001)
	go readAll(peer, 1000, time.Second)
	fill := func(fs []Frame, tag string) {
		for i := range fs {
			var pkt [128]byte
			l := buildUDP(pkt[:], r.xmac, r.pmac, r.xip, r.pip, 9002, 9001, []byte(fmt.Sprintf("spugate %s %d", tag, i)))
			fs[i].SetPacket(fs[i].Off, pkt[:l])
		}
	}
	frames := make([]Frame, 128)
	if n := s.Alloc(frames); n != 128 {
		t.Fatalf("Alloc gave %d of 128", n)
	}
	fill(frames, "big")
	// One batch larger than the tx ring: the ring takes 64.
	n := s.Transmit(frames)
	if n != 64 {
		t.Errorf("Transmit of 128 on a 64-slot ring took %d", n)
	}
	if st := s.Stats(); st.TxRingFull != 64 {
		t.Errorf("TxRingFull %d, want 64", st.TxRingFull)
	}
	// The kernel drained the ring during the kick: the rest goes now.
	if m := s.Transmit(frames[n:]); m != 64 {
		t.Errorf("second Transmit took %d of 64", m)
	}

	// With the link down, kicks fail (ENETDOWN), the ring fills and stays
	// full: Transmit returns less, counts it, and nothing panics.
	if _, err := r.xh.Exec("ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	held := frames[:0]
	for i := 0; i < 3; i++ {
		k := s.Alloc(frames[len(held):min(len(held)+64, cap(frames))])
		held = frames[:len(held)+k]
	}
	fill(held, "down")
	queued := 0
	for try := 0; try < 3 && queued < len(held); try++ {
		queued += s.Transmit(held[queued:])
	}
	st := s.Stats()
	t.Logf("link down: queued %d of %d; stats %+v", queued, len(held), st)
	if queued > 64 {
		t.Errorf("queued %d with the link down: more than the ring", queued)
	}
	if st.KickErrors == 0 {
		t.Errorf("no kick error counted with the link down")
	}
	if st.TxRingFull <= 64 {
		t.Errorf("ring full not counted with the link down")
	}
	s.Release(held[queued:])
	frameTotal(t, s, 0)
	if _, err := r.xh.Exec("ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	// Up again: the next kick drains the ring and completions come back.
	for end := time.Now().Add(3 * time.Second); s.tx.pending() > 0 && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		s.PrepareWait()
		s.Complete()
	}
	if p := s.tx.pending(); p != 0 {
		t.Errorf("%d frames still on the tx ring after the link came back", p)
	}
	frameTotal(t, s, 0)
}

func TestPrivilegedBadFrames(t *testing.T) {
	_, s := rxRig(t, Config{RingSize: 64, NumFrames: 128})
	other := make([]byte, 2048)
	frames := make([]Frame, 4)
	if s.Alloc(frames) != 4 {
		t.Fatal("Alloc")
	}
	bad := []Frame{
		{Buf: other, Off: 256, Len: 60},                                       // not of this UMEM
		{Buf: frames[0].Buf[1:], Off: 0, Len: 60},                             // resliced
		{Buf: frames[1].Buf, Off: 2000, Len: 100},                             // past the chunk
		{Buf: frames[2].Buf, Off: -1, Len: 10},                                // negative
		{Buf: nil},                                                            // zero
		{Buf: s.pool.mem[s.pool.size*127 : s.pool.size*128], Off: 0, Len: 60}, // ours, but not lent out
	}
	if n := s.Transmit(bad); n != len(bad) {
		t.Errorf("Transmit consumed %d of %d bad frames", n, len(bad))
	}
	s.Release(bad)
	frames[3].Len = 0
	s.Transmit(frames[3:4]) // empty packet: dropped, chunk back to the pool
	s.Release(frames[:3])
	s.Release(frames[:3]) // twice
	st := s.Stats()
	t.Logf("stats %+v", st)
	if want := uint64(2*len(bad) + 1 + 3); st.BadFrames != want {
		t.Errorf("BadFrames %d, want %d", st.BadFrames, want)
	}
	if st.TxFrames != 0 {
		t.Errorf("%d bad frames reached the tx ring", st.TxFrames)
	}
	frameTotal(t, s, 0)
}

// TestPrivilegedNoAllocs proves the batch path allocates nothing on a real
// socket with traffic waiting.
func TestPrivilegedNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	r, s := rxRig(t, Config{RingSize: 2048})
	c := r.peerSockets(t, 1)[0]
	send(c, 1500, "allocs")
	time.Sleep(50 * time.Millisecond)
	frames := make([]Frame, 16)
	out := make([]Frame, 16)
	w := NewWaiter([]Port{s})
	var pkt [128]byte
	l := buildUDP(pkt[:], r.xmac, r.pmac, r.xip, r.pip, 9002, 9001, []byte("spugate allocs"))
	received := 0
	allocs := testing.AllocsPerRun(50, func() {
		n := s.Receive(frames)
		received += n
		s.Release(frames[:n])
		k := s.Alloc(out)
		for i := range out[:k] {
			out[i].SetPacket(out[i].Off, pkt[:l])
		}
		q := s.Transmit(out[:k])
		s.Release(out[q:k])
		s.Complete()
		w.Wait(0)
		_ = s.Stats()
	})
	t.Logf("received %d frames during the runs; stats %+v", received, s.Stats())
	if received == 0 {
		t.Errorf("nothing received: the runs did not exercise Receive")
	}
	if allocs != 0 {
		t.Errorf("%v allocations per batch, want 0", allocs)
	}
}

// TestPrivilegedAdaptiveIdle runs an adaptive loop over an idle socket for
// 2 s and measures the CPU time of its thread: sleeping in poll(2) must
// cost next to nothing. Then one datagram must wake it well before its
// MaxSleep.
func TestPrivilegedAdaptiveIdle(t *testing.T) {
	r, s := rxRig(t, Config{RingSize: 64})
	c := r.peerSockets(t, 1)[0]
	type result struct {
		cpu, wall    time.Duration
		sleeps, wake uint64
		woke         time.Duration
		err          error
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		p := Poller{Mode: Adaptive, Waiter: NewWaiter([]Port{s}), MaxSleep: 500 * time.Millisecond}
		frames := make([]Frame, BatchSize)
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &before)
		start := time.Now()
		var res result
		for time.Since(start) < 2*time.Second {
			s.Complete()
			n := s.Receive(frames)
			s.Release(frames[:n])
			if _, err := p.Idle(n > 0); err != nil {
				res.err = err
				break
			}
			if time.Since(start) > 1900*time.Millisecond {
				p.MaxSleep = 100 * time.Millisecond // end on time
			}
		}
		unix.Getrusage(unix.RUSAGE_THREAD, &after)
		res.wall = time.Since(start)
		res.cpu = time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		res.sleeps, _ = p.Sleeps()
		// Now one datagram: the sleep must end on it, not on MaxSleep. (The
		// peer's IPv6 chatter may end a sleep too: look for the datagram.)
		p.MaxSleep = 5 * time.Second
		var sent atomic.Int64
		go func() {
			time.Sleep(300 * time.Millisecond)
			sent.Store(time.Now().UnixNano())
			fmt.Fprintf(c, "spugate wake")
		}()
		res.woke = -1
		for t0 := time.Now(); time.Since(t0) < 4*time.Second && res.woke < 0; {
			n := s.Receive(frames)
			for i := range frames[:n] {
				if _, _, payload, err := parseUDP(frames[i].Packet()); err == nil && string(payload) == "spugate wake" {
					res.woke = time.Duration(time.Now().UnixNano() - sent.Load())
				}
			}
			s.Release(frames[:n])
			p.Idle(n > 0)
		}
		_, res.wake = p.Sleeps()
		resc <- res
	}()
	res := <-resc
	if res.err != nil {
		t.Fatal(res.err)
	}
	share := float64(res.cpu) / float64(res.wall)
	t.Logf("idle adaptive loop: %v CPU in %v (%.2f%% of a core), %d sleeps; woke on a datagram after %v",
		res.cpu, res.wall, 100*share, res.sleeps, res.woke)
	if share > 0.05 {
		t.Errorf("idle adaptive loop used %.1f%% of a core, want under 5%%", 100*share)
	}
	if res.wake == 0 || res.woke < 0 || res.woke > 3*time.Second {
		t.Errorf("the datagram did not end the sleep (woke after %v, %d wakeups)", res.woke, res.wake)
	}
}
