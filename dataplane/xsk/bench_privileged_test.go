package xsk

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"golang.org/x/sys/unix"
)

// pin locks the goroutine to its thread and the thread to cpu; the
// returned function undoes both.
func pin(cpu int) func() {
	runtime.LockOSThread()
	var all, one unix.CPUSet
	unix.SchedGetaffinity(0, &all)
	one.Set(cpu % runtime.NumCPU())
	unix.SchedSetaffinity(0, &one)
	return func() {
		unix.SchedSetaffinity(0, &all)
		runtime.UnlockOSThread()
	}
}

// BenchmarkPrivilegedReceive measures the AF_XDP receive rate on a veth in
// copy mode: the peer transmits 60-byte frames (64 on a wire with the FCS)
// as fast as it can from an AF_XDP socket of its own pinned to one CPU; the
// receiver busy-polls on the other. b.N is the number of frames to
// receive; the sender stops at the end of each run, or after 60 s.
//
//	go test -run '^$' -bench BenchmarkPrivilegedReceive -benchtime 2000000x ./dataplane/xsk/
func BenchmarkPrivilegedReceive(b *testing.B) {
	for _, tc := range []struct {
		name              string
		threaded, generic bool
	}{
		{"native", false, false},
		{"native-threaded-napi", true, false},
		{"generic", false, true},
	} {
		b.Run(tc.name, func(b *testing.B) { benchReceive(b, tc.threaded, tc.generic) })
	}
}

func benchReceive(b *testing.B, threaded, generic bool) {
	b.ReportAllocs()
	r := newRig(b, lab.LinkOptions{Queues: 1, Threaded: threaded})
	prog := newXDPProgram(b, 1, false)
	prog.attach(b, r, generic)
	rx := r.open(b, 0, Config{RingSize: 2048, NumFrames: 4096})
	prog.register(b, 0, rx)
	var tx *Socket
	err := r.ph.Do(func() (err error) {
		tx, err = Open("eth0", 0, Config{RingSize: 2048, NumFrames: 4096})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()

	var pkt [60]byte
	l := buildUDP(pkt[:], r.pmac, r.xmac, r.pip, r.xip, 9002, testPort, make([]byte, 18))
	stop := make(chan struct{})
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer pin(1)()
		frames := make([]Frame, BatchSize)
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); {
			select {
			case <-stop:
				return
			default:
			}
			tx.Complete()
			n := tx.Alloc(frames)
			for i := range frames[:n] {
				frames[i].SetPacket(frames[i].Off, pkt[:l])
			}
			q := tx.Transmit(frames[:n])
			tx.Release(frames[q:n])
			sent.Add(uint64(q))
		}
	}()

	unpin := pin(0)
	frames := make([]Frame, BatchSize)
	// Warm up: the first frame proves the path works.
	for end := time.Now().Add(5 * time.Second); rx.Stats().RxFrames == 0 && time.Now().Before(end); {
		n := rx.Receive(frames)
		rx.Release(frames[:n])
	}
	before := rx.Stats()
	sent0 := sent.Load()
	b.ResetTimer()
	start := time.Now()
	got := 0
	for deadline := start.Add(30 * time.Second); got < b.N; {
		n := rx.Receive(frames)
		rx.Release(frames[:n])
		got += n
		if n == 0 && time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	unpin()
	close(stop)
	wg.Wait()
	after := rx.Stats()
	sentN := sent.Load() - sent0
	b.ReportMetric(float64(got)/elapsed.Seconds()/1e6, "Mpps")
	b.ReportMetric(float64(sentN)/elapsed.Seconds()/1e6, "sent-Mpps")
	lost := (after.Kernel.RxDropped - before.Kernel.RxDropped) + (after.Kernel.RxRingFull - before.Kernel.RxRingFull)
	b.ReportMetric(float64(lost)/float64(max(1, got)), "lost/rx")
	if got < b.N {
		b.Logf("received %d of %d within 30 s", got, b.N)
	}
}
