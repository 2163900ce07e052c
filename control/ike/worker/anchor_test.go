package worker_test

import (
	"fmt"
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
