package worker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
	"golang.org/x/sys/unix"
)

// runLoad starts a load on n and runs the simulation until it is done.
func runLoad(t *testing.T, s *iketest.Sim, n *iketest.Node, spec worker.LoadSpec, d time.Duration) worker.LoadProgress {
	t.Helper()
	return runLoadTB(t, s, n, spec, d)
}

func runLoadTB(t testing.TB, s *iketest.Sim, n *iketest.Node, spec worker.LoadSpec, d time.Duration) worker.LoadProgress {
	t.Helper()
	var res worker.LoadProgress
	called := 0
	if err := n.Worker.Load(spec, func(p worker.LoadProgress) { res = p; called++ }); err != nil {
		t.Fatalf("load: %v", err)
	}
	if !s.RunUntil(d, func() bool { return called > 0 }) {
		p, _ := n.Worker.LoadStatus()
		t.Fatalf("load did not finish within %v: %+v", d, p)
	}
	if called != 1 {
		t.Fatalf("done called %d times", called)
	}
	return res
}

func TestLoad(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	// An IKE SA of the connection that exists already is not reused.
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var inFlight, top int
	var statusSeen bool
	res := func() worker.LoadProgress {
		var res worker.LoadProgress
		done := false
		if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 40, Window: 8}, func(p worker.LoadProgress) { res, done = p, true }); err != nil {
			t.Fatal(err)
		}
		if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 1}, nil); !errors.Is(err, worker.ErrLoadRunning) {
			t.Errorf("second load while one runs: %v, want ErrLoadRunning", err)
		}
		if !s.RunUntil(time.Minute, func() bool {
			p, ok := na.Worker.LoadStatus()
			if ok && !p.Done {
				statusSeen = true
				inFlight = p.Started - p.Established - p.Failed
				top = max(top, inFlight)
			}
			return done
		}) {
			t.Fatal("load did not finish")
		}
		return res
	}()
	if res.Established != 40 || res.Failed != 0 || res.Started != 40 || res.Stopped != "" || res.FirstFailure != "" {
		t.Fatalf("load outcome %+v", res)
	}
	// The responder (unique: never) took each new Child SA as the next
	// one's predecessor from its hint, each checked against the search.
	if worker.HintHits() < 30 {
		t.Errorf("predecessor hints taken: %d, want most of 40", worker.HintHits())
	}
	if !statusSeen || top == 0 || top > 8 {
		t.Errorf("in flight at most %d (status seen %v), want 1..8", top, statusSeen)
	}
	if p, ok := na.Worker.LoadStatus(); !ok || !p.Done || p.Established != 40 {
		t.Errorf("status after the run: %+v", p)
	}
	for _, n := range []*iketest.Node{na, nb} {
		l := n.Worker.List()
		if len(l) != 41 {
			t.Fatalf("%s: %d IKE SAs, want 41", n.Name, len(l))
		}
		spis := map[uint64]bool{}
		for _, ike := range l {
			if ike.State != sa.Established {
				t.Errorf("%s: IKE SA %d %s", n.Name, ike.UniqueID, ike.State)
			}
			if len(ike.Children) != 1 || ike.Children[0].State != sa.ChildInstalled {
				t.Errorf("%s: IKE SA %d has %d Child SAs", n.Name, ike.UniqueID, len(ike.Children))
			}
			spis[ike.SPIi] = true
		}
		if len(spis) != 41 {
			t.Errorf("%s: %d distinct IKE SPIs, want 41", n.Name, len(spis))
		}
		for _, ike := range l {
			if _, ok := n.DP.Find(ike.Children[0].SPIIn, "in"); !ok {
				t.Errorf("%s: inbound SA of IKE SA %d not in the data plane", n.Name, ike.UniqueID)
			}
		}
	}
	// The initiator sends through every Child SA (the responder, seeing
	// IKE SAs of one tunnel, holds the outbound SAs of the later ones back
	// as it does for reauthentications).
	if sas, _ := na.DP.Counts(); sas != 82 {
		t.Errorf("initiator: %d SAs in the data plane, want 82", sas)
	}
	if got := na.Counters.Get(stats.IKESAsEstablished); got != 41 {
		t.Errorf("initiator counted %d IKE SAs established", got)
	}
	// The load's Child SAs share one reqid and one policy (the one of the
	// initiate above is its own), and none replaces another.
	reqids := map[uint32]int{}
	for _, ike := range na.Worker.List() {
		reqids[ike.Children[0].ReqID]++
	}
	if len(reqids) != 2 {
		t.Errorf("initiator reqids %v, want the initiate's and the load's", reqids)
	}
	if _, pol := na.DP.Counts(); pol != 2 {
		t.Errorf("initiator has %d policies, want 2", pol)
	}
	if got := na.Counters.Get(stats.ChildSAsRekeyed) + na.Counters.Get(stats.IKESAsReauthed); got != 0 {
		t.Errorf("initiator counted %d rekeys or reauthentications", got)
	}

	// A second run works too, and terminating the connection ends all
	// of them (without any re-initiation).
	res2 := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 5, Window: 2}, time.Minute)
	if res2.Established != 5 {
		t.Fatalf("second run %+v", res2)
	}
	if na.Worker.Len() != 46 {
		t.Errorf("%d IKE SAs after the second run, want 46", na.Worker.Len())
	}
	// The policy stays while any load IKE SA of the tunnel does: end one
	// holding it.
	var holder uint32
	for _, ike := range na.Worker.List() {
		if len(ike.Children[0].PolicyIDs) > 0 && ike.Children[0].ReqID != na.Worker.List()[0].Children[0].ReqID {
			holder = ike.UniqueID
		}
	}
	if holder == 0 {
		t.Fatal("no load Child SA holds the policy")
	}
	d := false
	na.Worker.Terminate(worker.Target{IKEID: holder}, func(error) { d = true })
	s.RunUntil(10*time.Second, func() bool { return d })
	if _, pol := na.DP.Counts(); pol != 2 {
		t.Errorf("after the policy holder went: %d policies, want 2", pol)
	}
	d = false
	na.Worker.Terminate(worker.Target{Conn: "tun"}, func(error) { d = true })
	if !s.RunUntil(time.Minute, func() bool { return d }) {
		t.Fatal("terminate did not finish")
	}
	s.RunFor(time.Minute)
	if na.Worker.Len() != 0 || nb.Worker.Len() != 0 {
		t.Errorf("IKE SAs left: %d / %d", na.Worker.Len(), nb.Worker.Len())
	}
	noSAs(t, na, nb)
}

