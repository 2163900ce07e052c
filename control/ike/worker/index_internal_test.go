package worker

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
)

// BenchmarkPeerIndexHeap reports the heap the peer index takes per IKE SA
// (heapB/IKE-SA) when each IKE SA has a peer address and identity of its
// own (a million road warriors or sites, which BenchmarkHeapPerTunnel's
// one peer does not show) and when all share one.
func BenchmarkPeerIndexHeap(b *testing.B) {
	const n = 20000
	for _, distinct := range []bool{true, false} {
		b.Run(fmt.Sprintf("distinct=%v", distinct), func(b *testing.B) {
			ms := make([]*manager.Manager, n)
			for i := range ms {
				addr := netip.AddrFrom4([4]byte{198, 18, 0, 1})
				id := []byte("peer.example")
				if distinct {
					addr = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
					id = fmt.Appendf(nil, "peer-%d.example", i)
				}
				ms[i] = &manager.Manager{IKE: &sa.IKESA{Remote: netip.AddrPortFrom(addr, 500),
					RemoteID: config.Identity{Type: 2, Data: id}, LocalID: config.Identity{Type: 2, Data: []byte("gw.example")}}}
			}
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				x := newPeerIndex(nil)
				for _, m := range ms {
					x.update(m)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/IKE-SA")
				runtime.KeepAlive(x)
			}
		})
	}
}
