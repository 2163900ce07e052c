package worker_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/dataplane/api"
)

// lifetimes sets a child's and a connection's lifetimes on both sides.
func lifetimes(child, conn string) func(*confOpts) {
	return func(o *confOpts) {
		o.childExtra += child
		o.extra += conn
	}
}

// live returns the IKE SAs of a node that are neither destroyed nor
// rekeyed.
func live(n *iketest.Node) []sa.IKESA {
	var out []sa.IKESA
	for _, i := range n.Worker.List() {
		if i.State == sa.Established {
			out = append(out, i)
		}
	}
	return out
}

// converged checks the end state every rekey must reach: one IKE SA per
// side with the same SPIs, and per child exactly one Child SA, installed,
// with both SAs in the data plane, paired with the peer's (SPIs and keys),
// the only outbound SA of its reqid, and one policy.
func converged(t *testing.T, na, nb *iketest.Node, children int) {
	t.Helper()
	la, lb := na.Worker.List(), nb.Worker.List()
	if len(la) != 1 || len(lb) != 1 {
		t.Fatalf("IKE SAs: %s has %d, %s has %d, want 1 each:\n%s\n%s", na.Name, len(la), nb.Name, len(lb), dumpIKE(la), dumpIKE(lb))
	}
	ia, ib := la[0], lb[0]
	if ia.State != sa.Established || ib.State != sa.Established || ia.SPIi != ib.SPIi || ia.SPIr != ib.SPIr {
		t.Fatalf("IKE SAs differ: %s %s / %s %s", ia.State, ia.SPIs(), ib.State, ib.SPIs())
	}
	if len(ia.Children) != children || len(ib.Children) != children {
		t.Fatalf("Child SAs: %d / %d, want %d:\n%s\n%s", len(ia.Children), len(ib.Children), children, dumpIKE(la), dumpIKE(lb))
	}
	for _, ca := range ia.Children {
		var cb *sa.ChildSA
		for _, x := range ib.Children {
			if x.SPIOut == ca.SPIIn {
				cb = x
			}
		}
		if cb == nil || cb.SPIIn != ca.SPIOut {
			t.Fatalf("child %s %s has no partner on %s:\n%s", ca.Name, ca.SPIs(), nb.Name, dumpIKE(lb))
		}
		for _, x := range []struct {
			n, peer *iketest.Node
			ch      *sa.ChildSA
		}{{na, nb, ca}, {nb, na, cb}} {
			ch := x.ch
			if ch.State != sa.ChildInstalled || ch.OutPending || ch.Redundant {
				t.Errorf("%s: child %s %s state %s out_pending %v redundant %v", x.n.Name, ch.Name, ch.SPIs(), ch.State, ch.OutPending, ch.Redundant)
			}
			out, ok := x.n.DP.ActiveOut(ch.ReqID)
			if !ok || out.SPI != ch.SPIOut {
				t.Errorf("%s: active outbound sa of reqid %d is %08x (%v), want %08x", x.n.Name, ch.ReqID, out.SPI, ok, ch.SPIOut)
			}
			in, ok := x.peer.DP.Find(ch.SPIOut, api.In)
			if !ok || !bytes.Equal(in.EncKey, out.EncKey) {
				t.Errorf("%s: peer %s has no inbound sa %08x with our key", x.n.Name, x.peer.Name, ch.SPIOut)
			}
		}
	}
	for _, n := range []*iketest.Node{na, nb} {
		sas, pols := n.DP.Counts()
		if want := 2 * children; sas != want {
			var l []string
			for k := range n.DP.SAs {
				l = append(l, fmt.Sprintf("%s %08x", k.Dir, k.SPI))
			}
			t.Errorf("%s: %d SAs in the data plane, want %d: %v", n.Name, sas, want, l)
		}
		if pols != children {
			t.Errorf("%s: %d policies, want %d", n.Name, pols, children)
		}
		for _, p := range n.DP.Policies {
			found := false
			for _, ch := range live(n)[0].Children {
				found = found || ch.ReqID == p.ReqID
			}
			if !found {
				t.Errorf("%s: policy %d of reqid %d has no Child SA", n.Name, p.ID, p.ReqID)
			}
		}
	}
}

