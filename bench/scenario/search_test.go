package scenario

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/spugate/spugate/bench/traffic"
)

// fakeSystem answers a search's runs from a loss curve: offered is what
// the generator managed for a target (0: flat out), loss what the system
// lost of it.
type fakeSystem struct {
	genMax  float64 // the generator's flat-out rate
	offered func(target float64) float64
	loss    func(offered float64, flatOut bool) float64
	rates   []float64
}

func (s *fakeSystem) try(rate float64, i int) (Measurement, error) {
	s.rates = append(s.rates, rate)
	o := s.genMax
	if rate > 0 {
		o = min(rate, s.genMax)
		if s.offered != nil {
			o = s.offered(rate)
		}
	}
	l := s.loss(o, rate == 0)
	return Measurement{Result: traffic.Result{OfferedPPS: o, PPS: o * (1 - l), LossRatio: l}}, nil
}

// cliff loses nothing up to c and at least 5 % above it (everything
// over c, once that is more).
func cliff(c float64) func(float64, bool) float64 {
	return func(o float64, _ bool) float64 {
		if o <= c {
			return 0
		}
		return max(0.05, 1-c/o)
	}
}

// checkConverged: the bracket closed on the known rate c.
func checkConverged(t *testing.T, f *Found, s Search, c float64) {
	t.Helper()
	s = s.withDefaults()
	if f.Stop != StopResolution || f.Best == nil {
		t.Fatalf("stop %q, best %v, steps %+v", f.Stop, f.Best, f.Steps)
	}
	if f.Low > c*(1+1e-9) || f.High <= c || f.High/f.Low >= 1+s.Resolution {
		t.Fatalf("bracket [%.0f, %.0f] does not close on %.0f within %.0f%%: %+v", f.Low, f.High, c, s.Resolution*100, f.Steps)
	}
	if f.Best.OfferedPPS != f.Low || f.Best.LossRatio > s.Tolerance {
		t.Fatalf("best %+v is not the bracket's low end %.0f", f.Best.Result, f.Low)
	}
	if f.Trials != len(f.Steps) || f.Trials > s.Runs() {
		t.Fatalf("%d trials, %d steps, at most %d runs", f.Trials, len(f.Steps), s.Runs())
	}
}

func TestSearchCliff(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     float64
		flatK float64 // what flat out delivers, as a share of c
	}{
		{"flat out delivers the capacity", 250e3, 1},
		{"flat out understates (shared cores)", 250e3, 0.6},
		{"flat out overstates", 250e3, 1.3},
		{"near the generator", 1e6, 1},
		{"slow system", 20e3, 0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &fakeSystem{genMax: 1.1e6, loss: func(o float64, flat bool) float64 {
				if flat {
					return 1 - tc.c*tc.flatK/o
				}
				return cliff(tc.c)(o, false)
			}}
			s := Search{}
			f, err := s.run(sys.try)
			if err != nil {
				t.Fatal(err)
			}
			checkConverged(t, f, s, tc.c)
			if f.PPS() < f.Best.PPS {
				t.Fatalf("peak %.0f under the throughput %.0f", f.PPS(), f.Best.PPS)
			}
			t.Logf("%d trials: %.0f", f.Trials, sys.rates)
		})
	}
}

// Real offered rates fall a little short of the target, and the loss
// under the capacity is not zero: both move at random, the cliff does not.
func TestSearchNoisy(t *testing.T) {
	const c = 180e3
	worst := 0
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		sys := &fakeSystem{genMax: 900e3,
			offered: func(r float64) float64 { return r * (1 - 0.004*rng.Float64()) },
			loss: func(o float64, flat bool) float64 {
				if flat || o > c {
					return max(0.011, 1-c/o) + 0.05*rng.Float64()
				}
				return 0.009 * rng.Float64()
			}}
		s := Search{}
		f, err := s.run(sys.try)
		if err != nil {
			t.Fatal(err)
		}
		checkConverged(t, f, s, c)
		worst = max(worst, f.Trials)
	}
	t.Logf("at most %d trials", worst)
}

// A system whose passes and failures disagree near its capacity (a
// failure under a rate that passed) gets the rate under the failure.
func TestSearchFailureUnderPass(t *testing.T) {
	const c = 200e3
	n := 0
	sys := &fakeSystem{genMax: 1e6, loss: func(o float64, flat bool) float64 {
		if flat {
			return 1 - c/o
		}
		n++
		if n == 3 {
			return 0.02 // one bad run, whatever the rate
		}
		return cliff(c)(o, false)
	}}
	f, err := Search{}.run(sys.try)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range f.Steps {
		if !st.Pass && st.Offered <= f.Low {
			t.Fatalf("throughput %.0f above a failed run: %+v", f.Low, f.Steps)
		}
	}
	if f.Best == nil || f.Best.OfferedPPS != f.Low || f.Low > c {
		t.Fatalf("best %v, bracket [%.0f, %.0f]: %+v", f.Best, f.Low, f.High, f.Steps)
	}
	t.Logf("%d trials: %.0f; bracket [%.0f, %.0f] %s", f.Trials, sys.rates, f.Low, f.High, f.Stop)
}

