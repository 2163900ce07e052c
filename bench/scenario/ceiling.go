package scenario

import (
	"fmt"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

// Ceiling measures the generator sending straight into the sink over one
// veth with the run's link settings, per packet size: the most any system
// can show in this lab, with the generator and the sink alone on the
// cores. A system that reaches it is limited by the traffic tools, not
// by itself.
type Ceiling struct {
	Mixes  []traffic.Mix
	Flows  int
	Timing traffic.Timing
}

// CeilingRun is one packet size.
type CeilingRun struct {
	Mix    string       `json:"mix"`
	Result *Measurement `json:"result,omitempty"`
	Error  string       `json:"error,omitempty"`
}

func (c *Ceiling) defaults() {
	if len(c.Mixes) == 0 {
		c.Mixes = []traffic.Mix{traffic.Fixed(64), traffic.Fixed(512), traffic.Fixed(1400), traffic.IMIX()}
	}
	if c.Flows == 0 {
		c.Flows = 16
	}
	if c.Timing.Duration == 0 {
		c.Timing = traffic.Timing{Warmup: time.Second, Duration: 3 * time.Second}
	}
}

// Estimate is how long Run should take.
func (c *Ceiling) Estimate() time.Duration {
	c.defaults()
	return time.Duration(len(c.Mixes))*(c.Timing.Warmup+c.Timing.Duration+2*time.Second) + 2*time.Second
}

// Run measures every packet size.
func (c *Ceiling) Run(e *Env) ([]CeilingRun, error) {
	c.defaults()
	bed, err := e.NewDirectBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	plan := system.Plan{Tunnels: 1, Line: bed.Plan}
	var out []CeilingRun
	for _, m := range c.Mixes {
		spec := Spec{Label: fmt.Sprintf("ceiling: generator to sink, %s bytes", m.Name), Mix: m, Flows: c.Flows, Timing: c.Timing}
		e.Progress.Step(spec.Label, c.Timing.Warmup+c.Timing.Duration+2*time.Second)
		r, err := bed.Measure(plan, spec)
		run := CeilingRun{Mix: m.Name}
		if err != nil {
			run.Error = err.Error()
			e.Logf("%s: %v", spec.Label, err)
		} else {
			run.Result = &r
			e.Logf("%s: %s", spec.Label, oneLine(r.Result))
		}
		out = append(out, run)
	}
	return out, nil
}
