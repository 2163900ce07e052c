package worker_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
)

// asyncPair is a pair whose responder (b) takes child.add without its
// worker waiting, each answered delay after it was sent, and whose
// initiator (a) runs loads with an identity per IKE SA.
func asyncPair(t *testing.T, delay time.Duration) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	t.Helper()
	s, na, nb := pair(t, func(o *confOpts) {
		o.secretsIDs = `["gw-b.example", "*.load.example"]`
	}, func(o *confOpts) {
		o.remoteID = "*.load.example"
		o.secretsIDs = `["gw-b.example", "*.load.example"]`
		o.peer = 1000
	})
	na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, true)
	nb.InstallDelay = delay
	return s, na, nb
}

// While IKE_AUTH's Child SA goes into the data plane the worker serves
// other IKE SAs: three IKE_AUTHs wait for their installs at once, none is
// answered before its install is, a retransmission of each is dropped
// (no second install), and all are answered once the data plane is.
func TestAsyncInstallServesOthers(t *testing.T) {
	s, na, nb := asyncPair(t, 100*time.Millisecond)
	nb.HoldInstalls = true
	var res worker.LoadProgress
	done := false
	if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 3, Window: 3, Identity: "c%d.load.example"},
		func(p worker.LoadProgress) { res, done = p, true }); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return nb.InstallsInFlight() == 3 }) {
		t.Fatalf("installs in flight at the responder: %d, want 3 at once", nb.InstallsInFlight())
	}
	if installing := installing(nb); installing != 3 {
		t.Errorf("%d IKE SAs installing, want 3", installing)
	}
	if sas, _ := nb.DP.Counts(); sas != 0 {
		t.Errorf("%d SAs in the data plane before it answered", sas)
	}
	for _, ike := range na.Worker.List() {
		if ike.State == sa.Established {
			t.Errorf("initiator: IKE SA %d established before the responder's install was answered", ike.UniqueID)
		}
	}
	// The initiator retransmits IKE_AUTH (retransmit_timeout 4 s): each
	// copy is dropped, none installs again.
	s.RunFor(6 * time.Second)
	if got := nb.Counters.Get(stats.InstallRetransmits); got < 3 {
		t.Errorf("retransmissions absorbed: %d, want one per IKE SA at least", got)
	}
	if n := nb.InstallsInFlight(); n != 3 {
		t.Errorf("installs in flight after the retransmissions: %d, want 3", n)
	}
	nb.HoldInstalls = false
	if !s.RunUntil(time.Minute, func() bool { return done }) {
		t.Fatal("load did not finish")
	}
	if res.Established != 3 || res.Failed != 0 {
		t.Fatalf("load outcome %+v", res)
	}
	if got := nb.Counters.Get(stats.InstallsAsync); got != 3 {
		t.Errorf("installs without waiting: %d, want 3", got)
	}
	if got := nb.Counters.Get(stats.ChildSAsInstalled); got != 3 {
		t.Errorf("child SAs installed: %d, want 3", got)
	}
	if sas, pols := nb.DP.Counts(); sas != 6 || pols != 3 {
		t.Errorf("responder's data plane: %d SAs, %d policies, want 6 and 3", sas, pols)
	}
	for _, m := range nb.Worker.Managers() {
		ike := m.IKE
		if m.Installing() || ike.State != sa.Established || len(ike.Children) != 1 || ike.Children[0].State != sa.ChildInstalled {
			t.Errorf("responder: IKE SA %d %s (installing %v) with %d Child SAs", ike.UniqueID, ike.State, m.Installing(), len(ike.Children))
		}
	}
	for _, op := range nb.DP.Ops {
		if strings.HasPrefix(op, "del") {
			t.Errorf("responder's data plane: %s", op)
		}
	}
}

// outcome runs one IKE SA from a to b and says how it ended on both
// sides, for comparing a waited-for install with one that is not.
func outcome(t *testing.T, s *iketest.Sim, na, nb *iketest.Node) string {
	t.Helper()
	res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 1, Identity: "c%d.load.example"}, time.Minute)
	s.RunFor(30 * time.Second)
	sas, pols := nb.DP.Counts()
	var b strings.Builder
	fmt.Fprintf(&b, "initiator: established %d failed %d (%s)\n", res.Established, res.Failed, res.FirstFailure)
	fmt.Fprintf(&b, "responder: %d IKE SAs, %d SAs, %d policies, data plane failures %d, child SAs installed %d, IKE SAs established %d\n",
		nb.Worker.Len(), sas, pols, nb.Counters.Failures(stats.DataPlane), nb.Counters.Get(stats.ChildSAsInstalled),
		nb.Counters.Get(stats.IKESAsEstablished))
	return b.String()
}