func TestLoadFailures(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.retransmit = "retransmit_timeout: 2s\n" },
		func(o *confOpts) { o.psk = "not the same secret"; o.extra = "    unique: never\n" })
	res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 12, Window: 4}, 5*time.Minute)
	if res.Established != 0 || res.Failed != 12 || res.Started != 12 {
		t.Fatalf("load outcome %+v", res)
	}
	if res.FirstFailure == "" || strings.Contains(res.FirstFailure, "not the same secret") || strings.Contains(res.FirstFailure, "correct horse") {
		t.Errorf("first failure %q", res.FirstFailure)
	}
	t.Logf("first failure: %s", res.FirstFailure)
	s.RunFor(time.Minute)
	if na.Worker.Len() != 0 || nb.Worker.Len() != 0 {
		t.Errorf("IKE SAs left: %d / %d", na.Worker.Len(), nb.Worker.Len())
	}
	noSAs(t, na, nb)
	for _, n := range []*iketest.Node{na, nb} {
		if strings.Contains(n.Logs(), "correct horse") || strings.Contains(n.Logs(), "not the same secret") {
			t.Errorf("%s: a secret is in the log", n.Name)
		}
	}

	// A failure budget stops the run early.
	res = runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 50, Window: 2, MaxFailures: 3}, 5*time.Minute)
	if res.Stopped != "failure budget" || res.Started >= 50 || res.Failed != res.Started || res.Failed < 3 {
		t.Errorf("with a failure budget of 3: %+v", res)
	}
	s.RunFor(time.Minute)
	noSAs(t, na, nb)
}

