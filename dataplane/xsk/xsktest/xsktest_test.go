package xsktest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/xsk"
)

func newPair(t *testing.T, cfg Config) (*Port, *Port) {
	t.Helper()
	a, b, err := NewPair(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// send allocates, fills and transmits one packet per payload.
func send(t *testing.T, p xsk.Port, payloads ...[]byte) {
	t.Helper()
	frames := make([]xsk.Frame, len(payloads))
	if n := p.Alloc(frames); n != len(frames) {
		t.Fatalf("Alloc %d of %d", n, len(frames))
	}
	for i, pl := range payloads {
		if !frames[i].SetPacket(frames[i].Off, pl) {
			t.Fatal("SetPacket")
		}
	}
	if n := p.Transmit(frames); n != len(frames) {
		t.Fatalf("Transmit %d of %d", n, len(frames))
	}
}

func TestPairDeliversWithLayoutAndMetadata(t *testing.T) {
	a, b := newPair(t, Config{Headroom: 32, MetaLen: 8})
	b.SetSteer(func(pkt, meta []byte) bool {
		if bytes.HasPrefix(pkt, []byte("ike")) {
			return false // to the kernel
		}
		binary.LittleEndian.PutUint32(meta, 0xc0ffee)
		binary.LittleEndian.PutUint32(meta[4:], uint32(len(pkt)))
		return true
	})
	send(t, a, []byte("esp one"), []byte("ike init"), []byte("esp three!"))
	frames := make([]xsk.Frame, xsk.BatchSize)
	n := b.Receive(frames)
	if n != 2 {
		t.Fatalf("received %d, want 2 (one passed to the kernel)", n)
	}
	if b.Passed() != 1 {
		t.Errorf("Passed %d", b.Passed())
	}
	for i, want := range []string{"esp one", "esp three!"} {
		f := &frames[i]
		if string(f.Packet()) != want || f.Off != 32+256 || len(f.Buf) != 2048 {
			t.Errorf("frame %d: %q at %d in %d bytes", i, f.Packet(), f.Off, len(f.Buf))
		}
		m := f.Meta(8)
		if binary.LittleEndian.Uint32(m) != 0xc0ffee || int(binary.LittleEndian.Uint32(m[4:])) != len(want) {
			t.Errorf("frame %d: metadata % x", i, m)
		}
	}
	// Hairpin back, grown at the front.
	for i := range frames[:n] {
		copy(frames[i].Prepend(4), "ENC:")
	}
	if q := b.Transmit(frames[:n]); q != n {
		t.Fatalf("hairpin Transmit %d", q)
	}
	got := a.Receive(frames)
	if got != 2 || string(frames[0].Packet()) != "ENC:esp one" {
		t.Fatalf("a received %d: %q", got, frames[0].Packet())
	}
	a.Release(frames[:got])
	a.Complete()
	b.Complete()
	for _, p := range []*Port{a, b} {
		if st := p.Stats(); st.BadFrames != 0 || int(st.FreeFrames)+p.fill.size != p.cfg.NumFrames {
			t.Errorf("frames lost or bad: %+v, fill %d", st, p.fill.size)
		}
	}
}

func TestInjectDropsAndCounts(t *testing.T) {
	p, err := NewPort(Config{RingSize: 4, NumFrames: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The rx ring holds 4; the fill ring had 4 frames: the fifth finds
	// the fill ring empty.
	for i := 0; i < 6; i++ {
		p.Inject([]byte{byte(i)})
	}
	st := p.Stats()
	if st.Kernel.RxFillRingEmptyDescs != 2 || st.Kernel.RxDropped != 2 {
		t.Errorf("kernel stats %+v", st.Kernel)
	}
	frames := make([]xsk.Frame, 8)
	n := p.Receive(frames)
	if n != 4 || p.Stats().FillRingEmpty == 0 {
		t.Errorf("received %d, FillRingEmpty %d", n, p.Stats().FillRingEmpty)
	}
	p.Release(frames[:n])
	// Now a rx ring full: 4 in, none read, 4 more frames on the fill ring.
	q, _ := NewPort(Config{RingSize: 4, NumFrames: 8})
	defer q.Close()
	for i := 0; i < 4; i++ {
		q.Inject([]byte{1})
	}
	q.Release(nil) // refill without reading
	q.Inject([]byte{2})
	if st := q.Stats(); st.Kernel.RxRingFull != 1 {
		t.Errorf("RxRingFull %d", st.Kernel.RxRingFull)
	}
	if q.Inject(make([]byte, 2048)) {
		t.Errorf("a packet larger than a frame was received")
	}
}

func TestStallFillsTxRing(t *testing.T) {
	a, b := newPair(t, Config{RingSize: 8, NumFrames: 32})
	a.Stall(true)
	frames := make([]xsk.Frame, 12)
	a.Alloc(frames)
	for i := range frames {
		frames[i].SetPacket(frames[i].Off, []byte{byte(i)})
	}
	n := a.Transmit(frames)
	if n != 8 || a.Stats().TxRingFull != 4 {
		t.Fatalf("Transmit %d, TxRingFull %d: want 8 and 4", n, a.Stats().TxRingFull)
	}
	a.Stall(false)
	in := make([]xsk.Frame, 16)
	got := b.Receive(in)
	b.Release(in[:got])
	if m := a.Transmit(frames[n:]); m != 4 {
		t.Fatalf("after unstall: %d of 4", m)
	}
	got += b.Receive(in)
	if got != 12 {
		t.Errorf("b received %d of 12", got)
	}
}

func TestBadFrames(t *testing.T) {
	a, b := newPair(t, Config{})
	fa := make([]xsk.Frame, 2)
	a.Alloc(fa)
	fb := make([]xsk.Frame, 1)
	b.Alloc(fb)
	bad := []xsk.Frame{fb[0], {Buf: make([]byte, 2048)}, {Buf: fa[0].Buf, Off: 2040, Len: 9}, {Buf: fa[0].Buf[8:]}}
	if n := a.Transmit(bad); n != len(bad) {
		t.Errorf("Transmit consumed %d of %d", n, len(bad))
	}
	a.Release(bad)
	a.Release(fa[1:])
	a.Release(fa[1:]) // twice
	if st := a.Stats(); st.BadFrames != 2*4+1 || st.TxFrames != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestWaiterAndPollerOverFakes(t *testing.T) {
	a, b := newPair(t, Config{})
	w := xsk.NewWaiter([]xsk.Port{b})
	if ok, err := w.Wait(20 * time.Millisecond); ok || err != nil {
		t.Fatalf("Wait on an idle port: %v %v", ok, err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f := make([]xsk.Frame, 1)
		a.Alloc(f)
		f[0].SetPacket(f[0].Off, []byte("wake"))
		a.Transmit(f)
	}()
	start := time.Now()
	ok, err := w.Wait(5 * time.Second)
	if !ok || err != nil || time.Since(start) > 4*time.Second {
		t.Fatalf("Wait: %v %v after %v", ok, err, time.Since(start))
	}
	frames := make([]xsk.Frame, 4)
	if n := b.Receive(frames); n != 1 {
		t.Fatalf("received %d", n)
	}
	b.Release(frames[:1])
	// Drained: the eventfd is no longer readable.
	if ok, _ := w.Wait(10 * time.Millisecond); ok {
		t.Errorf("Wait reports ready on a drained port")
	}
	// An adaptive poller sleeps on an idle fake and wakes on a packet.
	p := xsk.Poller{Mode: xsk.Adaptive, Waiter: w, Spin: time.Microsecond, MaxSleep: 5 * time.Second}
	go func() {
		time.Sleep(30 * time.Millisecond)
		a.Inject([]byte("x"))
		b.Inject([]byte("y"))
	}()
	for i := 0; i < 1000; i++ {
		n := b.Receive(frames)
		b.Release(frames[:n])
		if n > 0 {
			break
		}
		if _, err := p.Idle(false); err != nil {
			t.Fatal(err)
		}
	}
	if sleeps, wakeups := p.Sleeps(); sleeps == 0 || wakeups == 0 {
		t.Errorf("poller: %d sleeps, %d wakeups", sleeps, wakeups)
	}
	busy := xsk.Poller{Mode: xsk.Busy, Waiter: w}
	if slept, _ := busy.Idle(false); slept {
		t.Errorf("busy poller slept")
	}
}

func TestPingPongTwoGoroutines(t *testing.T) {
	a, b := newPair(t, Config{RingSize: 32})
	const total = 5000
	var wg sync.WaitGroup
	echo := func(p *Port, start bool, res *int) {
		defer wg.Done()
		frames := make([]xsk.Frame, xsk.BatchSize)
		w := xsk.NewWaiter([]xsk.Port{p})
		if start {
			n := p.Alloc(frames[:16])
			for i := range frames[:n] {
				frames[i].SetPacket(frames[i].Off, []byte(fmt.Sprint(i)))
			}
			p.Transmit(frames[:n])
		}
		for end := time.Now().Add(10 * time.Second); *res < total && time.Now().Before(end); {
			p.Complete()
			n := p.Receive(frames)
			if n == 0 {
				w.Wait(time.Millisecond)
				continue
			}
			*res += n
			q := p.Transmit(frames[:n])
			p.Release(frames[q:n])
		}
	}
	var ra, rb int
	wg.Add(2)
	go echo(a, true, &ra)
	go echo(b, false, &rb)
	wg.Wait()
	if ra < total || rb < total {
		t.Errorf("ping-pong: %d and %d of %d", ra, rb, total)
	}
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	a, b := newPair(t, Config{MetaLen: 4})
	b.SetSteer(func(pkt, meta []byte) bool { meta[0] = 1; return true })
	frames := make([]xsk.Frame, 16)
	in := make([]xsk.Frame, 16)
	w := xsk.NewWaiter([]xsk.Port{a, b})
	pkt := []byte("spugate")
	allocs := testing.AllocsPerRun(100, func() {
		n := a.Alloc(frames)
		for i := range frames[:n] {
			frames[i].SetPacket(frames[i].Off, pkt)
		}
		a.Transmit(frames[:n])
		m := b.Receive(in)
		b.Release(in[:m])
		a.Complete()
		w.Wait(0)
		_ = a.Stats()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
}
