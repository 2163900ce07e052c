package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
)

// TestRestartRestoresState restarts each side from its persisted state:
// liveness checks, new Child SAs and deletion keep working, the data plane
// is not touched by the restart.
func TestRestartRestoresState(t *testing.T) {
	for _, side := range []string{"initiator", "responder"} {
		t.Run(side, func(t *testing.T) {
			dpd := func(o *confOpts) { o.extra = "    dpd_delay: 10s\n"; twoChildren(o) }
			s, na, nb := pair(t, dpd, dpd)
			if err := na.Worker.Initiate("tun", "net", nil); err != nil {
				t.Fatal(err)
			}
			s.RunFor(15 * time.Second) // a DPD exchange each way, message IDs move
			if len(na.Persist) != 1 || len(nb.Persist) != 1 {
				t.Fatalf("persisted %d / %d IKE SAs", len(na.Persist), len(nb.Persist))
			}
			for _, b := range na.Persist {
				if strings.Contains(string(b), "correct horse") {
					t.Fatal("the PSK reached the state")
				}
			}
			n := na
			if side == "responder" {
				n = nb
			}
			ops := len(n.DP.Ops)
			if err := n.Restart(); err != nil {
				t.Fatal(err)
			}
			if len(n.DP.Ops) != ops {
				t.Errorf("restore touched the data plane: %v", n.DP.Ops[ops:])
			}
			s.RunFor(35 * time.Second)
			if na.Counters.Failures(stats.DPDTimeout)+nb.Counters.Failures(stats.DPDTimeout) != 0 {
				t.Fatalf("liveness checks failed after the restart")
			}
			if na.Counters.Failures(stats.InvalidMessageID)+nb.Counters.Failures(stats.InvalidMessageID) != 0 {
				t.Errorf("message IDs out of step after the restart")
			}
			// A new Child SA over the restored IKE SA, from the restarted side.
			if err := initiateChild(t, s, n, "second"); err != nil {
				t.Fatal(err)
			}
			for _, x := range []*iketest.Node{na, nb} {
				if l := x.Worker.List(); len(l) != 1 || len(l[0].Children) != 2 {
					t.Fatalf("%s: after CREATE_CHILD_SA: %+v", x.Name, l)
				}
			}
			if err := terminateIKE(t, s, n, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			s.RunFor(time.Second)
			noSAs(t, na, nb)
			if na.Worker.Len()+nb.Worker.Len() != 0 || len(na.Persist)+len(nb.Persist) != 0 {
				t.Errorf("left: %d/%d IKE SAs, %d/%d persisted", na.Worker.Len(), nb.Worker.Len(), len(na.Persist), len(nb.Persist))
			}
		})
	}
}

func initiateChild(t *testing.T, s *iketest.Sim, n *iketest.Node, child string) error {
	t.Helper()
	called := false
	var result error
	if err := n.Worker.Initiate("tun", child, func(err error) { result, called = err, true }); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return called }) {
		t.Fatal("child initiation did not finish")
	}
	return result
}

// TestRetransmissionAfterRestart: the response to the last request is
// persisted, so a retransmission that arrives after a restart is answered.
func TestRetransmissionAfterRestart(t *testing.T) {
	s, na, nb := pair(t, twoChildren, twoChildren)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Drop b's response to a's DELETE of "second", restart b, let a
	// retransmit.
	dropped := false
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if from == nb && !dropped {
			dropped = true
			return iketest.Fate{Drop: true}
		}
		return iketest.Fate{}
	}
	na.Worker.Terminate(worker.Target{Conn: "tun", Child: "second"}, nil)
	s.RunFor(100 * time.Millisecond)
	if !dropped {
		t.Fatal("nothing dropped")
	}
	if err := nb.Restart(); err != nil {
		t.Fatal(err)
	}
	s.RunFor(10 * time.Second)
	if nb.Counters.Get(stats.CachedResponses) != 1 {
		t.Errorf("cached responses %d", nb.Counters.Get(stats.CachedResponses))
	}
	for _, x := range []*iketest.Node{na, nb} {
		l := x.Worker.List()
		if len(l) != 1 || len(l[0].Children) != 1 || l[0].State != sa.Established {
			t.Errorf("%s: %+v", x.Name, l)
		}
	}
}

