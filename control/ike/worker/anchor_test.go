package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/dataplane/anchor"
)

func anchoring(t *testing.T, perIKESA bool) *worker.Anchoring {
	t.Helper()
	var hk anchor.HashKey
	hk[0] = 42
	fn, err := anchor.NewFunction(hk, 256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fn.Codec()
	if err != nil {
		t.Fatal(err)
	}
	return &worker.Anchoring{Fn: fn, Codec: c, PerIKESA: perIKESA}
}

// checkAnchored checks that n's IKE SA carries want as its anchor, in our
// SPI too, and that its Child SAs and policies were installed on it.
func checkAnchored(t *testing.T, n *iketest.Node, ike sa.IKESA, want uint16) {
	t.Helper()
	a := n.Anchors
	if !ike.Anchored || ike.Logical != want {
		t.Fatalf("%s: IKE SA anchored %v on %d, want on %d", n.Name, ike.Anchored, ike.Logical, want)
	}
	if got := a.Codec.LogicalIKE(ike.OurSPI()); got != want {
		t.Errorf("%s: our SPI %016x carries logical SPU %d, want %d", n.Name, ike.OurSPI(), got, want)
	}
	for id, s := range n.DP.SAs {
		if s.Logical == nil || *s.Logical != int(want) {
			t.Errorf("%s: SA %08x/%s installed on %v, want logical SPU %d", n.Name, id.SPI, id.Dir, s.Logical, want)
		}
	}
	for id, p := range n.DP.Policies {
		if p.Logical == nil || *p.Logical != int(want) {
			t.Errorf("%s: policy %d installed on %v, want logical SPU %d", n.Name, id, p.Logical, want)
		}
	}
}

// With ike_anchor ike-sa, a responder anchors a new IKE SA by the hash of
// the endpoints and the initiator's SPI; the initiator anchors by the
// endpoints. Each IKE SA's SPI carries its anchor, its Child SAs and
// policy go there, and a rekeyed IKE SA keeps it.
func TestAnchorPerIKESA(t *testing.T) {
	mod := lifetimes("        rekey_time: 10s\n        life_time: 30s\n        rand_time: 0s\n",
		"    rekey_time: 30s\n    over_time: 10s\n    rand_time: 0s\n")
	s, na, nb := pair(t, mod, mod)
	na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, true)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ia, ib := na.Worker.List()[0], nb.Worker.List()[0]
	checkAnchored(t, na, ia, na.Anchors.Fn.Logical(addrA, addrB))
	lg := nb.Anchors.Fn.LogicalFirst(addrB, addrA, ib.SPIi)
	checkAnchored(t, nb, ib, lg)

	s.RunFor(66 * time.Second)
	converged(t, na, nb, 1)
	ib2 := nb.Worker.List()[0]
	if ib2.SPIi == ib.SPIi {
		t.Fatal("IKE SA not rekeyed")
	}
	checkAnchored(t, nb, ib2, lg)
}

// Many IKE SAs from one peer land on many logical SPUs with ike-sa, and
// all on the endpoints' one with tunnel.
func TestAnchorSpreadsOnePeer(t *testing.T) {
	for _, perIKESA := range []bool{false, true} {
		s, na, nb := pair(t, nil, nil)
		na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, perIKESA)
		if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 16, Window: 4}, time.Minute); p.Established != 16 {
			t.Fatalf("load: %+v", p)
		}
		seen := map[uint16]bool{}
		for _, ike := range nb.Worker.List() {
			if ike.State != sa.Established {
				t.Fatalf("IKE SA %d is %s", ike.UniqueID, ike.State)
			}
			seen[ike.Logical] = true
		}
		if n := len(nb.Worker.List()); n != 16 {
			t.Fatalf("ike-sa %v: %d IKE SAs on the responder, want 16", perIKESA, n)
		}
		if perIKESA && len(seen) < 8 {
			t.Errorf("ike-sa: 16 IKE SAs on %d logical SPUs", len(seen))
		}
		if !perIKESA && len(seen) != 1 {
			t.Errorf("tunnel: 16 IKE SAs on %d logical SPUs, want 1", len(seen))
		}
	}
}

