package spu

import (
	"testing"

	"github.com/spugate/spugate/dataplane/steer"
)

// BenchmarkPacketPath is one cleartext packet of 64 bytes through gw-a
// (receive, metadata, policy, encapsulation, transmit) and the resulting
// ESP packet through gw-b (receive, metadata, SA, decapsulation, forward),
// on the anchor SPU, over fake ports: the SPU's own cost per packet, without
// the kernel's.
func BenchmarkPacketPath(b *testing.B) {
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
	b.ReportAllocs()
	for b.Loop() {
		a.lan[anchorSPU].Inject(frame)
		a.e.spus[anchorSPU].iterate()
		g.wan[anchorSPU].Inject(esp)
		g.e.spus[anchorSPU].iterate()
	}
}