// A refused install is answered as when the worker waits for it
// (NO_ADDITIONAL_SAS, the IKE SA childless, which the initiator then
// deletes), whichever way it went in.
func TestAsyncInstallFailure(t *testing.T) {
	var got [2]string
	for i, delay := range []time.Duration{0, 200 * time.Millisecond} {
		s, na, nb := asyncPair(t, delay)
		nb.DP.FailAddSA = errors.New("spud: child.add: inbound sa 0xc1000001: no room")
		got[i] = outcome(t, s, na, nb)
		if want := uint64(i); nb.Counters.Get(stats.InstallsAsync) != want {
			t.Errorf("delay %v: %d installs without waiting, want %d", delay, nb.Counters.Get(stats.InstallsAsync), want)
		}
		if !strings.Contains(got[i], "NO_ADDITIONAL_SAS") {
			t.Errorf("delay %v: %s", delay, got[i])
		}
	}
	t.Logf("outcome:\n%s", got[1])
	if got[0] != got[1] {
		t.Errorf("a refused install waited for:\n%s\nnot waited for:\n%s", got[0], got[1])
	}
}

// An IKE SA that ends while its Child SA goes in (here at its half-open
// timeout) is never answered, and the Child SA is removed once its add
// has been answered: after it, never before.
func TestAsyncInstallIKEGone(t *testing.T) {
	s, na, nb := asyncPair(t, 100*time.Millisecond)
	nb.Set.HalfOpenTimeout = 2 * time.Second
	nb.HoldInstalls = true
	if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 1, Identity: "c%d.load.example"}, nil); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return nb.InstallsInFlight() == 1 }) {
		t.Fatal("no install in flight")
	}
	s.RunFor(3 * time.Second)
	if nb.Worker.Len() != 0 {
		t.Fatalf("responder still holds %d IKE SAs after the half-open timeout", nb.Worker.Len())
	}
	if got := nb.Counters.Failures(stats.HalfOpenTimeout); got != 1 {
		t.Errorf("half-open timeouts: %d", got)
	}
	nb.HoldInstalls = false
	s.RunFor(time.Second)
	if n := nb.InstallsInFlight(); n != 0 {
		t.Fatalf("%d installs still in flight", n)
	}
	noSAs(t, nb)
	ops := strings.Join(nb.DP.Ops, "; ")
	var spi string
	for _, op := range nb.DP.Ops {
		if strings.HasPrefix(op, "add in ") {
			spi = strings.TrimPrefix(op, "add in ")
		}
	}
	if spi == "" || strings.Index(ops, "add in "+spi) > strings.Index(ops, "del in "+spi) ||
		!strings.Contains(ops, "del out ") || strings.Index(ops, "add out ") > strings.Index(ops, "del out ") {
		t.Errorf("data plane operations %s: want each removal after its add", ops)
	}
	for _, x := range s.Sent {
		if x.From.Addr() == nb.Addr && x.Response && x.Exchange == message.IKEAuth {
			t.Errorf("responder answered IKE_AUTH at %v for an IKE SA that ended", x.At.Sub(iketest.Epoch))
		}
	}
}

// spiOf finds the SPI of the last data plane operation starting with
// prefix ("add in ", "del out "...), "" if none.
func spiOf(ops []string, prefix string) string {
	spi := ""
	for _, op := range ops {
		if strings.HasPrefix(op, prefix) {
			spi = strings.TrimPrefix(op, prefix)
		}
	}
	return spi
}

// While a CREATE_CHILD_SA's Child SA goes into the data plane (a rekey,
// answered only once it is in) the responder's worker serves other IKE
// SAs: another IKE SA is deleted meanwhile, its Child SA's removal sent
// without the worker waiting; the rekey ends as when waited for, and the
// old Child SA's removal reaches the data plane after the new one's add.
func TestAsyncRekeyServesOthers(t *testing.T) {
	s, na, nb := asyncPair(t, 100*time.Millisecond)
	if res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 2, Window: 2, Identity: "c%d.load.example"}, time.Minute); res.Established != 2 {
		t.Fatalf("load: %+v", res)
	}
	ikes := na.Worker.List()
	if len(ikes) != 2 {
		t.Fatalf("%d IKE SAs", len(ikes))
	}
	rekeyed, other := ikes[0], ikes[1]
	oldIn := fmt.Sprintf("%08x", rekeyed.Children[0].SPIOut) // the responder's inbound SPI
	nb.HoldInstalls = true
	if n := na.Worker.Rekey(worker.Target{IKEID: rekeyed.UniqueID}, false); n != 1 {
		t.Fatalf("%d rekeys started", n)
	}
	if !s.RunUntil(10*time.Second, func() bool { return nb.InstallsInFlight() == 1 }) {
		t.Fatalf("the responder's rekey install is not in flight (%d): it waited for the data plane", nb.InstallsInFlight())
	}
	if installing := installing(nb); installing != 1 {
		t.Errorf("%d IKE SAs installing at the responder, want 1", installing)
	}
	// The other IKE SA goes meanwhile: the responder answers its DELETE.
	if n := na.Worker.Terminate(worker.Target{IKEID: other.UniqueID}, nil); n != 1 {
		t.Fatalf("%d IKE SAs terminated", n)
	}
	if !s.RunUntil(10*time.Second, func() bool { return nb.Worker.Len() == 1 }) {
		t.Fatalf("the responder still holds %d IKE SAs while a rekey install is pending", nb.Worker.Len())
	}
	if nb.LaterInFlight() == 0 {
		t.Errorf("the deleted IKE SA's Child SA removal was waited for")
	}
	for _, ike := range na.Worker.List() {
		if len(ike.Children) != 1 {
			t.Errorf("initiator: %d Child SAs before the responder's rekey install was answered", len(ike.Children))
		}
	}
	nb.HoldInstalls = false
	s.RunFor(30 * time.Second)
	counted(t, na, stats.ChildSAsRekeyed, 1)
	counted(t, nb, stats.InstallsAsync, 3) // 2 setups, 1 rekey
	if len(nb.LaterFailures) != 0 {
		t.Errorf("later calls failed: %v", nb.LaterFailures)
	}
	converged(t, na, nb, 1)
	rekeyedInOrder(t, nb, oldIn)
}

