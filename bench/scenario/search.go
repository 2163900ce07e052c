package scenario

import (
	"fmt"
	"math"

	"github.com/spugate/spugate/bench/system"
)

// Search measures a system's maximum forwarding rate (RFC 2285: the
// most it delivered over the runs, at whatever loss) and its throughput
// (RFC 2544 section 26.1: the highest offered rate at which it lost no
// more than the tolerance), by a binary search over offered rates:
//
//   - one run as fast as the generator goes. Within the tolerance, the
//     generator is the limit and the search ends; otherwise its offered
//     rate is the top of the bracket (nothing faster can be offered);
//   - the first paced run is offered what the flat-out run delivered
//     (after a stall, half the Hint, or a gentle 10 kpps without one);
//   - until a paced run passes, each one goes below what the previous
//     one delivered, 10 % the first time, then 19 %, 27 %... (the
//     overloaded system's delivered rate is the best guess at its
//     capacity; the growing step ends the search quickly for a system
//     that loses a little at every rate), down to MinSearchRate;
//   - once a rate passed, the next run doubles it (or goes halfway, on a
//     log scale, to the generator's flat-out rate, if that is closer);
//     once a higher one also failed, each run is offered at the geometric
//     middle of the two, until the bracket's high/low is under
//     1+Resolution or Steps paced runs were made.
//
// The bracket is kept in offered rates (what the generator managed, not
// what it was asked for). A run that fails at or below a rate that
// passed (noise) lowers the bracket to it: the throughput is only ever a
// rate with no failed run at or below it.
//
// On a machine where the generator shares the cores with the gateways
// the flat-out run understates a system (the spinning generator takes
// CPU the gateways need), which is why the first paced run is aimed at
// what it delivered rather than below.
type Search struct {
	// Steps bounds the paced runs after the flat-out one (default 10:
	// a cliff search takes 5 to 8).
	Steps     int
	Tolerance float64 // loss ratio a run may have to pass (default 0.01)
	// Resolution ends the search once the bracket's high/low is under
	// 1+Resolution (default 0.05).
	Resolution float64
	// Hint is a rate the same system delivered in a neighbouring
	// measurement (another packet size), or 0. A flat-out run that
	// delivers under a quarter of it stalled rather than saturated (on two
	// shared CPUs a flat-out generator can starve the receiving NAPI
	// thread, and the gateway's transmit frames never complete): the paced
	// steps then start from half the hint instead of from the stall.
	Hint float64
}

// Step is one run of a search.
type Step struct {
	Rate    float64 `json:"target_pps"` // 0: flat out
	Offered float64 `json:"offered_pps"`
	PPS     float64 `json:"pps"`
	Loss    float64 `json:"loss_ratio"`
	Pass    bool    `json:"pass"`
}

// Why a search stopped (Found.Stop).
const (
	StopFlatOut    = "flat out within tolerance" // the generator is the limit
	StopResolution = "resolution"                // the bracket closed
	StopSteps      = "steps"                     // Search.Steps paced runs made
	StopFloor      = "floor"                     // no pass down to MinSearchRate
	StopGenerator  = "generator"                 // a paced run passed at all the generator offered
)

// MinSearchRate is the lowest rate a search offers: below it a 1 %
// tolerance is a packet or two of a short window, and a system that
// fails there has no throughput worth a figure.
const MinSearchRate = 1000

// Found is a search's outcome.
type Found struct {
	// Max is the flat-out run.
	Max Measurement `json:"max"`
	// Peak is the run that delivered the most: the maximum forwarding
	// rate, at whatever loss it had.
	Peak *Measurement `json:"peak"`
	// Best is the run at the bracket's low end: the fastest within the
	// tolerance with no failed run offered at or below its rate (nil if
	// none was).
	Best  *Measurement `json:"best,omitempty"`
	Steps []Step       `json:"steps"`
	// Stalled: the flat-out run delivered under a quarter of the hint.
	Stalled bool `json:"stalled,omitempty"`
	// Trials is the number of runs made, the flat-out one included.
	Trials int `json:"trials"`
	// Low and High are the final bracket, in offered packets/s: the
	// highest rate that passed (0: none) and the lowest that failed above
	// it (0: none failed, the flat-out run passed).
	Low  float64 `json:"bracket_low_pps"`
	High float64 `json:"bracket_high_pps"`
	// Stop says why the search ended (StopResolution...).
	Stop string `json:"stop"`
}

// PPS is the figure compared: the maximum forwarding rate.
func (f *Found) PPS() float64 { return f.Peak.PPS }

// Gbps goes with PPS.
func (f *Found) Gbps() float64 { return f.Peak.Gbps }

// Loss is the loss ratio of the run that gave PPS.
func (f *Found) Loss() float64 { return f.Peak.LossRatio }

// WithinTolerance is the received rate of the throughput run (Best), or
// 0.
func (f *Found) WithinTolerance() float64 {
	if f.Best == nil {
		return 0
	}
	return f.Best.PPS
}

// Converged: the bracket closed to the resolution, or the system carried
// all the generator offered.
func (f *Found) Converged() bool {
	return f.Stop == StopResolution || f.Stop == StopFlatOut || f.Stop == StopGenerator
}

func (s Search) withDefaults() Search {
	if s.Steps == 0 {
		s.Steps = 10
	}
	if s.Tolerance == 0 {
		s.Tolerance = 0.01
	}
	if s.Resolution == 0 {
		s.Resolution = 0.05
	}
	return s
}

