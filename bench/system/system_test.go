package system

import (
	"encoding/base64"
	"net/netip"
	"os"
	"testing"

	"github.com/spugate/spugate/testbed/lab"
)

func TestPlan(t *testing.T) {
	line := lab.DefaultPlan()
	one := Plan{Tunnels: 1, Line: line}
	if one.Peer(0) != line.GwBWan4 || one.Site(0) != line.LanB4 || one.Source(0) != line.ClientB4 || one.Local() != line.GwAWan4 {
		t.Errorf("one tunnel: peer %v site %v source %v", one.Peer(0), one.Site(0), one.Source(0))
	}
	many := Plan{Tunnels: MaxTunnels, Line: line}
	if err := many.Valid(); err != nil {
		t.Fatal(err)
	}
	peers, sites := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for i := range many.Tunnels {
		p, s := many.Peer(i), many.Site(i)
		if !PeerRange.Contains(p) || !SiteRange.Contains(s.Addr()) || s.Bits() != 32 || !lab.Prefix4.Contains(p) {
			t.Fatalf("tunnel %d: peer %v site %v outside the ranges", i, p, s)
		}
		if peers[p] || sites[s.Addr()] {
			t.Fatalf("tunnel %d: peer %v or site %v reused", i, p, s)
		}
		peers[p], sites[s.Addr()] = true, true
	}
	if (Plan{Tunnels: MaxTunnels + 1}).Valid() == nil || (Plan{}).Valid() == nil {
		t.Error("tunnel counts out of range accepted")
	}
	fl := Plan{Tunnels: 3, Line: line}.Flows(7, 9000)
	for i, f := range fl {
		if f.Src != (Plan{Tunnels: 3, Line: line}).Source(i%3) || f.Dst != line.ClientA4 || f.DstPort != 9000 {
			t.Errorf("flow %d: %v", i, f)
		}
	}
}

func TestReadMemory(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil || m.RSS == 0 || m.RSSAnon == 0 || m.RSSAnon > m.RSS {
		t.Errorf("%+v %v", m, err)
	}
	if _, err := ReadMemory(-1); err == nil {
		t.Error("memory of pid -1")
	}
}

func TestDropsSince(t *testing.T) {
	a := map[string]map[string]uint64{"gw-a": {"x": 1, "y": 5}}
	b := map[string]map[string]uint64{"gw-a": {"x": 1, "y": 7, "z": 2}, "gw-b": {"x": 0}}
	d := DropsSince(a, b)
	if len(d) != 1 || d["gw-a"]["y"] != 2 || d["gw-a"]["z"] != 2 || len(d["gw-a"]) != 2 {
		t.Errorf("%v", d)
	}
	if DropsSince(b, b) != nil {
		t.Error("no movement should be nil")
	}
}

func TestWireGuardKey(t *testing.T) {
	priv, pub, err := wgKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{priv, pub} {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			t.Errorf("key %q: %v", k, err)
		}
	}
}
