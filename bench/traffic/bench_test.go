package traffic

import (
	"testing"

	"github.com/spugate/spugate/dataplane/xsk"
)

// BenchmarkGeneratorBatch is the generator's cost per packet over a fake
// port: building, stamping and queueing a batch, without the kernel.
func BenchmarkGeneratorBatch(b *testing.B) {
	for _, m := range []Mix{Fixed(64), Fixed(1400), IMIX()} {
		b.Run(m.Name, func(b *testing.B) {
			b.ReportAllocs()
			_, g, _, peer := pair(b, 16, 0, m)
			frames := make([]xsk.Frame, xsk.BatchSize)
			w := Window{End: 1 << 62}
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				sent += g.send(0, xsk.BatchSize, w)
				n := peer.Receive(frames)
				peer.Release(frames[:n])
			}
		})
	}
}

// BenchmarkSinkCount is the sink's cost per packet: parsing, sequence and
// latency accounting.
func BenchmarkSinkCount(b *testing.B) {
	b.ReportAllocs()
	_, g, s, peer := pair(b, 16, 0, Fixed(64))
	frames := make([]xsk.Frame, xsk.BatchSize)
	w := Window{End: 1 << 62}
	s.w = w
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		g.send(0, xsk.BatchSize, w)
		n := peer.Receive(frames)
		b.StartTimer()
		s.count(frames[:n])
		b.StopTimer()
		peer.Release(frames[:n])
		b.StartTimer()
		done += n
	}
}

func BenchmarkHistogramAdd(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := range b.N {
		h.Add(int64(i&0xfffff) * 37)
	}
}
