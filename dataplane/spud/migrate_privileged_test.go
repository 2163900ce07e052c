package spud_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedDrainAddFail runs 64 tunnels through 4 SPUs (more SPUs than
// cores and queues: the extra SPUs work on handed-over packets only) under
// numbered traffic, then drains an SPU, adds it back and kills one with an
// injected fault: no tunnel is renegotiated (the same SPIs throughout), the
// anti-replay state survives (packets captured before the moves are still
// replays after them), loss is reported (target zero), and afterwards every
// SA sits on the SPU its map names.
func TestPrivilegedDrainAddFail(t *testing.T) {
	const n = 64
	p := startPair(t, lab.LineOptions{Router: true}, daemons.SpudOptions{SPUs: 4})
	tunnels := hostTunnels(t, p, func(i int) netip.Addr { return v4(3, 10+i) }, func(i int) netip.Addr { return v4(0, 100+i) }, 0, n, 300)
	spisBefore := spiSet(t, p.b)
	// Warm every path up (neighbours), then capture some ESP towards gw-b
	// to replay later.
	for _, tn := range tunnels {
		ping(t, p.ln.ClientA, tn.ANets[0].Addr(), tn.BNets[0].Addr(), 1)
	}
	pcap := capture(t, p.ln.Router, "out0", "esp and dst net 198.18.0.0/24", func() {
		for _, tn := range tunnels[:8] {
			ping(t, p.ln.ClientA, tn.ANets[0].Addr(), tn.BNets[0].Addr(), 1)
		}
	})
	var flows []*flow.Flow
	for i, tn := range tunnels {
		f, err := flow.Start(flow.Options{From: p.ln.ClientA, To: p.ln.ClientB, Src: tn.ANets[0].Addr(), Dst: tn.BNets[0].Addr(),
			Port: uint16(9000 + i), Rate: 50, Duration: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, f)
	}
	step := func(what string, do func() error) {
		time.Sleep(1500 * time.Millisecond)
		start := time.Now()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s took %v", what, time.Since(start).Round(time.Microsecond))
	}
	step("drain spu 1 on gw-b", func() error { _, err := p.b.Client.DrainSPU(1); return err })
	step("add spu 1 on gw-b", func() error { _, err := p.b.Client.AddSPU(1); return err })
	step("fault in spu 2 on gw-b", func() error { return p.b.Client.FailSPU(2) })
	var lost, got uint64
	for i, f := range flows {
		r := f.Wait()
		lost += r.LostCount
		got += r.Received
		if r.Duplicates > 0 {
			t.Errorf("tunnel %d: %d duplicates", i, r.Duplicates)
		}
	}
	t.Logf("64 tunnels: %d packets received, %d lost across drain, add and fault", got, lost)
	if lost > got/100 {
		t.Errorf("lost %d of %d packets", lost, got+lost)
	}
	l, err := p.b.Client.SPUs()
	if err != nil {
		t.Fatal(err)
	}
	if l.SPUs[2].State != "failed" || len(l.SPUs[2].Logical) != 0 {
		t.Errorf("spu 2 after the fault: %+v", l.SPUs[2])
	}
	// Same SAs, each where the map says.
	if after := spiSet(t, p.b); fmt.Sprint(after) != fmt.Sprint(spisBefore) {
		t.Errorf("SAs changed: before %v after %v", spisBefore, after)
	}
	sas, _ := p.b.Client.DumpSAs(false)
	for _, sa := range sas {
		if sa.Logical == nil {
			t.Errorf("sa 0x%x: the dump has no logical SPU", sa.SPI)
		} else if want := l.Map[*sa.Logical]; sa.SPU != want {
			t.Errorf("sa 0x%x on spu %d, its logical %d is on spu %d", sa.SPI, sa.SPU, *sa.Logical, want)
		}
	}
	// Replays of packets from before the moves are still caught.
	before := replayDrops(t, p.b)
	out, err := p.ln.Router.Exec("/usr/bin/python3", "-c",
		"from scapy.all import rdpcap, sendp, conf; conf.verb=0; sendp(rdpcap('"+pcap+"'), iface='out0')")
	if err != nil {
		t.Fatalf("replay with scapy: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if got := replayDrops(t, p.b) - before; got < 8 {
		t.Errorf("only %d of the replayed packets were caught as replays", got)
	}
}

func spiSet(t *testing.T, s *daemons.Spud) map[uint32]bool {
	t.Helper()
	sas, err := s.Client.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint32]bool{}
	for _, sa := range sas {
		m[sa.SPI] = true
	}
	return m
}

func replayDrops(t *testing.T, s *daemons.Spud) uint64 {
	sas, err := s.Client.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, sa := range sas {
		n += sa.Stats.Drops["replay"]
	}
	return n
}