func TestLoadTimeout(t *testing.T) {
	s, na, _ := pair(t, nil, nil)
	// The responder never answers: the timeout stops new IKE SAs, those
	// in flight fail on their retransmission timeout.
	s.Filter = func(_ manager.Datagram, from *iketest.Node) iketest.Fate {
		return iketest.Fate{Drop: from == na}
	}
	res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 100, Window: 3, Timeout: 10 * time.Second}, 5*time.Minute)
	if res.Stopped != "timeout" || res.Started != 3 || res.Failed != 3 || res.Established != 0 {
		t.Errorf("outcome %+v", res)
	}
	noSAs(t, na)
}

// TestLoadIdentities: with an identity pattern, each load IKE SA
// authenticates as an identity of its own, so the responder holds as many
// tunnels as IKE SAs (an outbound SA and none held back for each), as with
// load-tester's initiator_id, and a reauthentication keeps the identity.
func TestLoadIdentities(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) {
		o.secretsIDs = `["gw-b.example", "*.load.example"]`
		o.extra = "    rekey_time: 0s\n    reauth_time: 60s\n    rand_time: 0s\n    over_time: 40s\n"
	}, func(o *confOpts) {
		o.remoteID = "*.load.example"
		o.secretsIDs = `["gw-b.example", "*.load.example"]`
		o.extra = "    rekey_time: 0s\n"
		// The 30 reauthentications come at once from one address.
		o.peer = 1000
	})
	res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 30, Window: 8, Identity: "c%d.load.example"}, time.Minute)
	if res.Established != 30 || res.Failed != 0 {
		t.Fatalf("load outcome %+v", res)
	}
	ids := map[string]bool{}
	for _, ike := range nb.Worker.List() {
		if ike.State != sa.Established || len(ike.Children) != 1 || ike.Children[0].State != sa.ChildInstalled {
			t.Errorf("responder: IKE SA %d %s with %d Child SAs", ike.UniqueID, ike.State, len(ike.Children))
		}
		ids[ike.RemoteID.String()] = true
	}
	if len(ids) != 30 || !ids["c1.load.example"] || !ids["c30.load.example"] {
		t.Errorf("responder saw %d identities (%v), want c1..c30", len(ids), ids)
	}
	// Distinct tunnels: every outbound SA installed, none a reauthentication.
	if sas, _ := nb.DP.Counts(); sas != 60 {
		t.Errorf("responder: %d SAs in the data plane, want 60", sas)
	}
	if got := nb.Counters.Get(stats.IKESAsReauthed); got != 0 {
		t.Errorf("responder counted %d reauthentications", got)
	}

	// Reauthenticated at reauth_time, each keeps its identity: the
	// responder still holds 30 tunnels.
	s.RunFor(90 * time.Second)
	if got := na.Counters.Get(stats.IKESAsReauthed); got != 30 {
		t.Fatalf("initiator counted %d reauthentications, want 30", got)
	}
	ids = map[string]bool{}
	for _, ike := range nb.Worker.List() {
		ids[ike.RemoteID.String()] = true
	}
	if len(ids) != 30 || nb.Worker.Len() != 30 {
		t.Errorf("after the reauthentications the responder holds %d IKE SAs with %d identities, want 30", nb.Worker.Len(), len(ids))
	}
	if sas, _ := nb.DP.Counts(); sas != 60 {
		t.Errorf("responder after the reauthentications: %d SAs in the data plane, want 60", sas)
	}

	for _, bad := range []string{"c.load.example", "c%d-%d.load.example", "keyid:%dzz"} {
		if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 1, Identity: bad}, nil); err == nil {
			t.Errorf("identity %q accepted", bad)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, na, _ := pair(t, nil, nil)
	err := na.Worker.Load(worker.LoadSpec{Conn: "nope", Count: 3, Window: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), `no connection "nope"`) {
		t.Errorf("unknown connection: %v", err)
	}
	if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 0}, nil); err == nil {
		t.Error("count 0 accepted")
	}
	if _, ok := na.Worker.LoadStatus(); ok {
		t.Error("status of a load that never ran")
	}
}

