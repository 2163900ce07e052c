package worker_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
)

var (
	addrA = netip.MustParseAddr("198.18.0.1")
	addrB = netip.MustParseAddr("198.18.0.2")
)

// confOpts shape one side's configuration.
type confOpts struct {
	local, remote         netip.Addr
	localID, remoteID     string
	ike, esp              string
	localTS, remoteTS     string
	psk                   string
	extra, childExtra     string
	secretsIDs            string
	retransmit            string
	cookieThreshold, peer int
}

func (o confOpts) yaml() string {
	if o.ike == "" {
		o.ike = "aes128gcm16-prfsha256-x25519"
	}
	if o.esp == "" {
		o.esp = "aes128gcm16"
	}
	if o.localTS == "" {
		o.localTS = "198.18.1.0/24"
	}
	if o.remoteTS == "" {
		o.remoteTS = "198.18.2.0/24"
	}
	if o.retransmit == "" {
		o.retransmit = "retransmit_timeout: 4s\n"
	}
	g := o.retransmit
	if o.cookieThreshold != 0 {
		g += fmt.Sprintf("cookie_threshold: %d\n", o.cookieThreshold)
	}
	if o.peer != 0 {
		g += fmt.Sprintf("block_threshold: %d\n", o.peer)
	}
	return g + fmt.Sprintf(`connections:
  tun:
    local_addrs: %s
    remote_addrs: %s
    proposals: %s
%s    local:
      auth: psk
      id: %q
    remote:
      auth: psk
      id: %q
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
%s`, o.local, o.remote, o.ike, o.extra, o.localID, o.remoteID, o.localTS, o.remoteTS, o.esp, o.childExtra)
}

func (o confOpts) secrets() string {
	psk := o.psk
	if psk == "" {
		psk = "correct horse battery staple"
	}
	ids := o.secretsIDs
	if ids == "" {
		ids = fmt.Sprintf("[%q, %q]", o.localID, o.remoteID)
	}
	return fmt.Sprintf("ike:\n  a:\n    id: %s\n    secret: %q\n", ids, psk)
}

// pair builds two gateways whose options differ only by what mod changes.
func pair(t *testing.T, modA, modB func(*confOpts)) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	t.Helper()
	return pairTB(t, modA, modB)
}

func pairTB(t testing.TB, modA, modB func(*confOpts)) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	t.Helper()
	ca, cb := configs(t, modA, modB)
	return newPair(t, ca, cb)
}

// configs loads the two sides' configurations.
func configs(t testing.TB, modA, modB func(*confOpts)) (*config.Config, *config.Config) {
	a := confOpts{local: addrA, remote: addrB, localID: "gw-a.example", remoteID: "gw-b.example"}
	b := confOpts{local: addrB, remote: addrA, localID: "gw-b.example", remoteID: "gw-a.example",
		localTS: "198.18.2.0/24", remoteTS: "198.18.1.0/24"}
	if modA != nil {
		modA(&a)
	}
	if modB != nil {
		modB(&b)
	}
	return iketest.WriteConfig(t, a.yaml(), a.secrets()), iketest.WriteConfig(t, b.yaml(), b.secrets())
}

// newPair builds two gateways with loaded configurations (which they only
// read, so that fuzzing can share them).
func newPair(t testing.TB, ca, cb *config.Config) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	s := iketest.NewSim(t)
	na := s.AddNode("gw-a", addrA, ca)
	nb := s.AddNode("gw-b", addrB, cb)
	t.Cleanup(func() {
		for _, n := range []*iketest.Node{na, nb} {
			if err := n.Worker.IndexError(); err != nil {
				t.Errorf("%s: %v", n.Name, err)
			}
		}
	})
	return s, na, nb
}