// counted checks n's counter c.
func counted(t *testing.T, n *iketest.Node, c stats.Counter, want uint64) {
	t.Helper()
	if got := n.Counters.Get(c); got != want {
		t.Errorf("%s: %s %d, want %d", n.Name, c, got, want)
	}
}

// rekeyedInOrder checks that n's data plane removed the rekeyed Child
// SA's inbound SA oldIn after it added its replacement's.
func rekeyedInOrder(t *testing.T, n *iketest.Node, oldIn string) {
	t.Helper()
	ops := strings.Join(n.DP.Ops, "; ")
	newIn := spiOf(n.DP.Ops, "add in ")
	if newIn == oldIn || !strings.Contains(ops, "add in "+newIn) || strings.Index(ops, "del in "+oldIn) < strings.Index(ops, "add in "+newIn) {
		t.Errorf("%s: data plane operations %s: want the old inbound SA %s removed after the new %s added", n.Name, ops, oldIn, newIn)
	}
}

// installing is the number of n's IKE SAs whose peer's request waits for
// its Child SA's install.
func installing(n *iketest.Node) int {
	k := 0
	for _, m := range n.Worker.Managers() {
		if m.Installing() {
			k++
		}
	}
	return k
}

// The initiator's worker does not wait for the Child SAs it negotiates
// either: its IKE_AUTH's and its rekey's go in while it serves other IKE
// SAs (here the peer's delete of another), the exchange ends once the
// install is answered, not retransmitted meanwhile, and the old Child SA
// goes after the new one's add.
func TestAsyncInitiatorRekeyServesOthers(t *testing.T) {
	s, na, nb := asyncPair(t, 100*time.Millisecond)
	na.InstallDelay = 100 * time.Millisecond
	if res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 2, Window: 2, Identity: "c%d.load.example"}, time.Minute); res.Established != 2 {
		t.Fatalf("load: %+v", res)
	}
	// Its IKE_AUTHs' Child SAs went in at once: a load's share one policy,
	// which the first makes and the second takes over.
	counted(t, na, stats.InstallsAsync, 0)

	ikes := nb.Worker.List()
	rekeyed := na.Worker.List()[0]
	oldIn := fmt.Sprintf("%08x", rekeyed.Children[0].SPIIn)
	na.HoldInstalls = true
	if n := na.Worker.Rekey(worker.Target{IKEID: rekeyed.UniqueID}, false); n != 1 {
		t.Fatalf("%d rekeys started", n)
	}
	if !s.RunUntil(10*time.Second, func() bool { return na.InstallsInFlight() == 1 }) {
		t.Fatalf("the initiator's rekey install is not in flight (%d): it waited for the data plane", na.InstallsInFlight())
	}
	answering := 0
	for _, m := range na.Worker.Managers() {
		if m.Answering() {
			answering++
		}
	}
	if answering != 1 {
		t.Errorf("%d IKE SAs answering at the initiator, want 1", answering)
	}
	// The responder deletes the other IKE SA meanwhile: the initiator
	// answers.
	var other uint32
	for _, ike := range ikes {
		if ike.SPIi != rekeyed.SPIi {
			other = ike.UniqueID
		}
	}
	if n := nb.Worker.Terminate(worker.Target{IKEID: other}, nil); n != 1 {
		t.Fatalf("%d IKE SAs terminated", n)
	}
	if !s.RunUntil(10*time.Second, func() bool { return na.Worker.Len() == 1 }) {
		t.Fatalf("the initiator still holds %d IKE SAs while its rekey install is pending", na.Worker.Len())
	}
	s.RunFor(10 * time.Second) // past the retransmission timeout
	if n := na.InstallsInFlight(); n != 1 {
		t.Errorf("%d installs in flight after the retransmission timeout, want the one", n)
	}
	na.HoldInstalls = false
	s.RunFor(30 * time.Second)
	counted(t, na, stats.ChildRekeysInitiated, 1)
	counted(t, na, stats.Retransmissions, 0)
	converged(t, na, nb, 1)
	rekeyedInOrder(t, na, oldIn)
}