// BenchmarkLoad measures the CPU cost of a load run of 500 IKE SAs (window
// 64), both ends, over the in-memory network: what iked's load initiator
// and responder spend per tunnel apart from the data plane and the state
// files.
func BenchmarkLoad(b *testing.B) {
	ca, cb := configs(b, nil, func(o *confOpts) { o.extra = "    unique: never\n"; o.peer = 100000 })
	b.ReportAllocs()
	for b.Loop() {
		s, na, _ := newPair(b, ca, cb)
		s.T = b
		done := false
		if err := na.Worker.Load(worker.LoadSpec{Conn: "tun", Count: 500, Window: 64}, func(p worker.LoadProgress) {
			if p.Established != 500 {
				b.Fatalf("load: %+v", p)
			}
			done = true
		}); err != nil {
			b.Fatal(err)
		}
		if !s.RunUntil(time.Hour, func() bool { return done }) {
			b.Fatal("load did not finish")
		}
	}
}

// BenchmarkSetupAtScale measures what a setup costs (both ends, over the
// in-memory network) when the worker already holds 1k, 10k or 50k IKE
// SAs: it must not grow with the table (INITIAL_CONTACT, reauthentication
// and first-contact lookups by index; issue "numerous tunnels"). Each
// iteration sets up 100 more tunnels with the load initiator; ns/setup is
// per tunnel, and cpu-ns/setup the process's CPU time per tunnel (what
// the wall time is not, on a machine running more than the benchmark),
// garbage collection included; both ends log at warn, as spubench runs
// iked. With peers=one every IKE SA has the initiator's identity
// (iked's load initiator: the responder takes each for a reauthentication
// of the tunnel); with peers=many each has one of its own behind the same
// address (strongSwan's load-tester, sites behind a carrier NAT).
//
// SPUGATE_SETUP_SIZES (comma-separated) replaces the sizes, for a run at
// larger tables than the default's memory allows beside other work.
//
//	go test -run '^$' -bench SetupAtScale -benchtime 20x ./control/ike/worker/
func BenchmarkSetupAtScale(b *testing.B) {
	sizes := []int{1000, 10000, 50000}
	if env := os.Getenv("SPUGATE_SETUP_SIZES"); env != "" {
		sizes = nil
		for f := range strings.SplitSeq(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				b.Fatalf("SPUGATE_SETUP_SIZES: %q is not a count of IKE SAs", f)
			}
			sizes = append(sizes, n)
		}
	}
	// The tests check each reauthentication hint against a search over
	// the tunnel's IKE SAs, which is what the hint saves.
	defer worker.VerifyHints(worker.VerifyHints(false))
	for _, peers := range []string{"one", "many"} {
		modA, modB := func(o *confOpts) { o.extra = "    unique: never\n"; o.peer = 1 << 20 }, func(o *confOpts) {
			o.extra = "    unique: never\n"
			o.peer = 1 << 20
			if peers == "many" {
				o.remoteID, o.secretsIDs = "*.load.example", `["gw-b.example", "*.load.example"]`
			}
		}
		ca, cb := configs(b, modA, modB)
		for _, n := range sizes {
			b.Run(fmt.Sprintf("peers=%s/existing=%d", peers, n), func(b *testing.B) {
				s, na, nb := newPair(b, ca, cb)
				s.T = b
				// As spubench runs iked (-log-level warn).
				na.SetLogLevel(slog.LevelWarn)
				nb.SetLogLevel(slog.LevelWarn)
				run := 0
				load := func(count int) {
					done := false
					spec := worker.LoadSpec{Conn: "tun", Count: count, Window: 64}
					if peers == "many" {
						// An identity per IKE SA, none repeated across runs.
						run++
						spec.Identity = fmt.Sprintf("c%%d.r%d.load.example", run)
					}
					if err := na.Worker.Load(spec, func(p worker.LoadProgress) {
						if p.Established != count {
							b.Fatalf("load: %+v", p)
						}
						done = true
					}); err != nil {
						b.Fatal(err)
					}
					if !s.RunUntil(time.Hour, func() bool { return done }) {
						b.Fatal("load did not finish")
					}
				}
				load(n)
				cpu0 := processCPU(b)
				for b.Loop() {
					load(100)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/setup")
				b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N*100), "cpu-ns/setup")
				if got := nb.Worker.Len(); got != n+100*b.N {
					b.Fatalf("responder holds %d IKE SAs, want %d", got, n+100*b.N)
				}
			})
		}
	}
}