// A system that loses a little at every rate has no throughput: the search
// says none, and ends.
func TestSearchLossEverywhere(t *testing.T) {
	for _, l := range []float64{0.012, 0.03, 0.5} {
		sys := &fakeSystem{genMax: 1e6, loss: func(o float64, flat bool) float64 {
			if flat {
				return max(l, 1-150e3/o)
			}
			return l
		}}
		s := Search{}
		f, err := s.run(sys.try)
		if err != nil {
			t.Fatal(err)
		}
		if f.Best != nil || f.WithinTolerance() != 0 || f.Low != 0 || f.Converged() {
			t.Fatalf("loss %.3f: found a throughput: best %v, bracket [%.0f, %.0f], %s", l, f.Best, f.Low, f.High, f.Stop)
		}
		if f.Trials > s.Runs() || f.Peak.PPS == 0 {
			t.Fatalf("loss %.3f: %d trials, peak %v", l, f.Trials, f.Peak)
		}
		t.Logf("loss %.3f: %d trials, %s: %.0f", l, f.Trials, f.Stop, sys.rates)
	}
	// Nothing passes down to the floor: the search stops there.
	sys := &fakeSystem{genMax: 1e6, loss: func(float64, bool) float64 { return 0.9 }}
	f, err := Search{Steps: 50}.run(sys.try)
	if err != nil {
		t.Fatal(err)
	}
	if f.Stop != StopFloor || f.Best != nil || slicesMin(sys.rates[1:]) < MinSearchRate {
		t.Fatalf("stop %q, best %v, rates %.0f", f.Stop, f.Best, sys.rates)
	}
}

func slicesMin(x []float64) float64 {
	m := x[0]
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

// A flat-out run that delivered next to nothing stalled: the search starts
// from the hint, or from a gentle load, and still finds the capacity.
func TestSearchStalledFlatOut(t *testing.T) {
	const c = 300e3
	for _, hint := range []float64{0, 250e3, 800e3} {
		sys := &fakeSystem{genMax: 1.1e6, loss: func(o float64, flat bool) float64 {
			if flat {
				return 1 - 50/o
			}
			return cliff(c)(o, false)
		}}
		s := Search{Hint: hint}
		f, err := s.run(sys.try)
		if err != nil {
			t.Fatal(err)
		}
		if f.Stalled != (hint > 0) {
			t.Fatalf("hint %.0f: stalled %v", hint, f.Stalled)
		}
		checkConverged(t, f, s, c)
		t.Logf("hint %.0f: %d trials: %.0f", hint, f.Trials, sys.rates)
	}
}

func TestSearchFlatOutPasses(t *testing.T) {
	sys := &fakeSystem{genMax: 500e3, loss: cliff(2e6)}
	f, err := Search{}.run(sys.try)
	if err != nil {
		t.Fatal(err)
	}
	if f.Stop != StopFlatOut || f.Trials != 1 || f.Best == nil || f.Low != 500e3 || f.High != 0 || !f.Converged() {
		t.Fatalf("%+v", f)
	}
}

// The generator paces no faster than some rate under its flat-out one:
// a pass short of its target ends the search there.
func TestSearchGeneratorLimit(t *testing.T) {
	sys := &fakeSystem{genMax: 1e6, offered: func(r float64) float64 { return min(r, 400e3) }, loss: func(o float64, flat bool) float64 {
		if flat {
			return 1 - 300e3/o
		}
		return cliff(2e6)(o, false)
	}}
	f, err := Search{}.run(sys.try)
	if err != nil {
		t.Fatal(err)
	}
	if f.Stop != StopGenerator || f.Low != 400e3 || f.High != 400e3 || f.Best == nil || !f.Converged() {
		t.Fatalf("stop %q, bracket [%.0f, %.0f]: %+v", f.Stop, f.Low, f.High, f.Steps)
	}
}

// Steps bounds the paced runs (the quick runs and the tests use 1).
func TestSearchSteps(t *testing.T) {
	for _, steps := range []int{1, 2, 3} {
		sys := &fakeSystem{genMax: 1e6, loss: func(o float64, flat bool) float64 {
			if flat {
				return 1 - 100e3/o
			}
			return cliff(150e3)(o, false)
		}}
		f, err := Search{Steps: steps}.run(sys.try)
		if err != nil {
			t.Fatal(err)
		}
		if f.Trials != steps+1 || len(sys.rates) != steps+1 || f.Stop != StopSteps || f.Best == nil {
			t.Fatalf("steps %d: %d trials, stop %q, best %v", steps, f.Trials, f.Stop, f.Best)
		}
		if f.Low > 150e3 || f.High <= 150e3 {
			t.Fatalf("steps %d: bracket [%.0f, %.0f] misses the capacity", steps, f.Low, f.High)
		}
	}
}

func TestSearchError(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	f, err := Search{}.run(func(rate float64, i int) (Measurement, error) {
		n++
		if n == 3 {
			return Measurement{}, boom
		}
		l := cliff(100e3)(max(rate, 1e6), false)
		return Measurement{Result: traffic.Result{OfferedPPS: max(rate, 1e6), PPS: max(rate, 1e6) * (1 - l), LossRatio: l}}, nil
	})
	if !errors.Is(err, boom) || f == nil || f.Trials != 3 || len(f.Steps) != 2 {
		t.Fatalf("err %v, found %+v", err, f)
	}
	if _, err := (Search{}).run(func(float64, int) (Measurement, error) { return Measurement{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("flat-out error: %v", err)
	}
}
