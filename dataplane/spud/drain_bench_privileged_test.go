package spud_test

import (
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// BenchmarkPrivilegedDrain measures how long draining an SPU takes when it
// holds a few thousand tunnels (static SAs on 4 SPUs, about a quarter of
// them on the drained one), and how many packets of a numbered flow
// through one of the moved tunnels are lost meanwhile. The default of 400
// tunnels keeps CI's smoke run short; the figure of the issue is taken with
// SPUGATE_DRAIN_TUNNELS=10000 (2,500 per SPU).
func BenchmarkPrivilegedDrain(b *testing.B) {
	privileged.Require(b, "ping")
	tunnels := 400
	if v := envInt("SPUGATE_DRAIN_TUNNELS"); v > 0 {
		tunnels = v
	}
	ln := labtest.Line(b, lab.LineOptions{GatewayLinks: lab.LinkOptions{Queues: 2}})
	pl := ln.Plan
	var spuds [2]*daemons.Spud
	for i, h := range []*lab.Host{ln.GwA, ln.GwB} {
		s, err := daemons.StartSpud(h, daemons.SpudOptions{SPUs: 4})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Stop() })
		spuds[i] = s
	}
	// Distinct endpoint pairs spread tunnels over SPUs; one real tunnel
	// carries the flow, the rest protect /32s nobody sends to.
	ends := 64
	for i := 0; i < ends; i++ {
		ln.GwA.AddAddr("wan0", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)}), 24))
		ln.GwB.AddAddr("wan0", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(180 + i)}), 24))
	}
	p := &pair{ln: ln, a: spuds[0], b: spuds[1]}
	start := time.Now()
	for i := 0; i < tunnels-1; i++ {
		aEnd := netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i%ends)})
		bEnd := netip.AddrFrom4([4]byte{198, 18, 0, byte(180 + i%ends)})
		la := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		lb := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(128 + i>>8), byte(i)}), 32)
		tn := newTunnel(uint32(1000+i), aEnd, bEnd, []netip.Prefix{la}, []netip.Prefix{lb}, ipsec.AES128GCM16, false)
		if err := tn.Install(p.a, p.b); err != nil {
			b.Fatal(err)
		}
	}
	live := newTunnel(999, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	if err := live.Install(p.a, p.b); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d tunnels installed on both gateways in %v", tunnels, time.Since(start).Round(time.Millisecond))
	l, err := p.a.Client.SPUs()
	if err != nil {
		b.Fatal(err)
	}
	// Drain the SPU holding the live tunnel, so its packets are the ones
	// that move.
	var target int
	for _, sa := range mustDump(b, p.a) {
		if sa.ReqID == live.ReqID {
			target = sa.SPU
		}
	}
	b.Logf("SAs per SPU before: %v; draining SPU %d", saCounts(l), target)
	f, err := flow.Start(flow.Options{From: ln.ClientA, To: ln.ClientB, Src: pl.ClientA4, Dst: pl.ClientB4, Rate: 2000, Duration: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	b.ResetTimer()
	t0 := time.Now()
	if _, err := p.a.Client.DrainSPU(target); err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	b.StopTimer()
	r := f.Wait()
	l, _ = p.a.Client.SPUs()
	b.Logf("drain of SPU %d: %v; SAs per SPU after: %v; flow: %v", target, took.Round(time.Microsecond), saCounts(l), r)
	b.ReportMetric(float64(took.Microseconds())/1000, "ms/drain")
	b.ReportMetric(float64(r.LostCount), "lost")
	b.ReportMetric(float64(tunnels), "tunnels")
}

func saCounts(l *api.SPUList) string {
	s := ""
	for _, x := range l.SPUs {
		s += fmt.Sprintf("%d:%d ", x.ID, x.SAs)
	}
	return s
}

func mustDump(b testing.TB, s *daemons.Spud) []api.SAState {
	sas, err := s.Client.DumpSAs(false)
	if err != nil {
		b.Fatal(err)
	}
	return sas
}

func envInt(name string) int {
	var v int
	fmt.Sscan(os.Getenv(name), &v)
	return v
}
