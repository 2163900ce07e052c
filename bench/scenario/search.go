package scenario

import (
	"fmt"

	"github.com/spugate/spugate/bench/system"
)

// Search measures a system's maximum forwarding rate (RFC 2285: the
// most it delivered over a few offered loads) and its throughput within a
// loss tolerance (RFC 2544 style, short): one run as fast as the generator
// goes, then Steps paced runs, each aimed from what the previous one
// delivered: above it when the system kept up, just below what it managed
// when it did not.
//
// On a machine where the generator shares the cores with the gateways the
// flat-out run understates a system (the spinning generator takes CPU the
// gateways need), which is why paced runs follow; and a system that drops
// a little at every load never passes a strict tolerance, which is why the
// maximum forwarding rate is the headline figure and the tolerance
// figure comes with it.
type Search struct {
	Steps     int     // paced runs after the flat-out one (default 2)
	Tolerance float64 // loss ratio a run may have to pass (default 0.01)
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

// Found is a search's outcome.
type Found struct {
	// Max is the flat-out run.
	Max Measurement `json:"max"`
	// Peak is the run that delivered the most: the maximum forwarding
	// rate, at whatever loss it had.
	Peak *Measurement `json:"peak"`
	// Best is the fastest run within the tolerance (nil if none was).
	Best  *Measurement `json:"best,omitempty"`
	Steps []Step       `json:"steps"`
	// Stalled: the flat-out run delivered under a quarter of the hint.
	Stalled bool `json:"stalled,omitempty"`
}

// PPS is the figure compared: the maximum forwarding rate.
func (f *Found) PPS() float64 { return f.Peak.PPS }

// Gbps goes with PPS.
func (f *Found) Gbps() float64 { return f.Peak.Gbps }

// Loss is the loss ratio of the run that gave PPS.
func (f *Found) Loss() float64 { return f.Peak.LossRatio }

// WithinTolerance is the fastest received rate within the tolerance, or 0.
func (f *Found) WithinTolerance() float64 {
	if f.Best == nil {
		return 0
	}
	return f.Best.PPS
}

func (s Search) withDefaults() Search {
	if s.Steps == 0 {
		s.Steps = 2
	}
	if s.Tolerance == 0 {
		s.Tolerance = 0.01
	}
	return s
}

// Runs is the number of measurements a search makes.
func (s Search) Runs() int { return s.withDefaults().Steps + 1 }

// Search runs spec flat out and then paced, as s says.
func (b *Bed) Search(p system.Plan, spec Spec, s Search) (*Found, error) {
	s = s.withDefaults()
	label := spec.Label
	spec.Rate = 0
	spec.Label = label + " flat out"
	flat, err := b.Measure(p, spec)
	if err != nil {
		return nil, err
	}
	f := &Found{Max: flat, Peak: &flat}
	keep := func(r Measurement, rate float64) bool {
		ok := r.LossRatio <= s.Tolerance
		f.Steps = append(f.Steps, Step{Rate: rate, Offered: r.OfferedPPS, PPS: r.PPS, Loss: r.LossRatio, Pass: ok})
		rr := r
		if r.PPS > f.Peak.PPS {
			f.Peak = &rr
		}
		if ok && (f.Best == nil || r.PPS > f.Best.PPS) {
			f.Best = &rr
		}
		return ok
	}
	// Flat out within tolerance: the generator is the limit, nothing to
	// search.
	if keep(flat, 0) {
		return f, nil
	}
	spec.Profile, spec.During, spec.NoProbe = "", nil, true
	rate := flat.PPS
	if rate < 1000 {
		// Next to nothing got through flat out (a stalled system): see
		// what it does with a gentle load.
		rate = min(10000, flat.OfferedPPS/10)
	}
	if s.Hint > 0 && flat.PPS < s.Hint/4 {
		f.Stalled = true
		rate = min(s.Hint/2, flat.OfferedPPS)
	}
	for i := range s.Steps {
		if rate <= 0 {
			break
		}
		spec.Rate = rate
		spec.Label = fmt.Sprintf("%s at %.0f kpps (%d/%d)", label, rate/1e3, i+1, s.Steps)
		r, err := b.Measure(p, spec)
		if err != nil {
			return f, err
		}
		if keep(r, rate) {
			// It kept up: offer more, up to what the generator managed.
			rate = min(rate*1.4, flat.OfferedPPS)
		} else {
			// Just below what it delivered, unless that is no lower.
			rate = min(r.PPS, rate) * 0.85
		}
	}
	return f, nil
}