// Two sites behind one address, each with its own identity, under one
// responder connection whose remote id is a pattern: the second IKE SA
// is not taken for a reauthentication of the first, and each tunnel gets
// its outbound SA at once (it was held back, waiting for the "old" IKE SA
// to go, which never would).
func TestSitesBehindOneAddressAreNotReauths(t *testing.T) {
	conn := func(name, id string) string {
		return fmt.Sprintf(`  %s:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    local:
      auth: psk
      id: %q
    remote:
      auth: psk
      id: gw-b.example
    children:
      net:
        local_ts: 198.18.1.0/24
        remote_ts: 198.18.2.0/24
        esp_proposals: aes128gcm16
`, name, addrA, addrB, id)
	}
	secrets := "ike:\n  a:\n    id: [site1.example, site2.example, gw-b.example]\n    secret: \"correct horse battery staple\"\n"
	ca := iketest.WriteConfig(t, "retransmit_timeout: 4s\nconnections:\n"+conn("tun1", "site1.example")+conn("tun2", "site2.example"), secrets)
	cb := iketest.WriteConfig(t, fmt.Sprintf(`retransmit_timeout: 4s
connections:
  tun:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    unique: never
    local:
      auth: psk
      id: gw-b.example
    remote:
      auth: psk
      id: "*.example"
    children:
      net:
        local_ts: 198.18.2.0/24
        remote_ts: 198.18.1.0/24
        esp_proposals: aes128gcm16
`, addrB, addrA), secrets)
	s, na, nb := newPair(t, ca, cb)
	for _, c := range []string{"tun1", "tun2"} {
		done := false
		if err := na.Worker.Initiate(c, "", func(err error) {
			if err != nil {
				t.Errorf("%s: %v", c, err)
			}
			done = true
		}); err != nil {
			t.Fatal(err)
		}
		if !s.RunUntil(10*time.Second, func() bool { return done }) {
			t.Fatalf("%s: not established", c)
		}
	}
	l := nb.Worker.List()
	if len(l) != 2 {
		t.Fatalf("gw-b: %d IKE SAs, want 2", len(l))
	}
	for _, ike := range l {
		for _, ch := range ike.Children {
			if ch.OutPending || ch.Replaces != 0 {
				t.Errorf("gw-b: Child SA of %s taken for a reauthentication (outbound held %v, replaces %08x)", ike.RemoteID, ch.OutPending, ch.Replaces)
			}
		}
	}
	if sas, _ := nb.DP.Counts(); sas != 4 {
		t.Errorf("gw-b: %d SAs in the data plane, want 4 (two tunnels, both directions)", sas)
	}
}

// With an anchor per IKE SA, the IKE SA a peer set up with us may live on
// another worker than the one that initiates to that peer: the initiator
// must not send INITIAL_CONTACT, which would make the peer drop the live
// IKE SA. The daemon's count of IKE SAs by peer address says so, in one
// lookup.
func TestInitialContactSpansWorkers(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	nb.SharedPeers = &worker.PeerCounts{}
	if err := nb.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// gw-b's IKE SA with gw-a moves to its second worker.
	first := nb.Worker.List()[0]
	ike, err := nb.Worker.Detach(first.OurSPI())
	if err != nil {
		t.Fatal(err)
	}
	other := worker.New(1, nb.Env())
	if err := other.Restore(ike); err != nil {
		t.Fatal(err)
	}
	if got := nb.SharedPeers.Get(addrA); got != 1 || nb.Worker.Len() != 0 {
		t.Fatalf("IKE SAs with gw-a: %d counted, %d on the first worker; want 1 and 0", got, nb.Worker.Len())
	}
	// gw-b's first worker initiates to gw-a.
	var result error
	called := false
	if err := nb.Worker.Initiate("tun", "", func(err error) { result, called = err, true }); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return called }) || result != nil {
		t.Fatalf("gw-b's initiation: done %v, %v", called, result)
	}
	if got := na.Counters.Get(stats.InitialContacts); got != 0 {
		t.Errorf("gw-a dropped %d IKE SAs on an INITIAL_CONTACT from gw-b, which holds one with it on another worker", got)
	}
	if n := len(na.Worker.List()); n != 2 {
		t.Errorf("gw-a holds %d IKE SAs, want both", n)
	}
	if got := nb.SharedPeers.Get(addrA); got != 2 {
		t.Errorf("IKE SAs with gw-a counted %d, want 2 (one on each worker)", got)
	}
	// Gone from the other worker, gone from the count.
	if _, err := other.Detach(ike.OurSPI()); err != nil {
		t.Fatal(err)
	}
	if got := nb.SharedPeers.Get(addrA); got != 1 {
		t.Errorf("IKE SAs with gw-a counted %d after one left, want 1", got)
	}
}

// twoWorkers gives n a second IKE worker, with ike_anchor ike-sa: one
// peer's IKE SAs spread over both.
func twoWorkers(t *testing.T, n *iketest.Node) {
	t.Helper()
	n.Anchors = anchoring(t, true)
	n.SharedPeers = &worker.PeerCounts{}
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	n.AddWorker()
}

// listAll is the IKE SAs of every worker of n.
func listAll(n *iketest.Node) []sa.IKESA {
	var l []sa.IKESA
	for _, w := range n.Workers {
		l = append(l, w.List()...)
	}
	return l
}

