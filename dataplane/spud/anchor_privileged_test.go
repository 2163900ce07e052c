package spud_test

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
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

// installAnchored installs tn with an explicit anchor on each side, as
// iked does for the Child SAs of an IKE SA: la on gw-a, lb on gw-b. Each
// side's inbound SPI comes from its spi.alloc for its anchor (the SPI's
// top bits name it, and the steering program anchors the ESP by them);
// the outbound SAs and the policies carry the anchor explicitly.
func installAnchored(t *testing.T, p *pair, tn *tunnel, la, lb int) {
	t.Helper()
	ra, err := p.a.Client.AllocSPI(api.SPIAllocRequest{Local: tn.AEnd, Remote: tn.BEnd, Logical: api.Logical(la)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := p.b.Client.AllocSPI(api.SPIAllocRequest{Local: tn.BEnd, Remote: tn.AEnd, Logical: api.Logical(lb)})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Logical != la || rb.Logical != lb {
		t.Fatalf("spi.alloc anchored on logical %d and %d, asked %d and %d", ra.Logical, rb.Logical, la, lb)
	}
	tn.SPIBA, tn.SPIAB = ra.SPI, rb.SPI
	aOut, aIn, bOut, bIn := tn.SAs()
	aOut.Logical, aIn.Logical = api.Logical(la), api.Logical(la)
	bOut.Logical, bIn.Logical = api.Logical(lb), api.Logical(lb)
	for _, x := range []struct {
		c  *api.Client
		sa *api.SA
	}{{p.a.Client, aIn}, {p.b.Client, bIn}, {p.a.Client, aOut}, {p.b.Client, bOut}} {
		if err := x.c.AddSA(x.sa); err != nil {
			t.Fatalf("tunnel %d: add %s sa 0x%08x: %v", tn.ReqID, x.sa.Dir, x.sa.SPI, err)
		}
	}
	for i, side := range []struct {
		c          *api.Client
		local, rem netip.Addr
		lts, rts   []netip.Prefix
		logical    int
	}{{p.a.Client, tn.AEnd, tn.BEnd, tn.ANets, tn.BNets, la}, {p.b.Client, tn.BEnd, tn.AEnd, tn.BNets, tn.ANets, lb}} {
		var lts, rts []ipsec.Selector
		for _, n := range side.lts {
			lts = append(lts, ipsec.PrefixSelector(n, 0))
		}
		for _, n := range side.rts {
			rts = append(rts, ipsec.PrefixSelector(n, 0))
		}
		r, err := side.c.AddPolicy(&api.Policy{ReqID: tn.ReqID, Action: api.Protect, Local: side.local, Remote: side.rem,
			Logical: api.Logical(side.logical), LocalTS: lts, RemoteTS: rts})
		if err != nil {
			t.Fatalf("tunnel %d: add policy: %v", tn.ReqID, err)
		}
		if r.Logical != side.logical {
			t.Fatalf("tunnel %d: policy on logical %d, asked %d", tn.ReqID, r.Logical, side.logical)
		}
		tn.Policies[i] = r.ID
	}
}

// TestPrivilegedTunnelsOfOnePairOnTheirOwnSPUs: two tunnels between the
// same two gateway addresses, each anchored explicitly (as the Child SAs of
// two IKE SAs are) on a logical SPU of its own, the two on different
// physical SPUs, on both gateways. Each tunnel's ESP is encapsulated and
// decapsulated on its own SPU only, where its SAs and policy live,
// although the address hash names one SPU for both; nothing is lost, and
// no handoff is dropped.
func TestPrivilegedTunnelsOfOnePairOnTheirOwnSPUs(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{SPUs: 2})
	pl := p.ln.Plan
	// logicals[side][k]: tunnel k's anchor on gw-a (side 0) and gw-b,
	// the first logical SPU each gateway's map puts on SPU k.
	var logicals [2][2]int
	for side, s := range []*daemons.Spud{p.a, p.b} {
		h, err := s.Client.Hello("test")
		if err != nil {
			t.Fatal(err)
		}
		for k := range 2 {
			logicals[side][k] = -1
			for l, phys := range h.Map {
				if phys == k {
					logicals[side][k] = l
					break
				}
			}
			if logicals[side][k] < 0 {
				t.Fatalf("%s: no logical SPU on SPU %d: map %v", s.Host.Name, k, h.Map)
			}
		}
	}
	var tunnels []*tunnel
	for k := range 2 {
		aHost := netip.AddrFrom4([4]byte{198, 18, 1, byte(150 + k)})
		bHost := netip.AddrFrom4([4]byte{198, 18, 2, byte(150 + k)})
		for _, x := range []struct {
			h *lab.Host
			a netip.Addr
		}{{p.ln.ClientA, aHost}, {p.ln.ClientB, bHost}} {
			if err := x.h.AddAddr("eth0", netip.PrefixFrom(x.a, 24)); err != nil {
				t.Fatal(err)
			}
		}
		tn := newTunnel(uint32(300+k), pl.GwAWan4, pl.GwBWan4, []netip.Prefix{netip.PrefixFrom(aHost, 32)},
			[]netip.Prefix{netip.PrefixFrom(bHost, 32)}, ipsec.AES128GCM16, false)
		installAnchored(t, p, tn, logicals[0][k], logicals[1][k])
		tunnels = append(tunnels, tn)
	}
	spuCounts := func(s *daemons.Spud) (encap, decap [2]uint64, handoffs, handoffDrops uint64) {
		st, err := s.Client.Stats()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range st.SPUs {
			encap[x.ID], decap[x.ID] = x.Encap, x.Decap
			handoffs += x.HandoffOut
			handoffDrops += x.HandoffFull + x.Drops["reassembled_too_big"]
		}
		return
	}
	const pings = 20
	for k, tn := range tunnels {
		var encap0, decap0 [2][2]uint64
		for side, s := range []*daemons.Spud{p.a, p.b} {
			encap0[side], decap0[side], _, _ = spuCounts(s)
		}
		src, dst := tn.ANets[0].Addr(), tn.BNets[0].Addr()
		if got := ping(t, p.ln.ClientA, src, dst, pings); got != pings {
			t.Errorf("tunnel %d: %d of %d pings came back", k, got, pings)
		}
		// Too big for the path once encapsulated, DF clear: carried in
		// outer fragments, which the steering program anchors by the
		// addresses, the same SPU for both tunnels; the SPU that
		// reassembles hands the packet to its tunnel's SPU.
		out, err := p.ln.ClientA.Exec("ping", "-n", "-c", "3", "-i", "0.1", "-W", "2", "-s", "1450", "-M", "dont",
			"-I", src.String(), dst.String())
		if err != nil || !strings.Contains(string(out), "3 received") {
			t.Errorf("tunnel %d: large pings without DF: %v\n%s", k, err, out)
		}
		for side, s := range []*daemons.Spud{p.a, p.b} {
			encap, decap, handoffs, drops := spuCounts(s)
			var de, dd [2]uint64
			for i := range 2 {
				de[i], dd[i] = encap[i]-encap0[side][i], decap[i]-decap0[side][i]
			}
			t.Logf("%s: tunnel %d (logical %d): encap per SPU %v, decap per SPU %v; handoffs so far %d, handoff drops %d",
				s.Host.Name, k, logicals[side][k], de, dd, handoffs, drops)
			// The warm-up ping and the counted ones, both ways.
			if de[k] < pings || dd[k] < pings || de[1-k] != 0 || dd[1-k] != 0 {
				t.Errorf("%s: tunnel %d's ESP not on SPU %d alone: encap %v decap %v", s.Host.Name, k, k, de, dd)
			}
			if drops != 0 {
				t.Errorf("%s: %d handoffs dropped", s.Host.Name, drops)
			}
		}
	}
	// One of the two tunnels is anchored away from the SPU of the
	// addresses' hash, where its fragments were reassembled.
	for _, s := range []*daemons.Spud{p.a, p.b} {
		st, err := s.Client.Stats()
		if err != nil {
			t.Fatal(err)
		}
		var frag uint64
		for _, x := range st.SPUs {
			frag += x.FragHandoff
		}
		t.Logf("%s: %d reassembled ESP packets handed to their SPI's SPU; xdp %v", s.Host.Name, frag, st.XDP)
		if frag < 3 || st.XDP["redirect_esp_fragment"] == 0 {
			t.Errorf("%s: %d reassembled packets handed on, %d fragments steered: want 3 or more of each", s.Host.Name, frag, st.XDP["redirect_esp_fragment"])
		}
	}
	// Every SA where its explicit anchor says, and it carried the pings.
	for side, s := range []*daemons.Spud{p.a, p.b} {
		sas, err := s.Client.DumpSAs(false)
		if err != nil {
			t.Fatal(err)
		}
		for _, sa := range sas {
			k := int(sa.ReqID) - 300
			if sa.Logical == nil || *sa.Logical != logicals[side][k] || sa.SPU != k || sa.Stats.Packets < pings {
				t.Errorf("%s: tunnel %d sa 0x%08x %s on logical %v spu %d with %d packets, want logical %d spu %d",
					s.Host.Name, k, sa.SPI, sa.Dir, sa.Logical, sa.SPU, sa.Stats.Packets, logicals[side][k], k)
			}
		}
		if len(sas) != 4 {
			t.Errorf("%s: %d SAs, want 4", s.Host.Name, len(sas))
		}
	}
}
