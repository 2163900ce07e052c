package scenario

import (
	"os"
	"testing"
	"time"

	"github.com/spugate/spugate/bench/traffic"
	"github.com/spugate/spugate/internal/privileged"
)

func testEnv(t *testing.T) *Env {
	t.Helper()
	privileged.Require(t, "ip", "ethtool")
	return &Env{Links: Links, Dir: t.TempDir(), Log: testWriter{t}, NoSignalHandler: true, Verbose: os.Getenv("BENCH_VERBOSE") != ""}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

var quickTiming = traffic.Timing{Warmup: 300 * time.Millisecond, Duration: 700 * time.Millisecond}

func TestPrivilegedCeiling(t *testing.T) {
	e := testEnv(t)
	c := Ceiling{Mixes: []traffic.Mix{traffic.Fixed(64)}, Timing: quickTiming}
	runs, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Result == nil || runs[0].Result.Received == 0 {
		t.Fatalf("ceiling: %+v", runs)
	}
}

func TestPrivilegedThroughput(t *testing.T) {
	e := testEnv(t)
	th := Throughput{Mixes: []traffic.Mix{traffic.Fixed(64)}, Suites: StandardSuites[:1], Systems: []string{Spud, Kernel, WireGuard}, Timing: quickTiming, Search: Search{Steps: 1}}
	res, err := th.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Runs {
		// The probe before each search proved every flow through; the
		// rates themselves are the system's business, not this test's.
		if r.Error != "" || r.Found == nil || len(r.Found.Steps) == 0 {
			t.Errorf("%s %s %s: %s", r.System, r.Suite, r.Mix, r.Error)
		}
	}
	if len(res.Ratios) == 0 {
		t.Errorf("no ratios: %+v", res.Ratios)
	}
}

func TestPrivilegedScaling(t *testing.T) {
	e := testEnv(t)
	c := Scaling{SPUs: []int{1, 3}, Tunnels: 8, Mixes: []traffic.Mix{traffic.Fixed(64)}, Timing: quickTiming, Search: Search{Steps: 1}}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Runs {
		if r.Error != "" || r.Found == nil {
			t.Errorf("%d SPUs: %s", r.SPUs, r.Error)
		}
		if r.Simulated != (r.SPUs > res.CPUs) {
			t.Errorf("%d SPUs on %d CPUs: simulated %v", r.SPUs, res.CPUs, r.Simulated)
		}
		// Eight tunnels with distinct peers land on more than one SPU.
		if r.SPUs > 1 {
			busy := 0
			for _, w := range r.Work["gw-a"] {
				if w > 0 {
					busy++
				}
			}
			if busy < 2 {
				t.Errorf("%d SPUs: work spread %v", r.SPUs, r.Work)
			}
		}
	}
}

func TestPrivilegedTunnels(t *testing.T) {
	e := testEnv(t)
	c := Tunnels{Counts: []int{1, 300}, Timing: quickTiming, Search: Search{Steps: 1}, Settle: 200 * time.Millisecond}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Runs {
		if r.Error != "" || r.Found == nil || r.InstallRate <= 0 || r.After.RSS == 0 || r.Installed != r.Tunnels {
			t.Errorf("%d tunnels: %+v", r.Tunnels, r)
		}
	}
}

func TestPrivilegedRekey(t *testing.T) {
	e := testEnv(t)
	c := Rekey{Tunnels: 4, Interval: 300 * time.Millisecond, Grace: 50 * time.Millisecond, Rate: 5000, Duration: 1500 * time.Millisecond}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || res.Runs[1].Rekeys < 4 || res.Runs[1].Failed != 0 || len(res.Errors) > 0 {
		t.Fatalf("rekey runs: %+v, errors %v", res.Runs, res.Errors)
	}
	for _, r := range res.Runs {
		if r.Result == nil || r.Result.Received == 0 {
			t.Errorf("rekeying %v: nothing through: %s", r.Rekeying, r.Error)
		}
	}
}

// TestPrivilegedIKELoadTester sets up a few IKE SAs from load-tester
// against every responder and checks the live figures: every IKE SA
// established with its Child SA (a load-tester whose fake kernel is not
// the one in use would leave none), CPU per IKE SA measured, iked's
// workers and spud's SAs read.
func TestPrivilegedIKELoadTester(t *testing.T) {
	e := testEnv(t)
	if why := LoadTesterReady(); why != "" {
		t.Skipf("load-tester plugin not built (%s): run make load-tester", why)
	}
	const n = 24
	c := IKE{Count: n, Auths: []string{"psk"}, Initiators: []string{InitLoadTester},
		Responders: []string{RespIked, RespIkedIKESA, RespCharonFake, RespCharon}, Window: 8, Timeout: 60 * time.Second}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 4 {
		t.Fatalf("runs: %+v", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Error != "" || r.LiveIKESAs != n || r.LiveChildSAs != n || r.CPUPerSA <= 0 {
			t.Errorf("%s: %d IKE SAs, %d Child SAs live, %.3f ms CPU per IKE SA: %s", r.Responder, r.LiveIKESAs, r.LiveChildSAs, r.CPUPerSA, r.Error)
		}
		if d, _, _ := responderKind(r.Responder); d == "iked" {
			// Two SAs per tunnel in spud; an IKE SA counted on some worker.
			held := 0
			for _, w := range r.Workers {
				held += w.IKESAs
			}
			if r.DataPlaneSAs < 2*n || held < n {
				t.Errorf("%s: spud holds %d SAs, iked's workers %d IKE SAs (%+v)", r.Responder, r.DataPlaneSAs, held, r.Workers)
			}
		}
	}
	if len(res.CPURatios) != 2 {
		t.Errorf("cpu ratios: %+v", res.CPURatios)
	}
}

// TestPrivilegedIKEHold sets up a few hundred tunnels from iked's load
// initiator against iked and holds them: the setup rates per tenth, the
// state folder, the live SAs after the hold, all read.
func TestPrivilegedIKEHold(t *testing.T) {
	e := testEnv(t)
	const n = 200
	c := IKE{CountIkedInitiator: n, Auths: []string{"psk"}, Initiators: []string{"iked"}, Responders: []string{RespIked},
		Window: 16, Timeout: 90 * time.Second, Hold: 2 * time.Second}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1 {
		t.Fatalf("runs: %+v", res.Runs)
	}
	r := res.Runs[0]
	// One inbound SA per tunnel in spud; the tunnels share one selector
	// pair, so that the responder keeps one outbound SA and policy.
	if r.Error != "" || r.LiveIKESAs != n || r.LiveChildSAs != n || r.DataPlaneSAs < n+1 {
		t.Errorf("%d IKE SAs, %d Child SAs, %d spud SAs: %s", r.LiveIKESAs, r.LiveChildSAs, r.DataPlaneSAs, r.Error)
	}
	if len(r.Deciles) != 10 || r.RateWindow != n/10 || r.FirstRate <= 0 || r.LastRate <= 0 || len(r.Curve) == 0 || r.StateBytes == 0 {
		t.Errorf("setup figures: deciles %v, window %d, first %.0f/s, last %.0f/s, %d curve points, state %d bytes",
			r.Deciles, r.RateWindow, r.FirstRate, r.LastRate, len(r.Curve), r.StateBytes)
	}
	h := r.Hold
	if h == nil {
		t.Fatal("no hold")
	}
	if h.Error != "" || h.LiveIKESAs != n || h.LiveChildSAs != n || h.Min != n || h.DataPlaneSAs < n+1 || h.Memory.RSS == 0 || h.DataPlane.RSS == 0 || h.StateBytes == 0 {
		t.Errorf("after the hold: %+v", h)
	}
}

// TestPrivilegedIKETimeoutHold has load-tester run into the setup's
// timeout: the run goes on with the IKE SAs up by then, load-tester is
// frozen so that the hold finds as many as the setup left, no more.
func TestPrivilegedIKETimeoutHold(t *testing.T) {
	e := testEnv(t)
	if why := LoadTesterReady(); why != "" {
		t.Skipf("load-tester plugin not built (%s): run make load-tester", why)
	}
	c := IKE{Count: 100000, Auths: []string{"psk"}, Initiators: []string{InitLoadTester}, Responders: []string{RespIked},
		Window: 16, Timeout: 3 * time.Second, Hold: 3 * time.Second}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runs[0]
	if r.Error == "" || r.Established == 0 || r.LiveIKESAs == 0 || r.LiveIKESAs >= r.Count {
		t.Fatalf("%d established, %d live: %q", r.Established, r.LiveIKESAs, r.Error)
	}
	if h := r.Hold; h == nil || h.LiveIKESAs != r.LiveIKESAs || h.Error != "" {
		t.Errorf("after the hold: %+v; %d live before", h, r.LiveIKESAs)
	}
}

func TestPrivilegedTCP(t *testing.T) {
	privileged.Require(t, "iperf3")
	e := testEnv(t)
	c := TCP{Systems: []string{Spud, Kernel}, Streams: []int{1}, Duration: time.Second}
	res, err := c.Run(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("runs: %+v", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Error != "" || r.Gbps <= 0 {
			t.Errorf("%s, %d stream: %+v", r.System, r.Streams, r)
		}
	}
}
