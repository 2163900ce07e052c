package steer

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The cost of each carrier per packet, in the two places it is paid: the
// steering program (BPF_PROG_TEST_RUN with the kernel's repeat loop, a
// frame arriving on a queue whose AF_XDP socket is registered, so the
// program runs to its redirect) and the SPU that reads the metadata
// (ReadMeta and the shim's trim, or Classify over the program's maps for
// the none carrier). Run:
//
//	go test -run '^$' -bench BenchmarkCarrier ./dataplane/steer/
//
// and for the table of ratios to the meta carrier, measured in one run
// (best of N interleaved runs):
//
//	SPUGATE_CARRIER_RATIOS=5 go test -run TestReportCarrierRatios -v ./dataplane/steer/

// carrierFrames are the frames the carrier cost is measured on: ESP to a
// local endpoint (anchored by a hash of its addresses) and cleartext that
// matches the SPD (two LPM lookups), at 64 and 1400 bytes of payload.
func carrierFrames() []struct {
	name string
	f    frame
} {
	return []struct {
		name string
		f    frame
	}{
		{"esp-64", frame{src: peer4, dst: local4, proto: protoESP, l4: esp(0x1234, 1, 64-8)}},
		{"esp-1400", frame{src: peer4, dst: local4, proto: protoESP, l4: esp(0x1234, 1, 1400-8)}},
		{"cleartext-64", frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 64)}},
		{"cleartext-1400", frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 1400)}},
	}
}

// carrierCost measures one carrier on one frame: nanoseconds per frame in
// the program and in the SPU.
type carrierCost struct{ xdp, spu float64 }

func measureCarrier(tb testing.TB, e *env, b []byte, iters int) carrierCost {
	tb.Helper()
	var cost carrierCost
	e.ns.do(tb, func() {
		// Live frames: every run starts from the frame as given (plain
		// repeats keep what the last run did to it, shim and all), and a
		// redirect is carried out, into a socket with no fill ring
		// entries, which drops it.
		opts := &ebpf.RunOptions{
			Data:    b,
			Repeat:  uint32(iters),
			Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			Context: xdpMd{DataEnd: uint32(len(b)), IngressIfindex: uint32(e.ifindex), RxQueueIndex: 1},
		}
		start := time.Now()
		v, err := e.prog.Program().Run(opts)
		if err != nil {
			tb.Errorf("%s: verdict %d, %v", e.carrier, v, err)
			return
		}
		cost.xdp = float64(time.Since(start).Nanoseconds()) / float64(iters)
		// What the SPU gets: the frame in a chunk, as the program left it.
		one := &ebpf.RunOptions{Data: b, DataOut: make([]byte, len(b)+MetaSize),
			Context: xdpMd{DataEnd: uint32(len(b)), IngressIfindex: uint32(e.ifindex), RxQueueIndex: 1}, ContextOut: &xdpMd{}}
		if _, err := e.prog.Program().Run(one); err != nil {
			tb.Error(err)
			return
		}
		meta := one.ContextOut.(*xdpMd).Data
		chunk := make([]byte, 2048)
		off := 256 - int(meta)
		copy(chunk[off:], one.DataOut)
		off += int(meta)
		n := len(one.DataOut) - int(meta)
		magic := append([]byte{}, chunk[off-MetaSize:off-MetaSize+4]...)
		start = time.Now()
		for range iters {
			if e.carrier == CarrierNone {
				if _, err := e.cls.Classify(chunk[off:off+n], uint32(e.ifindex), 1); err != nil {
					tb.Error(err)
					return
				}
				continue
			}
			copy(chunk[off-MetaSize:], magic) // ReadMeta clears it
			if _, _, err := e.carrier.ReadMeta(chunk, off, n); err != nil {
				tb.Error(err)
				return
			}
		}
		cost.spu = float64(time.Since(start).Nanoseconds()) / float64(iters)
	})
	return cost
}

func BenchmarkCarrier(b *testing.B) {
	for _, c := range Carriers {
		b.Run(c.String(), func(b *testing.B) {
			e := newEnv(b, c)
			for _, fr := range carrierFrames() {
				data := fr.f.bytes()
				b.Run(fr.name, func(b *testing.B) {
					cost := measureCarrier(b, e, data, max(b.N, 1000))
					b.ReportMetric(cost.xdp, "xdp-ns/frame")
					b.ReportMetric(cost.spu, "spu-ns/frame")
					b.ReportMetric(cost.xdp+cost.spu, "ns/frame")
				})
			}
		})
	}
}

// TestReportCarrierRatios prints each carrier's cost per frame as a ratio
// to the meta carrier's, measured in one run. It is a report, not an
// assertion, and runs only when SPUGATE_CARRIER_RATIOS is set.
func TestReportCarrierRatios(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("SPUGATE_CARRIER_RATIOS"))
	if reps <= 0 {
		t.Skip("set SPUGATE_CARRIER_RATIOS=N to measure, best of N interleaved runs")
	}
	envs := map[Carrier]*env{}
	for _, c := range Carriers {
		if err := c.Supported(); err != nil {
			t.Logf("%v", err)
			continue
		}
		envs[c] = newEnv(t, c)
	}
	const iters = 200000
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "frame\tcarrier\txdp ns\tspu ns\ttotal ns\t/ best\t")
	for _, fr := range carrierFrames() {
		data := fr.f.bytes()
		best := map[Carrier]carrierCost{}
		for range reps {
			for _, c := range Carriers {
				e := envs[c]
				if e == nil {
					continue
				}
				got := measureCarrier(t, e, data, iters)
				if b, ok := best[c]; !ok || got.xdp+got.spu < b.xdp+b.spu {
					best[c] = got
				}
			}
		}
		base := 0.0
		for _, c := range Carriers {
			if b, ok := best[c]; ok && base == 0 {
				base = b.xdp + b.spu
			}
		}
		for _, c := range Carriers {
			b, ok := best[c]
			if !ok {
				fmt.Fprintf(w, "%s\t%s\trefused\t\t\t\t\n", fr.name, c)
				continue
			}
			fmt.Fprintf(w, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t\n", fr.name, c, b.xdp, b.spu, b.xdp+b.spu, (b.xdp+b.spu)/base)
		}
	}
	w.Flush()
}
