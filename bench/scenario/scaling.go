package scenario

import (
	"fmt"
	"runtime"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

// Scaling is scenario 2: spud with 1..N SPUs per gateway, carrying enough
// tunnels (with distinct peers, so distinct anchors) to spread over them.
// SPU counts above the machine's CPUs are simulated: several SPUs then
// share a core, which shows the cost of the anchoring hand-offs, not
// parallel speed-up, and the results say so.
type Scaling struct {
	SPUs    []int
	Tunnels int
	Mixes   []traffic.Mix
	Suite   string
	Timing  traffic.Timing
	Search  Search
}

// ScalingRun is one SPU count and packet size.
type ScalingRun struct {
	SPUs      int     `json:"spus"`
	Simulated bool    `json:"simulated"` // more SPUs than CPUs
	Mix       string  `json:"mix"`
	PPS       float64 `json:"pps"`
	Gbps      float64 `json:"gbps"`
	Found     *Found  `json:"search,omitempty"`
	// Work is each SPU's share of the packets it sealed or opened, per
	// gateway, over the runs: how evenly the anchors spread.
	Work      map[string][]uint64          `json:"spu_packets,omitempty"`
	SpudDrops map[string]map[string]uint64 `json:"spud_drops,omitempty"`
	Error     string                       `json:"error,omitempty"`
}

// ScalingResults are scenario 2's results.
type ScalingResults struct {
	CPUs    int          `json:"cpus"`
	Tunnels int          `json:"tunnels"`
	Suite   string       `json:"suite"`
	Runs    []ScalingRun `json:"runs"`
}

func (c *Scaling) defaults() {
	if len(c.SPUs) == 0 {
		n := runtime.NumCPU()
		for i := 1; i <= n; i++ {
			c.SPUs = append(c.SPUs, i)
		}
		c.SPUs = append(c.SPUs, 2*n)
	}
	if c.Tunnels == 0 {
		c.Tunnels = 64
	}
	if len(c.Mixes) == 0 {
		c.Mixes = []traffic.Mix{traffic.Fixed(64), traffic.Fixed(1400)}
	}
	if c.Suite == "" {
		c.Suite = StandardSuites[0]
	}
	if c.Timing.Duration == 0 {
		c.Timing = traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond}
	}
	c.Search = c.Search.withDefaults()
}

// Estimate is how long Run should take.
func (c *Scaling) Estimate() time.Duration {
	c.defaults()
	return time.Duration(len(c.SPUs))*(time.Duration(len(c.Mixes)*c.Search.Runs())*runTime(c.Timing)+3*time.Second) + 5*time.Second
}

// Run measures every SPU count on one line.
func (c *Scaling) Run(e *Env) (*ScalingResults, error) {
	c.defaults()
	res := &ScalingResults{CPUs: runtime.NumCPU(), Tunnels: c.Tunnels, Suite: c.Suite}
	bed, err := e.NewBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	plan := system.Plan{Tunnels: c.Tunnels, Suite: c.Suite, Line: bed.Plan}
	for _, n := range c.SPUs {
		sim := n > res.CPUs
		e.Progress.Step(fmt.Sprintf("scaling: starting spud with %d SPUs", n), 3*time.Second)
		sp := &system.Spud{SPUs: n}
		if err := sp.Up(bed.Line, plan); err != nil {
			e.Logf("scaling: %d SPUs: %v", n, err)
			for _, m := range c.Mixes {
				res.Runs = append(res.Runs, ScalingRun{SPUs: n, Simulated: sim, Mix: m.Name, Error: err.Error()})
			}
			continue
		}
		for _, m := range c.Mixes {
			run := ScalingRun{SPUs: n, Simulated: sim, Mix: m.Name}
			label := fmt.Sprintf("scaling: %d SPUs, %d tunnels, %s bytes", n, c.Tunnels, m.Name)
			if sim {
				label += " (simulated: more SPUs than CPUs)"
			}
			e.Progress.Step(label, time.Duration(c.Search.Runs())*runTime(c.Timing))
			drops0 := spudDrops(sp)
			work0, _ := sp.SPUWork()
			found, err := bed.Search(plan, Spec{Label: label, Mix: m, Flows: c.Tunnels, Timing: c.Timing}, c.Search)
			if found != nil {
				run.Found, run.PPS, run.Gbps = found, found.PPS(), found.Gbps()
			}
			if err != nil {
				run.Error = err.Error()
				e.Logf("%s: %v", label, err)
			} else {
				e.Logf("%s: %s", label, searchLine(found))
			}
			if work1, err := sp.SPUWork(); err == nil {
				run.Work = map[string][]uint64{}
				for h, w := range work1 {
					for i, v := range w {
						if i < len(work0[h]) {
							v -= work0[h][i]
						}
						run.Work[h] = append(run.Work[h], v)
					}
				}
			}
			run.SpudDrops = system.DropsSince(drops0, spudDrops(sp))
			res.Runs = append(res.Runs, run)
		}
		if err := sp.Down(); err != nil {
			e.Logf("scaling: stopping spud: %v", err)
		}
	}
	return res, nil
}