// Runs is the most measurements a search makes.
func (s Search) Runs() int { return s.withDefaults().Steps + 1 }

// Search runs spec flat out and then paced, as s says.
func (b *Bed) Search(p system.Plan, spec Spec, s Search) (*Found, error) {
	s = s.withDefaults()
	label := spec.Label
	return s.run(func(rate float64, i int) (Measurement, error) {
		sp := spec
		sp.Rate = rate
		if i == 0 {
			sp.Label = label + " flat out"
		} else {
			// The flat-out run probed every flow and took the profile.
			sp.Profile, sp.During, sp.NoProbe = "", nil, true
			sp.Label = fmt.Sprintf("%s at %.0f kpps (%d/%d)", label, rate/1e3, i, s.Steps)
		}
		return b.Measure(p, sp)
	})
}

// trial makes run i of a search at rate (0 and i 0: flat out).
type trial func(rate float64, i int) (Measurement, error)

// pass is a run that passed, by offered rate.
type pass struct {
	offered float64
	m       *Measurement
}

// run is the search itself, apart from the bed so that it can be tested
// against a made-up system.
func (s Search) run(try trial) (*Found, error) {
	s = s.withDefaults()
	flat, err := try(0, 0)
	if err != nil {
		return nil, err
	}
	f := &Found{Max: flat, Peak: &flat, Trials: 1}
	offered := func(r Measurement, rate float64) float64 {
		if r.OfferedPPS > 0 {
			return r.OfferedPPS
		}
		return rate
	}
	record := func(r Measurement, rate float64) (*Measurement, bool) {
		ok := r.LossRatio <= s.Tolerance
		f.Steps = append(f.Steps, Step{Rate: rate, Offered: r.OfferedPPS, PPS: r.PPS, Loss: r.LossRatio, Pass: ok})
		rr := r
		if r.PPS > f.Peak.PPS {
			f.Peak = &rr
		}
		return &rr, ok
	}
	if m, ok := record(flat, 0); ok {
		f.Best, f.Low, f.Stop = m, offered(flat, 0), StopFlatOut
		return f, nil
	}
	// The generator offers no more than it managed flat out.
	ceiling := flat.OfferedPPS
	var passes []pass
	low, high := 0.0, ceiling
	highPaced := false // high is a paced run's failure, not the ceiling
	rate := flat.PPS
	if rate < MinSearchRate {
		// Next to nothing got through flat out (a stalled system): see
		// what it does with a gentle load.
		rate = min(10000, ceiling/10)
	}
	if s.Hint > 0 && flat.PPS < s.Hint/4 {
		f.Stalled = true
		rate = min(s.Hint/2, ceiling)
	}
	downs := 0 // failed paced runs: the step down grows with them
	f.Stop = StopSteps
	for i := 1; i <= s.Steps; i++ {
		if rate < MinSearchRate {
			f.Stop = StopFloor
			break
		}
		r, err := try(rate, i)
		f.Trials++
		if err != nil {
			f.finish(low, high, passes)
			return f, err
		}
		m, ok := record(r, rate)
		o := offered(r, rate)
		switch {
		case ok && (o < high || !highPaced):
			passes = append(passes, pass{o, m})
			if o > low {
				low = o
				if o >= high || o < rate/(1+s.Resolution) {
					// At the generator's limit: it offers no more,
					// paced or not.
					high, f.Stop = low, StopGenerator
				}
			}
		case ok:
			// Passed above a rate that failed: noise; the failure stands.
		default:
			downs++
			if o <= low {
				// Failed at or below a rate that passed: noise; only
				// what passed below this failure still counts.
				low = 0
				for _, p := range passes {
					if p.offered < o {
						low = max(low, p.offered)
					}
				}
			}
			high, highPaced = min(high, o), true
		}
		if f.Stop == StopGenerator {
			break
		}
		if low > 0 && high/low < 1+s.Resolution {
			f.Stop = StopResolution
			break
		}
		switch {
		case low > 0 && !highPaced:
			// Nothing paced failed yet: up by at most 2×, the top of
			// the bracket being only what the generator can offer.
			rate = min(2*low, math.Sqrt(low*high))
		case low > 0:
			rate = math.Sqrt(low * high)
		default:
			// Below what the overloaded run delivered, by a growing step.
			rate = min(r.PPS, rate, high) * math.Pow(0.9, float64(downs))
		}
	}
	f.finish(low, high, passes)
	return f, nil
}

// finish records the bracket and its passing run.
func (f *Found) finish(low, high float64, passes []pass) {
	f.Low, f.High = low, high
	for _, p := range passes {
		if p.offered == low {
			f.Best = p.m
		}
	}
}

// Bracket says how many runs the search made and where it ended, for logs
// and reports: "7 runs, bracket 0.231–0.240 Mpps (resolution)".
func (f *Found) Bracket() string {
	switch {
	case f.Stop == StopFlatOut:
		return fmt.Sprintf("%d run, flat out within tolerance at %.3f Mpps offered", f.Trials, f.Low/1e6)
	case f.Low == 0:
		return fmt.Sprintf("%d runs, none within tolerance, lowest failing %.3f Mpps offered (%s)", f.Trials, f.High/1e6, f.Stop)
	}
	return fmt.Sprintf("%d runs, bracket %.3f–%.3f Mpps offered (%s)", f.Trials, f.Low/1e6, f.High/1e6, f.Stop)
}
