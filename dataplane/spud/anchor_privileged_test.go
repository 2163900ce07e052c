package spud_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedTunnelsStayOnTheirAnchor runs 16 tunnels with distinct
// endpoint pairs through 2 SPUs on 2-queue veths: every tunnel's SAs live
// on the SPU the anchor function names (computed here from spud's key and
// map: the SPI of an inbound SA, the endpoints of an outbound one), packets arriving on the other SPU's queue are handed over and
// counted, and every tunnel carries traffic.
func TestPrivilegedTunnelsStayOnTheirAnchor(t *testing.T) {
	const n = 16
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{SPUs: 2})
	tunnels := hostTunnels(t, p, func(i int) netip.Addr { return v4(0, 100+i) }, func(i int) netip.Addr { return v4(0, 200+i) }, 1, n, 100)
	// Traffic on every tunnel, from several flows at once so that both
	// queues of each veth see some.
	var wg sync.WaitGroup
	lost := make([]int, n)
	for i, tn := range tunnels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := tn.ANets[0].Addr()
			dst := tn.BNets[0].Addr()
			if got := ping(t, p.ln.ClientA, src, dst, 10); got != 10 {
				lost[i] = 10 - got
			}
		}()
	}
	wg.Wait()
	for i, l := range lost {
		if l > 0 {
			t.Errorf("tunnel %d lost %d of 10 pings", i+1, l)
		}
	}
	for _, side := range []*daemons.Spud{p.a, p.b} {
		hello, err := side.Client.Hello("test")
		if err != nil {
			t.Fatal(err)
		}
		var hk anchor.HashKey
		copy(hk[:], hello.AnchorKey)
		fn, err := anchor.NewFunction(hk, hello.Logical)
		if err != nil {
			t.Fatal(err)
		}
		sas, err := side.Client.DumpSAs(false)
		if err != nil {
			t.Fatal(err)
		}
		perSPU := map[int]int{}
		for _, sa := range sas {
			// Installed without an explicit anchor: an inbound SA is
			// anchored by its SPI (where the steering program sends its
			// packets), an outbound one by the hash of its endpoints.
			logical := fn.Logical(sa.Local, sa.Remote)
			if sa.Dir == api.In {
				logical = fn.LogicalSPI(sa.SPI)
			}
			want := hello.Map[logical]
			if sa.SPU != want || sa.Logical == nil || *sa.Logical != int(logical) {
				t.Errorf("%s: sa 0x%x %s on spu %d (logical %v), the anchor is spu %d (logical %d)",
					side.Host.Name, sa.SPI, sa.Dir, sa.SPU, sa.Logical, want, logical)
				continue
			}
			if sa.Stats.Packets == 0 {
				t.Errorf("%s: sa 0x%x %s carried nothing", side.Host.Name, sa.SPI, sa.Dir)
			}
			perSPU[sa.SPU]++
		}
		st, err := side.Client.Stats()
		if err != nil {
			t.Fatal(err)
		}
		var handoffs, drops uint64
		for _, s := range st.SPUs {
			handoffs += s.HandoffOut
			drops += s.HandoffFull
		}
		t.Logf("%s: SAs per SPU %v, handoffs %d, handoff drops %d, drops %v", side.Host.Name, perSPU, handoffs, drops, st.Drops)
		if len(perSPU) != 2 {
			t.Errorf("%s: all tunnels anchored on one SPU: %v", side.Host.Name, perSPU)
		}
		if handoffs == 0 {
			t.Errorf("%s: no packet was handed to its anchor: the test did not exercise handoff", side.Host.Name)
		}
		if drops != 0 {
			t.Errorf("%s: %d handoffs dropped", side.Host.Name, drops)
		}
	}
}