// BenchmarkTeardownAtScale measures what the deletion of an IKE SA by its
// peer costs (both ends) when the peer deletes 1k or 10k at once (a
// restart, a load run's end): it must not grow with the IKE SAs deleted in
// the last minutes, whose last responses the responder keeps.
// cpu-ns/delete is the process's CPU time per IKE SA deleted.
func BenchmarkTeardownAtScale(b *testing.B) {
	defer worker.VerifyHints(worker.VerifyHints(false))
	mod := func(o *confOpts) { o.extra = "    unique: never\n"; o.peer = 1 << 20 }
	ca, cb := configs(b, mod, func(o *confOpts) {
		mod(o)
		o.remoteID, o.secretsIDs = "*.load.example", `["gw-b.example", "*.load.example"]`
	})
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("ike-sas=%d", n), func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				s, na, nb := newPair(b, ca, cb)
				s.T = b
				na.SetLogLevel(slog.LevelWarn)
				nb.SetLogLevel(slog.LevelWarn)
				if p := runLoadTB(b, s, na, worker.LoadSpec{Conn: "tun", Count: n, Window: 64, Identity: "c%d.load.example"}, time.Hour); p.Established != n {
					b.Fatalf("load: %+v", p)
				}
				// The setup's garbage is collected before, not charged to
				// the deletions.
				runtime.GC()
				b.StartTimer()
				cpu0 := processCPU(b)
				if c := na.Worker.Terminate(worker.Target{Conn: "tun"}, nil); c != n {
					b.Fatalf("terminating %d IKE SAs, want %d", c, n)
				}
				if !s.RunUntil(time.Hour, func() bool { return nb.Worker.Len() == 0 && na.Worker.Len() == 0 }) {
					b.Fatal("IKE SAs not deleted")
				}
				cpu += processCPU(b) - cpu0
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/delete")
		})
	}
}

