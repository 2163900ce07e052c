package scenario

import (
	"fmt"

	"github.com/spugate/spugate/bench/system"
)

// Search finds the highest rate a system carries with at most Tolerance
// loss, RFC 2544 style but short: one run as fast as the generator goes,
// then Steps paced runs bisecting between the best rate that passed and
// the lowest that failed, starting at the rate delivered flat out.
//
// On a machine where the generator shares the cores with the gateways,
// the flat-out run understates a system (the spinning generator takes CPU
// the gateways need): the paced runs are the fair figure.
type Search struct {
	Steps     int     // paced runs after the flat-out one (default 3)
	Tolerance float64 // loss ratio a passing run may have (default 0.01)
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
	// Best is the fastest run that passed (nil if none did).
	Best  *Measurement `json:"best,omitempty"`
	Steps []Step       `json:"steps"`
}

// PPS is the figure to compare: Best's received rate, or Max's when no
// paced run passed.
func (f *Found) PPS() float64 {
	if f.Best != nil {
		return f.Best.PPS
	}
	return f.Max.PPS
}

// Gbps goes with PPS.
func (f *Found) Gbps() float64 {
	if f.Best != nil {
		return f.Best.Gbps
	}
	return f.Max.Gbps
}

func (s Search) withDefaults() Search {
	if s.Steps == 0 {
		s.Steps = 3
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
	max, err := b.Measure(p, spec)
	if err != nil {
		return nil, err
	}
	f := &Found{Max: max}
	pass := func(r Measurement) bool { return r.LossRatio <= s.Tolerance }
	f.Steps = append(f.Steps, Step{Offered: max.OfferedPPS, PPS: max.PPS, Loss: max.LossRatio, Pass: pass(max)})
	// The flat-out run passing means the generator is the limit: nothing to search.
	if pass(max) {
		f.Best = &max
		return f, nil
	}
	lo, hi := 0.0, max.OfferedPPS
	rate := max.PPS
	spec.Profile, spec.During = "", nil
	for i := range s.Steps {
		spec.Rate = rate
		spec.Label = fmt.Sprintf("%s at %.0f kpps (%d/%d)", label, rate/1e3, i+1, s.Steps)
		r, err := b.Measure(p, spec)
		if err != nil {
			return f, err
		}
		ok := pass(r)
		f.Steps = append(f.Steps, Step{Rate: rate, Offered: r.OfferedPPS, PPS: r.PPS, Loss: r.LossRatio, Pass: ok})
		if ok {
			if f.Best == nil || r.PPS > f.Best.PPS {
				rr := r
				f.Best = &rr
			}
			lo = rate
		} else {
			hi = rate
		}
		if lo == 0 {
			rate = hi / 2
		} else {
			rate = (lo + hi) / 2
		}
	}
	return f, nil
}