// TestChildReplacement: a Child SA reaching its rekey time is replaced by
// a new one before the old one is deleted; the policy carries on.
func TestChildReplacement(t *testing.T) {
	short := func(o *confOpts) { o.childExtra = "        rekey_time: 60s\n        life_time: 90s\n" }
	s, na, nb := pair(t, short, short)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	old := na.Worker.List()[0].Children[0]
	var policy uint32
	for id := range na.DP.Policies {
		policy = id
	}
	for range 3 {
		s.RunFor(61 * time.Second)
		for _, x := range []*iketest.Node{na, nb} {
			l := x.Worker.List()
			if len(l) != 1 || len(l[0].Children) != 1 {
				t.Fatalf("%s: %+v", x.Name, l)
			}
			if sas, pols := x.DP.Counts(); sas != 2 || pols != 1 {
				t.Fatalf("%s: %d SAs, %d policies", x.Name, sas, pols)
			}
		}
	}
	cur := na.Worker.List()[0].Children[0]
	if cur.SPIIn == old.SPIIn || cur.ReqID != old.ReqID {
		t.Errorf("child not replaced in place: old %s reqid %d, now %s reqid %d", old.SPIs(), old.ReqID, cur.SPIs(), cur.ReqID)
	}
	if _, ok := na.DP.Policies[policy]; !ok {
		t.Errorf("the policy was replaced, not carried over")
	}
	if na.Counters.Get(stats.ChildSAsInstalled) < 3 {
		t.Errorf("installed %d", na.Counters.Get(stats.ChildSAsInstalled))
	}
}

// TestInitialContact: a peer that lost its state (a restart without the
// state file) comes back with INITIAL_CONTACT, and the responder drops
// the IKE SAs it still had with it, Child SAs included.
func TestInitialContact(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	na.Persist = map[uint64][]byte{}
	if err := na.Restart(); err != nil {
		t.Fatal(err)
	}
	na.DP = iketest.NewDataPlane(0xd0000000)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := nb.Counters.Get(stats.InitialContacts); got != 1 {
		t.Errorf("%d IKE SAs removed on INITIAL_CONTACT, want 1", got)
	}
	if sas, pols := nb.DP.Counts(); sas != 2 || pols != 1 {
		t.Errorf("responder's data plane: %d SAs, %d policies", sas, pols)
	}
	// Losing the IKE SA again (destroyed without a DELETE) and starting
	// over sends INITIAL_CONTACT again; b ends with one IKE SA.
	na.Worker.Managers()[0].Destroy("test")
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := nb.Counters.Get(stats.InitialContacts); got != 2 || nb.Worker.Len() != 1 {
		t.Errorf("after a fresh start: %d removed, %d IKE SAs", got, nb.Worker.Len())
	}
}

// TestDetachRestore moves an IKE SA from one worker to another (the step
// of a migration between SPUs): the peer notices nothing, liveness checks
// and a delete work from the new worker.
func TestDetachRestore(t *testing.T) {
	dpd := func(o *confOpts) { o.extra = "    dpd_delay: 5s\n" }
	s, na, nb := pair(t, dpd, dpd)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	spi := nb.Worker.Managers()[0].IKE.OurSPI()
	ike, err := nb.Worker.Detach(spi)
	if err != nil {
		t.Fatal(err)
	}
	if nb.Worker.Len() != 0 {
		t.Fatal("still on the old worker")
	}
	nb.Worker = worker.New(1, nb.Env())
	if err := nb.Worker.Restore(ike); err != nil {
		t.Fatal(err)
	}
	s.RunFor(20 * time.Second)
	if na.Counters.Failures(stats.DPDTimeout)+nb.Counters.Failures(stats.UnknownSPI) != 0 {
		t.Fatalf("the move was noticed: %+v %+v", na.Counters.Snapshot(), nb.Counters.Snapshot())
	}
	if err := terminateIKE(t, s, nb, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	noSAs(t, na, nb)
	// A busy IKE SA is not detached.
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	m := na.Worker.Managers()[0]
	na.Worker.Terminate(worker.Target{Conn: "tun", Child: "net"}, nil)
	if _, err := na.Worker.Detach(m.IKE.OurSPI()); err != worker.ErrBusy {
		t.Errorf("detach of a busy IKE SA: %v", err)
	}
}