// processCPU is the process's CPU time so far, user and system.
func processCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestListAfter: pages of the worker's IKE SAs, each the next ones in
// UniqueID order, make up List exactly.
func TestListAfter(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 40, Window: 8}, time.Minute); p.Established != 40 {
		t.Fatalf("load: %+v", p)
	}
	for _, n := range []*iketest.Node{na, nb} {
		all := n.Worker.List()
		var paged []uint32
		var after uint32
		for {
			page := n.Worker.ListAfter(after, 7)
			if len(page) > 7 {
				t.Fatalf("a page of %d, limit 7", len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, ike := range page {
				paged = append(paged, ike.UniqueID)
				if ike.Keys != nil || ike.LastResponse != nil {
					t.Fatal("a listed IKE SA carries its keys")
				}
			}
			after = page[len(page)-1].UniqueID
		}
		if len(paged) != len(all) {
			t.Fatalf("%s: pages hold %d IKE SAs, List %d", n.Name, len(paged), len(all))
		}
		for i, ike := range all {
			if paged[i] != ike.UniqueID {
				t.Fatalf("%s: page order %v, List order differs at %d (%d)", n.Name, paged, i, ike.UniqueID)
			}
		}
	}
}

// TestSamplesPrefetched: IKE SAs whose liveness samples fall due at the
// same Tick have their inbound counts asked of the data plane in one batch
// (UsagePrefetcher), with every SPI of the batch.
func TestSamplesPrefetched(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n    dpd_delay: 10s\n" })
	if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 20, Window: 20}, time.Minute); p.Established != 20 {
		t.Fatalf("load: %+v", p)
	}
	nb.DP.Samples, nb.DP.Prefetches, nb.DP.Prefetched = 0, 0, 0
	s.RunFor(6 * time.Second)
	// Each IKE SA samples every 5 s (InboundPackets also answers the
	// probes of held-back outbound SAs, which are not batched).
	if nb.DP.Prefetched < 20 || nb.DP.Prefetches*3 > nb.DP.Prefetched {
		t.Errorf("%d prefetches naming %d SPIs in 6 s of 20 IKE SAs sampling every 5 s: want each prefetched, in batches",
			nb.DP.Prefetches, nb.DP.Prefetched)
	}
	t.Logf("%d samples, %d prefetches naming %d SPIs", nb.DP.Samples, nb.DP.Prefetches, nb.DP.Prefetched)
}

