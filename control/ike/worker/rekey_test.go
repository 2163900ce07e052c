package worker_test

import (
	"bytes"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
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

// TestIKERekeyByTime: IKE rekey_time 30 s and Child rekey_time 10 s on
// both sides; over 65 s the IKE SA is rekeyed twice (once by each side),
// the Child SA moves to each new IKE SA and keeps being rekeyed there, the
// old IKE SAs are deleted, and the flows lose nothing.
func TestIKERekeyByTime(t *testing.T) {
	mod := lifetimes("        rekey_time: 10s\n        life_time: 30s\n        rand_time: 0s\n",
		"    rekey_time: 30s\n    over_time: 10s\n    rand_time: 0s\n")
	s, na, nb := pair(t, mod, mod)
	delay(s, 5*time.Millisecond)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first := na.Worker.List()[0]
	ab, ba := flows(s, na, nb, 5*time.Millisecond, 65*time.Second)
	s.RunFor(66 * time.Second)
	noLoss(t, ab, ba)
	ia, ib := na.Counters.Get(stats.IKERekeysInitiated), nb.Counters.Get(stats.IKERekeysInitiated)
	t.Logf("IKE rekeys initiated: %s %d, %s %d; child rekeys %d + %d", na.Name, ia, nb.Name, ib,
		na.Counters.Get(stats.ChildRekeysInitiated), nb.Counters.Get(stats.ChildRekeysInitiated))
	if ia+ib < 2 || ia == 0 || ib == 0 {
		t.Errorf("IKE rekeys initiated: %d by %s, %d by %s; want 2, one each", ia, na.Name, ib, nb.Name)
	}
	if c := na.Counters.Get(stats.ChildRekeysInitiated) + nb.Counters.Get(stats.ChildRekeysInitiated); c < 5 {
		t.Errorf("%d child rekeys", c)
	}
	converged(t, na, nb, 1)
	cur := na.Worker.List()[0]
	if cur.SPIi == first.SPIi || cur.UniqueID == first.UniqueID {
		t.Errorf("IKE SA not replaced: %s", cur.SPIs())
	}
	if !strings.Contains(na.Logs(), "msg=\"IKE SA rekeyed\"") || !strings.Contains(na.Logs(), "old_spis=") {
		t.Errorf("no IKE rekey log line with old and new SPIs")
	}
	if len(na.Persist) != 1 || len(nb.Persist) != 1 {
		t.Errorf("persisted IKE SAs: %d / %d, want 1 each", len(na.Persist), len(nb.Persist))
	}
}

// collide starts a rekey of the Child SA (or of the IKE SA) on both sides
// at the same instant; with a network delay the requests cross.
func collide(t *testing.T, na, nb *iketest.Node, ike bool) {
	t.Helper()
	for _, n := range []*iketest.Node{na, nb} {
		if got := n.Worker.Rekey(worker.Target{Conn: "tun"}, ike); got != 1 {
			t.Fatalf("%s: %d rekeys started", n.Name, got)
		}
	}
}

// TestChildRekeyCollision: both sides rekey the Child SA at once (RFC 7296
// 2.8.1). Over many seeds (so that either side's nonce is the lowest) the
// tunnel ends with exactly one Child SA pair, the winner's, and no packet
// is lost on the way.
func TestChildRekeyCollision(t *testing.T) { childRekeyCollision(t, 0) }

// TestChildRekeyCollisionAsync is TestChildRekeyCollision with data
// planes that take the installs without the workers waiting: a rekey's
// response that crosses the peer's rekey whose install is pending waits
// for our retransmission, and the collision is settled as when waited
// for.
func TestChildRekeyCollisionAsync(t *testing.T) { childRekeyCollision(t, 30*time.Millisecond) }

// childRekeyCollision runs the collision over the seeds, with installs
// that take slow (0: waited for).
func childRekeyCollision(t *testing.T, slow time.Duration) {
	wins := map[string]int{}
	deferred := uint64(0)
	for seed := range 16 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			na.Seed(byte(2*seed + 10))
			nb.Seed(byte(2*seed + 11))
			if slow > 0 {
				na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, true)
				// b's installs take longer: a's answer to its rekey crosses b's
				// install of a's.
				na.InstallDelay, nb.InstallDelay = slow, 4*slow
			}
			defer func() {
				deferred += na.Counters.Get(stats.ResponsesDeferred) + nb.Counters.Get(stats.ResponsesDeferred)
				if slow > 0 && na.Counters.Get(stats.InstallsAsync)+nb.Counters.Get(stats.InstallsAsync) < 2 {
					t.Errorf("installs without waiting: %d + %d", na.Counters.Get(stats.InstallsAsync), nb.Counters.Get(stats.InstallsAsync))
				}
			}()
			delay(s, 10*time.Millisecond)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ab, ba := flows(s, na, nb, 10*time.Millisecond, 8*time.Second)
			s.RunFor(time.Second)
			collide(t, na, nb, false)
			s.RunFor(8 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			ra, rb := na.Counters.Get(stats.ChildRekeysInitiated), nb.Counters.Get(stats.ChildRekeysInitiated)
			if ra+rb != 1 {
				t.Errorf("winning rekeys: %d + %d, want exactly one", ra, rb)
			}
			if na.Counters.Get(stats.ChildRekeyCollisions) != 1 || nb.Counters.Get(stats.ChildRekeyCollisions) != 1 {
				t.Errorf("collisions counted: %d / %d", na.Counters.Get(stats.ChildRekeyCollisions), nb.Counters.Get(stats.ChildRekeyCollisions))
			}
			if ra == 1 {
				wins[na.Name]++
			} else {
				wins[nb.Name]++
			}
		})
	}
	if len(wins) != 2 {
		t.Errorf("winners %v: the seeds did not exercise both sides", wins)
	}
	if slow > 0 && deferred == 0 {
		t.Errorf("no response crossed a pending install: the test did not exercise it")
	}
}

