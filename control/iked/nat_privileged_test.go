package iked_test

import (
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// TestPrivilegedIkedNAT puts gw-a behind a masquerading NAT: NAT
// detection, the float to port 4500, UDP-encapsulated SAs towards the NAT's
// address and port on gw-b, traffic both ways.
func TestPrivilegedIkedNAT(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{NAT: true})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	cb.remoteAddrs = "%any"
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
	labtest.TCPTransfer(t, tb.ln.ClientA, tb.ln.ClientB, pl.ClientB4, 512<<10)
	labtest.TCPTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA6, 512<<10)
	la, lb := tb.a.sas(t), tb.b.sas(t)
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("IKE SAs %d / %d", len(la), len(lb))
	}
	if !la[0].NATLocal || !lb[0].NATRemote || la[0].Local.Port() != 4500 || lb[0].Local.Port() != 4500 {
		t.Errorf("NAT-T: gw-a %+v, gw-b %+v", la[0], lb[0])
	}
	if lb[0].Remote.Addr() != pl.NatOut4 {
		t.Errorf("gw-b sees gw-a at %s, want the NAT's %s", lb[0].Remote, pl.NatOut4)
	}
	sas, _ := tb.b.dump(t)
	for _, s := range sas {
		if s.Encap == nil || (s.Dir == api.Out && (s.Remote != pl.NatOut4 || s.Encap.RemotePort != lb[0].Remote.Port())) {
			t.Errorf("gw-b's SA 0x%08x %s: remote %s encap %+v", s.SPI, s.Dir, s.Remote, s.Encap)
		}
	}
	if out := tb.b.spuctl(t, "list-sas"); !strings.Contains(out, "TUNNEL-in-UDP") || !strings.Contains(out, "behind NAT") {
		t.Errorf("list-sas on gw-b:\n%s", out)
	}
	tb.b.spuctl(t, "terminate", "tun")
	gone(t, tb.a, tb.b)
}