// BenchmarkHeapPerTunnel reports the Go heap an established tunnel (IKE
// SA and Child SA) holds: what iked's RSS per tunnel grows by, apart from
// the runtime's overhead (up to GOGC more). The simulation runs initiator
// and responder in one process; it keeps no state files, log lines or
// copies of the SAs (spud's) and records no datagrams, so that the heap is
// the workers'. heapB/IKE-SA-responder is what the responder holds
// (measured once the initiator's worker is let go), heapB/IKE-SA-initiator
// the rest (a load run's initiator); heapB/tunnel-both-ends their sum;
// objects/IKE-SA-responder the responder's heap objects (the garbage
// collector's work is per object and pointer as much as per byte).
//
// With SPUGATE_HEAP_PROFILE=file it writes a profile of the live tunnels,
// every allocation sampled:
//
//	SPUGATE_HEAP_PROFILE=/tmp/h.prof go test -c -o /tmp/w.test ./control/ike/worker && \
//	  /tmp/w.test -test.run '^$' -test.bench HeapPerTunnel -test.benchtime 1x && \
//	  go tool pprof -sample_index=inuse_space -top /tmp/w.test /tmp/h.prof
func BenchmarkHeapPerTunnel(b *testing.B) {
	defer worker.VerifyHints(worker.VerifyHints(false))
	ca, cb := configs(b, nil, func(o *confOpts) { o.extra = "    unique: never\n"; o.peer = 1 << 20 })
	const n = 5000
	profile := os.Getenv("SPUGATE_HEAP_PROFILE")
	if profile != "" {
		defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	for b.Loop() {
		s, na, nb := newPair(b, ca, cb)
		s.T, s.NoSent = b, true
		for _, x := range []*iketest.Node{na, nb} {
			x.NoPersist, x.DP.CountOnly = true, true
			x.DiscardLogs()
		}
		var before, after, responder runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if p := runLoadTB(b, s, na, worker.LoadSpec{Conn: "tun", Count: n, Window: 64}, time.Hour); p.Established != n {
			b.Fatalf("load: %+v", p)
		}
		// Idle tunnels: the responses of their last exchanges are no longer
		// cached.
		s.RunFor(manager.CachedResponseTime + time.Second)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if nb.Worker.Len() != n {
			b.Fatalf("responder holds %d IKE SAs, want %d", nb.Worker.Len(), n)
		}
		if profile != "" {
			// The live tunnels' heap, which -memprofile (written after the
			// benchmark let them go) does not show.
			f, err := os.Create(profile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		// The initiator's worker goes (checked first, as newPair's cleanup
		// would): what stays is the responder's.
		if err := na.Worker.IndexError(); err != nil {
			b.Errorf("%s: %v", na.Name, err)
		}
		na.Worker = worker.New(0, na.Env())
		// A step of the simulation, whose node of one worker keeps the
		// worker it last stepped (and so the initiator's IKE SAs) until
		// the next.
		s.RunFor(time.Millisecond)
		runtime.GC()
		runtime.ReadMemStats(&responder)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/tunnel-both-ends")
		b.ReportMetric(float64(responder.HeapAlloc-before.HeapAlloc)/n, "heapB/IKE-SA-responder")
		b.ReportMetric(float64(after.HeapAlloc-responder.HeapAlloc)/n, "heapB/IKE-SA-initiator")
		b.ReportMetric(float64(responder.HeapObjects-before.HeapObjects)/n, "objects/IKE-SA-responder")
		runtime.KeepAlive(nb)
	}
}

// TestAuthKeysDropped: an IKE SA keeps SK_pi and SK_pr only until
// IKE_AUTH is done (they only sign and check AUTH), in memory and in its
// state; a rekey's new IKE SA never holds them. Its other keys remain.
func TestAuthKeysDropped(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 3, Window: 3}, time.Minute); p.Established != 3 {
		t.Fatalf("load: %+v", p)
	}
	check := func(when string) {
		t.Helper()
		for _, n := range []*iketest.Node{na, nb} {
			for _, m := range n.Worker.Managers() {
				k := m.IKE.Keys
				if k == nil || len(k.SKd()) == 0 || len(k.SKei()) == 0 || k.SKpi() != nil || k.SKpr() != nil {
					t.Fatalf("%s: %s: IKE SA %s keys: SK_d %d, SK_ei %d, SK_pi %d, SK_pr %d bytes", when, n.Name, m.IKE.SPIs(),
						len(k.SKd()), len(k.SKei()), len(k.SKpi()), len(k.SKpr()))
				}
			}
			for spi, b := range n.Persist {
				var r sa.IKESA
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				if r.Keys == nil || len(r.Keys.SKpi()) != 0 || len(r.Keys.SKpr()) != 0 {
					t.Fatalf("%s: %s: state of %016x: keys %+v", when, n.Name, spi, r.Keys)
				}
			}
		}
	}
	check("established")
	na.Worker.Rekey(worker.Target{Conn: "tun"}, true)
	s.RunFor(10 * time.Second)
	if got := na.Worker.Len(); got != 3 {
		t.Fatalf("%d IKE SAs after the rekey, want 3", got)
	}
	check("rekeyed")
}

// TestCachedResponseLeavesState: once an idle IKE SA's cached response
// expires, its state is written again without it, rather than carried in
// its record for the tunnel's life.
func TestCachedResponseLeavesState(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 3, Window: 3}, time.Minute); p.Established != 3 {
		t.Fatalf("load: %+v", p)
	}
	cached := func() int {
		n := 0
		for _, b := range nb.Persist {
			if strings.Contains(string(b), `"last_response"`) {
				n++
			}
		}
		return n
	}
	if n := cached(); n != 3 {
		t.Fatalf("%d of 3 states hold the IKE_AUTH response after the setup, want 3", n)
	}
	s.RunFor(manager.CachedResponseTime + time.Second)
	if n := cached(); n != 0 || len(nb.Persist) != 3 {
		t.Errorf("%d of %d states still hold a response past its cache time", n, len(nb.Persist))
	}
}