// TestIKERekeyCollision: both sides rekey the IKE SA at once (RFC 7296
// 2.8.2): one new IKE SA remains, with the Child SA, and the redundant and
// old ones are deleted.
func TestIKERekeyCollision(t *testing.T) {
	wins := map[string]int{}
	for seed := range 16 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			na.Seed(byte(2*seed + 10))
			nb.Seed(byte(2*seed + 11))
			delay(s, 10*time.Millisecond)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			first := na.Worker.List()[0]
			ab, ba := flows(s, na, nb, 10*time.Millisecond, 8*time.Second)
			s.RunFor(time.Second)
			collide(t, na, nb, true)
			s.RunFor(8 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			if cur := na.Worker.List()[0]; cur.SPIi == first.SPIi {
				t.Errorf("IKE SA not replaced")
			}
			ra, rb := na.Counters.Get(stats.IKERekeysInitiated), nb.Counters.Get(stats.IKERekeysInitiated)
			if ra+rb != 1 {
				t.Errorf("winning IKE rekeys: %d + %d, want exactly one", ra, rb)
			}
			if na.Counters.Get(stats.IKERekeyCollisions) != 1 || nb.Counters.Get(stats.IKERekeyCollisions) != 1 {
				t.Errorf("collisions counted: %d / %d", na.Counters.Get(stats.IKERekeyCollisions), nb.Counters.Get(stats.IKERekeyCollisions))
			}
			if ra == 1 {
				wins[na.Name]++
			} else {
				wins[nb.Name]++
			}
		})
	}
	if len(wins) != 2 {
		t.Errorf("winners %v: the seeds did not exercise both sides", wins)
	}
}

// chaos is a network that delays every datagram by 1..40 ms (so that
// later ones overtake earlier ones), drops some and duplicates some,
// until calm is set.
type chaos struct {
	r    *mrand.Rand
	calm bool
	drop float64
}

func (c *chaos) fate(manager.Datagram, *iketest.Node) iketest.Fate {
	if c.calm {
		return iketest.Fate{Delay: 10 * time.Millisecond}
	}
	f := iketest.Fate{Delay: time.Duration(1+c.r.IntN(40)) * time.Millisecond}
	f.Drop = c.r.Float64() < c.drop
	f.Duplicate = c.r.Float64() < 0.05
	return f
}