// initiate starts "tun" on n and runs until done was called.
func initiate(t *testing.T, s *iketest.Sim, n *iketest.Node, d time.Duration) error {
	t.Helper()
	var result error
	called := false
	if err := n.Worker.Initiate("tun", "", func(err error) { result, called = err, true }); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	if !s.RunUntil(d, func() bool { return called }) {
		t.Fatalf("initiation did not finish within %v", d)
	}
	return result
}

// established checks one IKE SA with one installed Child SA on each side,
// with matching SPIs and keys, and the SAs and policy in each data plane.
func established(t *testing.T, na, nb *iketest.Node) {
	t.Helper()
	la, lb := na.Worker.List(), nb.Worker.List()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("IKE SAs: %d on a, %d on b, want 1 each", len(la), len(lb))
	}
	ia, ib := la[0], lb[0]
	if ia.State != sa.Established || ib.State != sa.Established {
		t.Fatalf("states %s / %s", ia.State, ib.State)
	}
	if ia.SPIi != ib.SPIi || ia.SPIr != ib.SPIr {
		t.Fatalf("IKE SPIs differ: %s / %s", ia.SPIs(), ib.SPIs())
	}
	if len(ia.Children) != 1 || len(ib.Children) != 1 {
		t.Fatalf("child SAs: %d / %d", len(ia.Children), len(ib.Children))
	}
	ca, cb := ia.Children[0], ib.Children[0]
	if ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn {
		t.Fatalf("child SPIs do not pair: a %s, b %s", ca.SPIs(), cb.SPIs())
	}
	for _, x := range []struct {
		n     *iketest.Node
		in    uint32
		out   uint32
		other *iketest.Node
	}{{na, ca.SPIIn, ca.SPIOut, nb}, {nb, cb.SPIIn, cb.SPIOut, na}} {
		in, ok1 := x.n.DP.Find(x.in, "in")
		out, ok2 := x.n.DP.Find(x.out, "out")
		if !ok1 || !ok2 {
			t.Fatalf("%s: SAs not in the data plane", x.n.Name)
		}
		peerIn, _ := x.other.DP.Find(x.out, "in")
		if string(out.EncKey) != string(peerIn.EncKey) || len(out.EncKey) == 0 {
			t.Fatalf("%s: outbound key differs from the peer's inbound key", x.n.Name)
		}
		_ = in
		if _, pol := x.n.DP.Counts(); pol != 1 {
			t.Fatalf("%s: %d policies, want 1", x.n.Name, pol)
		}
	}
}

func noSAs(t *testing.T, nodes ...*iketest.Node) {
	t.Helper()
	for _, n := range nodes {
		if sas, _ := n.DP.Counts(); sas != 0 {
			t.Errorf("%s: %d SAs left in the data plane", n.Name, sas)
		}
		for _, p := range n.DP.Policies {
			if !strings.HasSuffix(p.Name, "/trap") {
				t.Errorf("%s: policy %d (%s) left in the data plane", n.Name, p.ID, p.Name)
			}
		}
	}
}

func TestEstablishPSK(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := na.Counters.Get(stats.IKESAsEstablished); got != 1 {
		t.Errorf("established counter %d", got)
	}
	if s.Clock.Now().Sub(iketest.Epoch) != 0 {
		t.Errorf("took %v of fake time without loss", s.Clock.Now().Sub(iketest.Epoch))
	}
}

// BenchmarkEstablish measures the CPU cost of one IKE_SA_INIT + IKE_AUTH
// with a Child SA, both ends, over the in-memory network (x25519, PSK,
// AES-GCM): what a tunnel setup costs iked apart from the data plane.
func BenchmarkEstablish(b *testing.B) {
	ca, cb := configs(b, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		s, na, _ := newPair(b, ca, cb)
		s.T = b
		if err := na.Worker.Initiate("tun", "", nil); err != nil {
			b.Fatal(err)
		}
		s.RunFor(time.Second)
		if na.Counters.Get(stats.ChildSAsInstalled) != 1 {
			b.Fatal("not established")
		}
	}
}