// TestReauthPredecessorOnAnotherWorker: with ike_anchor ike-sa the IKE
// SA that reauthenticates a tunnel lands on either of gw-b's two workers,
// whichever the old one is on. Across workers as on one, it is make before
// break: gw-b's new Child SA sends only once the old IKE SA is deleted
// (gw-a then receives through the new one), the old Child SA's policy and
// SAs go only after the new one's are in, and a flow each way loses
// nothing through ten reauthentications (it lost those gw-b sent in the 5
// ms before gw-a had the new inbound SA, when the new Child SA sent at once
// with a policy of its own).
func TestReauthPredecessorOnAnotherWorker(t *testing.T) {
	s, na, nb := pair(t, lifetimes("", "    rekey_time: 0s\n    reauth_time: 20s\n    rand_time: 0s\n"),
		lifetimes("", "    rekey_time: 0s\n"))
	na.Anchors = anchoring(t, false)
	twoWorkers(t, nb)
	delay(s, 5*time.Millisecond)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ab, ba := flows(s, na, nb, time.Millisecond, 205*time.Second)
	s.RunFor(210 * time.Second)
	noLoss(t, ab, ba)
	if got := na.Counters.Get(stats.IKESAsReauthed); got != 10 {
		t.Errorf("%d reauthentications, want 10", got)
	}
	crossed := strings.Count(nb.Logs(), "child sa handed over to the reauthenticated IKE SA on another worker")
	if crossed == 0 {
		t.Fatal("no reauthentication crossed gw-b's workers: the test tested nothing")
	}
	t.Logf("%d of 10 reauthentications on the other worker of gw-b", crossed)
	l := listAll(nb)
	if len(l) != 1 || len(l[0].Children) != 1 {
		t.Fatalf("gw-b holds:\n%s", dumpIKE(l))
	}
	if ch := l[0].Children[0]; ch.OutPending || ch.State != sa.ChildInstalled || len(ch.PolicyIDs) != 1 {
		t.Errorf("gw-b's Child SA:\n%s", dumpIKE(l))
	}
	for _, n := range []*iketest.Node{na, nb} {
		if sas, pols := n.DP.Counts(); sas != 2 || pols != 1 {
			t.Errorf("%s: %d SAs and %d policies in the data plane, want 2 and 1", n.Name, sas, pols)
		}
	}
	if got := nb.Counters.Get(stats.InitialContacts); got != 0 {
		t.Errorf("gw-b took %d INITIAL_CONTACTs", got)
	}
}

// With ike_anchor ike-sa and a trap for the tunnel (start_action trap on
// gw-b), the IKE SAs gw-a initiates are anchored on the trap's logical SPU,
// whichever worker the hash with their SPI names, and their Child SAs take
// the trap over: they share its reqid and its policy sends through them,
// as on one worker, instead of a policy of their own on another SPU beside
// the trap's.
func TestTrapTakenOverAcrossWorkers(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	na.Anchors = anchoring(t, false)
	twoWorkers(t, nb)
	trap := nb.InstallTrap("tun", "net")
	elsewhere := 0
	for i := range 4 {
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		l := listAll(nb)
		if len(l) != 1 || len(l[0].Children) != 1 {
			t.Fatalf("gw-b holds:\n%s", dumpIKE(l))
		}
		ike, ch := l[0], l[0].Children[0]
		if nb.Anchors.Fn.LogicalFirst(addrB, addrA, ike.SPIi) != uint16(trap.Logical) {
			elsewhere++
		}
		if !ike.Anchored || int(ike.Logical) != trap.Logical || !ch.Trap || ch.ReqID != trap.ReqID {
			t.Errorf("setup %d: gw-b's IKE SA on logical SPU %d (trap's %d), Child SA trap %v reqid %d (trap's %d)", i, ike.Logical,
				trap.Logical, ch.Trap, ch.ReqID, trap.ReqID)
		}
		if sas, pols := nb.DP.Counts(); sas != 2 || pols != 1 {
			t.Errorf("setup %d: gw-b holds %d SAs and %d policies, want 2 and the trap's", i, sas, pols)
		}
		f := s.AddFlow(nb, na, "net", time.Millisecond, time.Millisecond, 50*time.Millisecond)
		s.RunFor(100 * time.Millisecond)
		noLoss(t, f)
		na.Worker.Terminate(worker.Target{Conn: "tun"}, nil)
		s.RunFor(time.Second)
		if sas, pols := nb.DP.Counts(); sas != 0 || pols != 1 {
			t.Errorf("setup %d, terminated: gw-b holds %d SAs and %d policies, want the trap's alone", i, sas, pols)
		}
	}
	if elsewhere == 0 {
		t.Fatal("every IKE SA's SPI hashed to the trap's logical SPU: the test tested nothing")
	}
}