// TestRekeyChaos runs crossing exchanges over a network that reorders,
// drops and duplicates IKE messages, for many seeds, and checks that the
// tunnel always settles to one consistent state (converged) without
// losing a packet of the flows while the Child SAs change:
//
//	child            both sides rekey the Child SA
//	ike              both sides rekey the IKE SA
//	child-vs-ike     one rekeys the Child SA, the other the IKE SA
//	rekey-vs-create  one rekeys a Child SA, the other creates another
//	rekey-vs-delete  one rekeys the Child SA, the other deletes it
//	ike-vs-delete    one rekeys the IKE SA, the other deletes it
func TestRekeyChaos(t *testing.T) {
	seeds := *chaosSeeds
	if testing.Short() {
		seeds = 8
	}
	for _, sc := range []string{"child", "ike", "child-vs-ike", "rekey-vs-create", "rekey-vs-delete", "ike-vs-delete"} {
		t.Run(sc, func(t *testing.T) {
			for seed := range seeds {
				t.Run(fmt.Sprint(seed), func(t *testing.T) { chaosRun(t, sc, seed) })
			}
		})
	}
}

func chaosRun(t *testing.T, sc string, seed int) {
	s, na, nb := pair(t, twoChildren, twoChildren)
	na.Seed(byte(3*seed + 20))
	nb.Seed(byte(3*seed + 21))
	c := &chaos{r: mrand.New(mrand.NewPCG(uint64(seed), 7)), calm: true, drop: 0.15}
	s.Filter = c.fate
	var err error
	called := false
	if err := na.Worker.Initiate("tun", "net", func(e error) { err, called = e, true }); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return called }) || err != nil {
		t.Fatalf("not established: %v", err)
	}
	var fs []*iketest.Flow
	survives := sc != "rekey-vs-delete" && sc != "ike-vs-delete"
	if survives {
		ab, ba := flows(s, na, nb, 10*time.Millisecond, 40*time.Second)
		ab.Child, ba.Child = "net", "net"
		fs = append(fs, ab, ba)
	}
	s.RunFor(time.Second)
	c.calm = false
	switch sc {
	case "child":
		collide(t, na, nb, false)
	case "ike":
		collide(t, na, nb, true)
	case "child-vs-ike":
		na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
		nb.Worker.Rekey(worker.Target{Conn: "tun"}, true)
	case "rekey-vs-create":
		na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
		if err := nb.Worker.Initiate("tun", "second", nil); err != nil {
			t.Fatal(err)
		}
	case "rekey-vs-delete":
		na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
		nb.Worker.Terminate(worker.Target{Conn: "tun", Child: "net"}, nil)
	case "ike-vs-delete":
		na.Worker.Rekey(worker.Target{Conn: "tun"}, true)
		nb.Worker.Terminate(worker.Target{Conn: "tun"}, nil)
	}
	s.RunFor(15 * time.Second)
	c.calm = true
	s.RunFor(45 * time.Second)
	noLoss(t, fs...)
	switch sc {
	case "rekey-vs-delete":
		// The Child SA is gone on both sides; the IKE SA stays.
		for _, n := range []*iketest.Node{na, nb} {
			l := live(n)
			if len(l) != 1 || len(l[0].Children) != 0 {
				t.Errorf("%s after the delete:\n%s", n.Name, dumpIKE(n.Worker.List()))
			}
		}
		noSAs(t, na, nb)
	case "ike-vs-delete":
		for _, n := range []*iketest.Node{na, nb} {
			if l := n.Worker.List(); len(l) != 0 {
				t.Errorf("%s after the delete:\n%s", n.Name, dumpIKE(l))
			}
		}
		noSAs(t, na, nb)
	case "rekey-vs-create":
		converged(t, na, nb, 2)
	default:
		converged(t, na, nb, 1)
	}
	if t.Failed() {
		t.Logf("seed %d: sent %d datagrams", seed, len(s.Sent))
	}
}

// chaosSeeds is how many seeds TestRekeyChaos runs per scenario (raise it
// to hunt for rare orders).
var chaosSeeds = flag.Int("chaos-seeds", 24, "seeds per scenario of TestRekeyChaos")