func dumpIKE(l []sa.IKESA) string {
	var b strings.Builder
	for _, i := range l {
		fmt.Fprintf(&b, "  IKE %d %s %s msgid %d/%d draining %d\n", i.UniqueID, i.SPIs(), i.State, i.MsgIDOut, i.MsgIDIn, len(i.Draining))
		for _, c := range i.Children {
			fmt.Fprintf(&b, "    child %s #%d %s %s reqid %d out_pending %v redundant %v replaces %08x policies %v\n", c.Name, c.UniqueID, c.SPIs(),
				c.State, c.ReqID, c.OutPending, c.Redundant, c.Replaces, c.PolicyIDs)
		}
	}
	return b.String()
}

// flows starts a packet flow each way through the tunnel.
func flows(s *iketest.Sim, na, nb *iketest.Node, delay, d time.Duration) (ab, ba *iketest.Flow) {
	return s.AddFlow(na, nb, "", 2*time.Millisecond, delay, d), s.AddFlow(nb, na, "", 2*time.Millisecond, delay, d)
}

func noLoss(t *testing.T, fs ...*iketest.Flow) {
	t.Helper()
	for _, f := range fs {
		if len(f.Lost) > 0 || f.Received == 0 {
			t.Errorf("flow %s", f)
		} else {
			t.Logf("flow %s", f)
		}
	}
}

// delay gives every datagram a one-way delay.
func delay(s *iketest.Sim, d time.Duration) {
	s.Filter = func(manager.Datagram, *iketest.Node) iketest.Fate { return iketest.Fate{Delay: d} }
}

// TestChildRekeyByTime: both sides with rekey_time 10 s; over 65 s the
// Child SA is rekeyed at least five times, by both sides (the responder of
// a rekey installs first, so its timer fires first: they take turns), and
// a packet flow each way loses nothing.
func TestChildRekeyByTime(t *testing.T) {
	mod := lifetimes("        rekey_time: 10s\n        life_time: 30s\n        rand_time: 0s\n", "")
	s, na, nb := pair(t, mod, mod)
	delay(s, 5*time.Millisecond)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ab, ba := flows(s, na, nb, 5*time.Millisecond, 65*time.Second)
	s.RunFor(66 * time.Second)
	noLoss(t, ab, ba)
	ra, rb := na.Counters.Get(stats.ChildRekeysInitiated), nb.Counters.Get(stats.ChildRekeysInitiated)
	t.Logf("rekeys initiated: %s %d, %s %d; collisions %d/%d", na.Name, ra, nb.Name, rb,
		na.Counters.Get(stats.ChildRekeyCollisions), nb.Counters.Get(stats.ChildRekeyCollisions))
	if ra+rb < 5 || ra == 0 || rb == 0 {
		t.Errorf("rekeys initiated: %d by %s, %d by %s; want at least 5, by both", ra, na.Name, rb, nb.Name)
	}
	if got := na.Counters.Get(stats.ChildSAsRekeyed); got != ra+rb {
		t.Errorf("%s retired %d Child SAs, want %d", na.Name, got, ra+rb)
	}
	// At 66 s the last rekey (about 60 s) has drained.
	converged(t, na, nb, 1)
	for _, n := range []*iketest.Node{na, nb} {
		if !strings.Contains(n.Logs(), "msg=\"child sa rekeyed\"") || !strings.Contains(n.Logs(), "old_spi_in=") ||
			!strings.Contains(n.Logs(), "reason=rekey_time") {
			t.Errorf("%s: no rekey log line with old and new SPIs and the reason", n.Name)
		}
	}
}
