package spud_test

import (
	"encoding/json"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedMakeBeforeBreakLosesNothing replaces a tunnel's SAs ten
// times under a steady numbered flow in both directions, the way a rekey
// does (both new inbound SAs, then the outbound switch, then the old SAs
// deleted after a short drain): no packet may be lost or duplicated.
func TestPrivilegedMakeBeforeBreakLosesNothing(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	tn := newTunnel(200, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, true)
	install(t, p, tn)
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA4)
	ab, err := flow.Start(flow.Options{From: p.ln.ClientA, To: p.ln.ClientB, Src: pl.ClientA4, Dst: pl.ClientB4, Rate: 2000, Duration: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ba, err := flow.Start(flow.Options{From: p.ln.ClientB, To: p.ln.ClientA, Src: pl.ClientB4, Dst: pl.ClientA4, Rate: 2000, Duration: 4 * time.Second, Port: 7778})
	if err != nil {
		t.Fatal(err)
	}
	cur := tn
	for i := 0; i < 10; i++ {
		time.Sleep(300 * time.Millisecond)
		next := newTunnel(cur.ReqID, cur.AEnd, cur.BEnd, cur.ANets, cur.BNets, cur.Suite, cur.Encap)
		next.SPIAB, next.SPIBA = 0x9000+uint32(i)*2, 0x9001+uint32(i)*2
		aOut, aIn, bOut, bIn := next.SAs()
		for _, x := range []struct {
			c  *api.Client
			sa *api.SA
		}{{p.a.Client, aIn}, {p.b.Client, bIn}, {p.a.Client, aOut}, {p.b.Client, bOut}} {
			if err := x.c.AddSA(x.sa); err != nil {
				t.Fatalf("rekey %d: %v", i, err)
			}
		}
		// Packets already encrypted with the old SAs are still in flight.
		time.Sleep(50 * time.Millisecond)
		for _, e := range []error{
			p.a.Client.DelSA(api.SAID{SPI: cur.SPIAB, Dir: api.Out, Remote: cur.BEnd}),
			p.b.Client.DelSA(api.SAID{SPI: cur.SPIBA, Dir: api.Out, Remote: cur.AEnd}),
			p.a.Client.DelSA(api.SAID{SPI: cur.SPIBA, Dir: api.In}),
			p.b.Client.DelSA(api.SAID{SPI: cur.SPIAB, Dir: api.In}),
		} {
			if e != nil {
				t.Fatalf("rekey %d: delete old: %v", i, e)
			}
		}
		cur = next
	}
	for name, f := range map[string]*flow.Flow{"a->b": ab, "b->a": ba} {
		r := f.Wait()
		t.Logf("%s: %v", name, r)
		if r.LostCount != 0 || r.Duplicates != 0 || r.Received < 7000 {
			t.Errorf("%s across 10 SA replacements: %v (lost %v)", name, r, r.Lost)
		}
	}
	sas, _ := p.a.Client.DumpSAs(false)
	if len(sas) != 2 {
		t.Errorf("gw-a holds %d SAs after the replacements, want 2", len(sas))
	}
}

// TestPrivilegedLifetimeEvents: soft and hard packet lifetimes raise events
// on the SA API, and the SA stops passing traffic at the hard limit.
func TestPrivilegedLifetimeEvents(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	tn := newTunnel(210, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	ev, err := p.a.Client.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	aOut, aIn, bOut, bIn := tn.SAs()
	aOut.Lifetime = api.Lifetime{SoftPackets: 5, HardPackets: 10}
	for _, x := range []struct {
		c  *api.Client
		sa *api.SA
	}{{p.a.Client, aIn}, {p.b.Client, bIn}, {p.a.Client, aOut}, {p.b.Client, bOut}} {
		if err := x.c.AddSA(x.sa); err != nil {
			t.Fatal(err)
		}
	}
	for _, side := range []struct {
		c          *api.Client
		local, rem netip.Addr
		lts, rts   netip.Prefix
	}{{p.a.Client, pl.GwAWan4, pl.GwBWan4, pl.LanA4, pl.LanB4}, {p.b.Client, pl.GwBWan4, pl.GwAWan4, pl.LanB4, pl.LanA4}} {
		if _, err := side.c.AddPolicy(&api.Policy{ReqID: tn.ReqID, Action: api.Protect, Local: side.local, Remote: side.rem,
			LocalTS: []ipsec.Selector{ipsec.PrefixSelector(side.lts, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(side.rts, 0)}}); err != nil {
			t.Fatal(err)
		}
	}
	got := ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 12)
	if got > 9 {
		t.Errorf("%d of 12 pings passed an SA with a hard limit of 10 packets", got)
	}
	kinds := map[string]api.SAEvent{}
	timeout := time.After(5 * time.Second)
	for len(kinds) < 2 {
		select {
		case e := <-ev:
			var body api.SAEvent
			json.Unmarshal(e.Body, &body)
			kinds[e.Kind] = body
		case <-timeout:
			t.Fatalf("events seen: %v", kinds)
		}
	}
	for _, k := range []string{api.EventSoftLifetime, api.EventHardLifetime} {
		if e, ok := kinds[k]; !ok || e.SPI != tn.SPIAB || e.Dir != api.Out || e.ReqID != tn.ReqID {
			t.Errorf("%s: %+v (%v)", k, e, ok)
		}
	}
}

// TestPrivilegedIdleCostsNothing: an idle spud in adaptive mode uses no
// measurable CPU (a resource check, not a speed).
func TestPrivilegedIdleCostsNothing(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	time.Sleep(500 * time.Millisecond) // start-up done
	cpu := func() time.Duration {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.a.Proc.PID) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	before := cpu()
	time.Sleep(3 * time.Second)
	used := cpu() - before
	t.Logf("idle spud used %v of CPU in 3s", used)
	if used > 90*time.Millisecond { // 3% of one core
		t.Errorf("idle spud used %v of CPU in 3s", used)
	}
}
