package scenario

import (
	"testing"
	"time"
)

// TestIKERatiosSameInitiator checks that iked and charon are compared as
// responders only under the same initiator.
func TestIKERatiosSameInitiator(t *testing.T) {
	runs := []IKERun{
		{Initiator: "charon", Responder: "iked", Auth: "psk", Rate: 500},
		{Initiator: "charon", Responder: "charon", Auth: "psk", Rate: 1000},
		{Initiator: "iked", Responder: "iked", Auth: "psk", Rate: 300},
		{Initiator: "iked", Responder: "charon", Auth: "psk", Rate: 600},
		// No charon responder under iked for ecdsa: no ratio.
		{Initiator: "iked", Responder: "iked", Auth: "ecdsa", Rate: 200},
		{Initiator: "charon", Responder: "charon", Auth: "ecdsa", Rate: 400},
		{Initiator: "iked", Responder: "charon", Auth: "ecdsa", Rate: 100, Error: "failed"},
	}
	got := IKERatios(runs)
	want := []IKERatio{
		{Initiator: "charon", Auth: "psk", Iked: 500, Charon: 1000, Ratio: 0.5},
		{Initiator: "iked", Auth: "psk", Iked: 300, Charon: 600, Ratio: 0.5},
	}
	if len(got) != len(want) {
		t.Fatalf("ratios %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ratio %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	c := &IKE{}
	c.defaults()
	if c.count("iked") != 2000 || c.count(InitLoadTester) != 10000 || c.Initiators[0] != InitLoadTester || len(c.Responders) != 4 {
		t.Errorf("defaults: %+v", c)
	}
}

// TestSetupRates checks the rates read off a setup curve: per tenth, over
// the first and last window, with readings that skip counts.
func TestSetupRates(t *testing.T) {
	// 100 IKE SAs per second for the first 500, then 50 per second,
	// read every 0.5 s; 2 ms of CPU per IKE SA, then 4.
	var pts []IKEPoint
	for ms := 500; ; ms += 500 {
		sec := float64(ms) / 1000
		up := int(100 * sec)
		if sec > 5 {
			up = 500 + int(50*(sec-5))
		}
		up = min(up, 1000)
		cpu := 2 * time.Millisecond * time.Duration(min(up, 500))
		if up > 500 {
			cpu += 4 * time.Millisecond * time.Duration(up-500)
		}
		pts = append(pts, IKEPoint{Elapsed: time.Duration(ms) * time.Millisecond, Up: up, CPU: cpu})
		if up == 1000 {
			break
		}
	}
	var run IKERun
	setupRates(&run, pts)
	if len(run.Deciles) != 10 || run.RateWindow != 100 {
		t.Fatalf("deciles %v, window %d", run.Deciles, run.RateWindow)
	}
	near := func(got, want float64) bool { return got > want*0.99 && got < want*1.01 }
	for i, r := range run.Deciles {
		want, cpu := 100.0, 2.0
		if i >= 5 {
			want, cpu = 50, 4
		}
		if !near(r, want) || !near(run.DecileCPU[i], cpu) {
			t.Errorf("decile %d: %.1f/s, %.2f ms CPU per IKE SA; want %.0f, %.0f", i, r, run.DecileCPU[i], want, cpu)
		}
	}
	if !near(run.FirstRate, 100) || !near(run.LastRate, 50) || !near(run.FirstCPU, 2) || !near(run.LastCPU, 4) {
		t.Errorf("first %.1f/s %.2f ms, last %.1f/s %.2f ms; want 100, 2, 50, 4", run.FirstRate, run.FirstCPU, run.LastRate, run.LastCPU)
	}
	if len(run.Curve) != curveSteps || run.Curve[len(run.Curve)-1].Up != 1000 {
		t.Errorf("curve of %d points, last %+v", len(run.Curve), run.Curve[len(run.Curve)-1])
	}
	if at, ok := crossing(pts, 250); !ok || at.Elapsed != 2500*time.Millisecond || at.CPU != 500*time.Millisecond {
		t.Errorf("250 reached at %+v, %v; want 2.5s, 500ms of CPU", at, ok)
	}
	if _, ok := crossing(pts, 1001); ok {
		t.Error("1001 reached")
	}
	// Too few to tell.
	run = IKERun{}
	setupRates(&run, []IKEPoint{{Elapsed: time.Second, Up: 5}})
	if run.Deciles != nil || run.FirstRate != 0 {
		t.Errorf("5 IKE SAs: %+v", run)
	}
}

func TestRateWindow(t *testing.T) {
	for n, want := range map[int]int{1000: 100, 100000: 10000, 1000000: 10000} {
		if got := rateWindow(n); got != want {
			t.Errorf("rateWindow(%d) = %d, want %d", n, got, want)
		}
	}
}
