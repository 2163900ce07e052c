package worker_test

import (
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/sa"
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