// A load run whose tunnel's logical SPU moves to another worker (spud's
// SPU map changed) goes on there: the IKE SAs it starts are anchored on
// that SPU, whose datagrams reach the new owner. Those not yet
// established are started again there; the established ones move as
// every IKE SA does. The run ends with every tunnel up. The IKE SAs in
// flight could not move ("is CREATED, not established") and failed where
// they were, and so did every one the run started after the change.
func TestLoadFollowsItsTunnel(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	na.Anchors = anchoring(t, false)
	na.SharedPeers = &worker.PeerCounts{}
	if err := na.Restart(); err != nil {
		t.Fatal(err)
	}
	na.AddWorker()
	delay(s, 5*time.Millisecond)
	lg := na.Anchors.Fn.Logical(addrA, addrB)
	from := na.WorkerOf(lg)
	var res worker.LoadProgress
	called := 0
	if err := from.Load(worker.LoadSpec{Conn: "tun", Count: 40, Window: 8}, func(p worker.LoadProgress) { res = p; called++ }); err != nil {
		t.Fatal(err)
	}
	s.RunFor(25 * time.Millisecond)
	p, _ := from.LoadStatus()
	if p.Established == 0 || p.Established == p.Started {
		t.Fatalf("before the move: %+v; want some IKE SAs established and some in flight", p)
	}
	// The map moves the tunnel's logical SPU; iked moves the run, then the
	// established IKE SAs.
	to := na.Workers[0]
	if to == from {
		to = na.Workers[1]
	}
	na.Owners = map[uint16]int{lg: slices.Index(na.Workers, to)}
	h := from.HandOffLoad("tun")
	if h == nil {
		t.Fatal("no load run handed off")
	}
	if err := to.ResumeLoad(h); err != nil {
		t.Fatal(err)
	}
	for _, ike := range from.List() {
		moved, err := from.Detach(ike.OurSPI())
		if err != nil {
			t.Fatalf("detach IKE SA %d (%s): %v", ike.UniqueID, ike.State, err)
		}
		if err := to.Restore(moved); err != nil {
			t.Fatal(err)
		}
	}
	if !s.RunUntil(time.Minute, func() bool { return called > 0 }) {
		p, _ := to.LoadStatus()
		t.Fatalf("load did not finish: %+v", p)
	}
	if res.Established != 40 || res.Failed != 0 || called != 1 {
		t.Fatalf("load: %+v (done called %d times)", res, called)
	}
	if n := len(to.List()); n != 40 {
		t.Errorf("%d IKE SAs on the tunnel's new worker, want 40", n)
	}
	if n := len(from.List()); n != 0 {
		t.Errorf("%d IKE SAs left on the old worker", n)
	}
	for _, ike := range to.List() {
		if ike.State != sa.Established || len(ike.Children) != 1 {
			t.Errorf("IKE SA %d: %s with %d Child SAs", ike.UniqueID, ike.State, len(ike.Children))
		}
	}
	_ = nb
}

// A load's Child SAs share one policy where the initiator's data plane
// takes installs without the worker waiting: the first Child SA of the
// tunnel, which makes the policy, goes in at once. (Not waited for, each
// Child SA of the first window found no policy yet and made its own.)
func TestLoadSharesOnePolicyWithoutWaiting(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.extra = "    unique: never\n" })
	na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, false)
	na.InstallDelay = 100 * time.Millisecond
	res := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: 20, Window: 8}, time.Minute)
	if res.Established != 20 || res.Failed != 0 {
		t.Fatalf("load outcome %+v", res)
	}
	reqids := map[uint32]int{}
	for _, ike := range na.Worker.List() {
		if len(ike.Children) != 1 {
			t.Fatalf("IKE SA %d has %d Child SAs", ike.UniqueID, len(ike.Children))
		}
		reqids[ike.Children[0].ReqID]++
	}
	if len(reqids) != 1 {
		t.Errorf("initiator reqids %v, want one", reqids)
	}
	if sas, pols := na.DP.Counts(); sas != 40 || pols != 1 {
		t.Errorf("initiator's data plane: %d SAs, %d policies, want 40 and 1", sas, pols)
	}
}
