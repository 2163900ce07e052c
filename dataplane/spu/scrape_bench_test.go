package spu

import (
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/steer"
)

// BenchmarkPacketPathScraped is BenchmarkPacketPath while another
// goroutine reads both engines' SPU counters (SPUStats: what a metrics
// scrape, or `spuctl stats`, reads of the SPUs) every millisecond, some
// 15,000 times as often as Prometheus scrapes: the per-packet cost with
// metrics on, to compare with BenchmarkPacketPath's. The scrape only
// loads the atomics the SPU keeps anyway; the packet path has nothing of
// its own for metrics.
func BenchmarkPacketPathScraped(b *testing.B) {
	a, g, logical, pol := setup(b)
	anchorSPU := a.e.physical(logical)
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	steerAs(g.wan[anchorSPU], steer.ClassESP, logical, 0)
	frame := udpFrame(hostA, hostB, make([]byte, 64-42))
	var esp []byte
	a.wan[anchorSPU].SetSink(func(p []byte) { esp = append(esp[:0], p...) })
	g.lan[0].SetSink(func([]byte) {})
	g.lan[1].SetSink(func([]byte) {})
	a.lan[anchorSPU].Inject(frame)
	a.step()
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			case <-t.C:
				a.e.SPUStats()
				g.e.SPUStats()
				n++
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		a.lan[anchorSPU].Inject(frame)
		a.e.spus[anchorSPU].iterate()
		g.wan[anchorSPU].Inject(esp)
		g.e.spus[anchorSPU].iterate()
	}
	b.StopTimer()
	close(stop)
	b.ReportMetric(float64(<-done)/b.Elapsed().Seconds(), "scrapes/s")
}
