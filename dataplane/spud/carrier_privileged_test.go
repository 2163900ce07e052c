package spud_test

import (
	"encoding/json"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/steer/steertest"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// TestPrivilegedEveryCarrier runs spud end to end on each steering carrier
// this kernel allows (one that it refuses skips, saying why): static
// tunnels with outer IPv4 and IPv6, ESP and UDP-ESP, pings and TCP both
// ways, then numbered traffic through 16 tunnels across an SPU drain, add
// and fault on gw-b. spuctl status must name the carrier on every
// interface, and the steering program's counters must show it at work.
func TestPrivilegedEveryCarrier(t *testing.T) {
	steertest.ForCarriers(t, func(t *testing.T, c steer.Carrier) {
		p := startPair(t, lab.LineOptions{Router: true}, daemons.SpudOptions{SPUs: 4, Carrier: c.String()})
		checkStatus(t, p.a, c)
		pl := p.ln.Plan
		for i, x := range []struct {
			aEnd, bEnd netip.Addr
			encap      bool
		}{{pl.GwAWan4, pl.GwBWan4, false}, {pl.GwAWan6, pl.GwBWan6, true}} {
			v4 := newTunnel(uint32(60+2*i), x.aEnd, x.bEnd, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, x.encap)
			v6 := newTunnel(uint32(61+2*i), x.aEnd, x.bEnd, []netip.Prefix{pl.LanA6}, []netip.Prefix{pl.LanB6}, ipsec.ChaCha20Poly1305, x.encap)
			install(t, p, v4)
			install(t, p, v6)
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
			mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA6)
			labtest.TCPTransfer(t, p.ln.ClientA, p.ln.ClientB, pl.ClientB4, 256<<10)
			labtest.TCPTransfer(t, p.ln.ClientB, p.ln.ClientA, pl.ClientA6, 256<<10)
			remove(t, p, v4)
			remove(t, p, v6)
		}
		drainAddFail(t, p, 16)
		st, err := p.b.Client.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Carrier != c.String() || st.XDP["redirect_esp"] == 0 || st.XDP["redirect_cleartext"] == 0 {
			t.Errorf("gw-b stats: carrier %q, xdp %v", st.Carrier, st.XDP)
		}
		if n := st.Drops["no_meta"] + st.Drops["unsteered"]; n > 0 {
			t.Errorf("gw-b: %d frames without usable metadata: %v", n, st.Drops)
		}
	})
}

// checkStatus wants spuctl status (text and JSON) to name the carrier.
func checkStatus(t *testing.T, s *daemons.Spud, c steer.Carrier) {
	t.Helper()
	out, err := s.Spuctl("status")
	if err != nil || !strings.Contains(out, "steering carrier: "+c.String()) {
		t.Errorf("spuctl status: %v\n%s", err, out)
	}
	t.Logf("spuctl status:\n%s", out)
	js, err := s.Spuctl("status", "-json")
	if err != nil {
		t.Fatalf("spuctl status -json: %v\n%s", err, js)
	}
	var st struct {
		Steering   api.Steering
		Interfaces []api.Interface
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("spuctl status -json: %v\n%s", err, js)
	}
	if st.Steering.Carrier != c.String() || st.Steering.Kernel == "" || st.Steering.Features["xskmap"] != "yes" || len(st.Interfaces) != 2 {
		t.Errorf("status: %+v", st)
	}
	for _, i := range st.Interfaces {
		if i.Carrier != c.String() || i.XDPMode == "" || i.XSKMode == "" || i.ThreadedNAPI == "" || i.DriverXDP == "" {
			t.Errorf("status of %s: %+v", i.Name, i)
		}
	}
}

// drainAddFail runs numbered traffic through n tunnels while gw-b drains
// SPU 1, adds it back and loses SPU 2 to a fault: nothing is renegotiated
// and at most the packets in SPU 2's hands when it failed are lost.
func drainAddFail(t *testing.T, p *pair, n int) {
	t.Helper()
	tunnels := hostTunnels(t, p, func(i int) netip.Addr { return v4(3, 10+i) }, func(i int) netip.Addr { return v4(0, 100+i) }, 0, n, 400)
	var flows []*flow.Flow
	for i, tn := range tunnels {
		src, dst := tn.ANets[0].Addr(), tn.BNets[0].Addr()
		ping(t, p.ln.ClientA, src, dst, 1)
		f, err := flow.Start(flow.Options{From: p.ln.ClientA, To: p.ln.ClientB, Src: src, Dst: dst,
			Port: uint16(9300 + i), Rate: 50, Duration: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, f)
	}
	spis := spiSet(t, p.b)
	for _, step := range []func() error{
		func() error { _, err := p.b.Client.DrainSPU(1); return err },
		func() error { _, err := p.b.Client.AddSPU(1); return err },
		func() error { return p.b.Client.FailSPU(2) },
	} {
		time.Sleep(time.Second)
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var lost, got uint64
	for _, f := range flows {
		r := f.Wait()
		lost += r.LostCount
		got += r.Received
		if r.Duplicates > 0 {
			t.Errorf("%d duplicates", r.Duplicates)
		}
	}
	t.Logf("%d tunnels across drain, add and fault: %d received, %d lost", n, got, lost)
	if got == 0 || lost > got/100 {
		t.Errorf("lost %d of %d packets", lost, got+lost)
	}
	if after := spiSet(t, p.b); len(after) != len(spis) {
		t.Errorf("SAs changed: %d before, %d after", len(spis), len(after))
	}
}
