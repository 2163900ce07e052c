package scenario

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

// Rekey is scenario 5: throughput and loss while every tunnel's Child SA
// is replaced at a fixed interval, against the same traffic with no
// rekeying, in the same run.
//
// The harness does what iked's rekey does to the data plane, through the
// SA API, for many tunnels at once: a new inbound SA, then the new
// outbound SAs (the policies switch to the newest outbound SA of their
// reqid), then the old outbound SAs are deleted and, after Grace, the old
// inbound one (make-before-break). What this measures is the data plane's
// side of a rekey (SA installs and deletes under load, the policy switch,
// packets in flight on the old SA), not the IKE exchange; Iked adds the
// whole rekey, exchange included, on one tunnel.
type Rekey struct {
	Tunnels  int
	Interval time.Duration
	Grace    time.Duration
	Mix      traffic.Mix
	Suite    string
	// Rate is the offered load of both runs; 0: what a short search finds
	// the system carries within its tolerance (or half its peak).
	Rate     float64
	Duration time.Duration
	Search   Search
	// Iked adds the same comparison with iked itself rekeying one
	// site-to-site tunnel's Child SA (rekey_time = Interval) between spud
	// and iked on both gateways: the whole rekey, IKE exchange included.
	Iked bool
	// IkedInterval is iked's rekey_time (default Interval).
	IkedInterval time.Duration
}

// RekeyRun is one run: with or without rekeying.
type RekeyRun struct {
	Rekeying bool         `json:"rekeying"`
	Result   *Measurement `json:"result,omitempty"`
	// Rounds of rekeying done during the window, Rekeys the tunnels
	// rekeyed in all, Failed those that failed; RoundTime the mean time
	// one round took.
	Rounds    int                          `json:"rounds,omitempty"`
	Rekeys    int                          `json:"rekeys,omitempty"`
	Failed    int                          `json:"failed,omitempty"`
	RoundTime time.Duration                `json:"round_ns,omitempty"`
	SpudDrops map[string]map[string]uint64 `json:"spud_drops,omitempty"`
	Error     string                       `json:"error,omitempty"`
}

// RekeyResults are scenario 5's results.
type RekeyResults struct {
	Tunnels  int           `json:"tunnels"`
	Interval time.Duration `json:"interval_ns"`
	Grace    time.Duration `json:"grace_ns"`
	Mix      string        `json:"mix"`
	Suite    string        `json:"suite"`
	Rate     float64       `json:"rate_pps"`
	Search   *Found        `json:"search,omitempty"`
	Runs     []RekeyRun    `json:"runs"`
	Errors   []string      `json:"errors,omitempty"`
	// Iked is the comparison with iked rekeying (Rekey.Iked).
	Iked *IkedRekeyResults `json:"iked,omitempty"`
}

// IkedRekeyResults are the runs with iked rekeying one tunnel's Child SA.
type IkedRekeyResults struct {
	Interval time.Duration `json:"interval_ns"`
	Rate     float64       `json:"rate_pps"`
	Search   *Found        `json:"search,omitempty"`
	Runs     []RekeyRun    `json:"runs"`
	Error    string        `json:"error,omitempty"`
}

func (c *Rekey) defaults() {
	if c.Tunnels == 0 {
		c.Tunnels = 16
	}
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
	}
	if c.Grace == 0 {
		c.Grace = 200 * time.Millisecond
	}
	if c.Mix.Name == "" {
		c.Mix = traffic.Fixed(512)
	}
	if c.Suite == "" {
		c.Suite = StandardSuites[0]
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Search.Steps == 0 {
		c.Search.Steps = 2
	}
	c.Search = c.Search.withDefaults()
	if c.IkedInterval == 0 {
		c.IkedInterval = c.Interval
	}
}

func (c *Rekey) timing() traffic.Timing {
	return traffic.Timing{Warmup: 500 * time.Millisecond, Duration: c.Duration}
}

// Estimate is how long Run should take.
func (c *Rekey) Estimate() time.Duration {
	c.defaults()
	search := time.Duration(c.Search.Runs()) * runTime(traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond})
	d := 2*runTime(c.timing()) + 4*time.Second
	if c.Rate == 0 {
		d += search
	}
	if c.Iked {
		d += 2*runTime(c.timing()) + 10*time.Second + search
	}
	return d
}

// Run measures the two runs on one pair of spuds.
func (c *Rekey) Run(e *Env) (*RekeyResults, error) {
	c.defaults()
	res := &RekeyResults{Tunnels: c.Tunnels, Interval: c.Interval, Grace: c.Grace, Mix: c.Mix.Name, Suite: c.Suite}
	bed, err := e.NewBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	plan := system.Plan{Tunnels: c.Tunnels, Suite: c.Suite, Line: bed.Plan}
	e.Progress.Step("rekey: starting spud", 3*time.Second)
	sp := &system.Spud{}
	if err := sp.Up(bed.Line, plan); err != nil {
		return nil, err
	}
	defer sp.Down()
	res.Rate = c.Rate
	if res.Rate == 0 {
		label := fmt.Sprintf("rekey: finding the rate, %d tunnels, %s bytes", c.Tunnels, c.Mix.Name)
		t := traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond}
		e.Progress.Step(label, time.Duration(c.Search.Runs())*runTime(t))
		found, err := bed.Search(plan, Spec{Label: label, Mix: c.Mix, Flows: c.Tunnels, Timing: t}, c.Search)
		if err != nil {
			return nil, err
		}
		res.Search = found
		// The rate it carries within the tolerance, or half its peak.
		res.Rate = found.WithinTolerance()
		if res.Rate == 0 {
			res.Rate = found.PPS() / 2
		}
		e.Logf("%s: %s; rekey runs at %.0f kpps", label, searchLine(found), res.Rate/1e3)
	}
	for _, rekeying := range []bool{false, true} {
		run := RekeyRun{Rekeying: rekeying}
		label := fmt.Sprintf("rekey: %d tunnels at %.0f kpps, %s bytes, no rekeying", c.Tunnels, res.Rate/1e3, c.Mix.Name)
		spec := Spec{Label: label, Mix: c.Mix, Flows: c.Tunnels, Rate: res.Rate, Timing: c.timing()}
		var rounds, rekeys, failed atomic.Int64
		var roundTime atomic.Int64
		var errMu sync.Mutex
		if rekeying {
			spec.Label = fmt.Sprintf("rekey: %d tunnels at %.0f kpps, %s bytes, rekeying every %v", c.Tunnels, res.Rate/1e3, c.Mix.Name, c.Interval)
			spec.During = func(done <-chan struct{}) {
				tick := time.NewTicker(c.Interval)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
					}
					start := time.Now()
					var wg sync.WaitGroup
					for i := range c.Tunnels {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if err := sp.Rekey(i, c.Grace); err != nil {
								failed.Add(1)
								errMu.Lock()
								if len(res.Errors) < 10 {
									res.Errors = append(res.Errors, err.Error())
								}
								errMu.Unlock()
								return
							}
							rekeys.Add(1)
						}()
					}
					wg.Wait()
					roundTime.Add(int64(time.Since(start)))
					rounds.Add(1)
				}
			}
		}
		e.Progress.Step(spec.Label, runTime(spec.Timing))
		drops0 := spudDrops(sp)
		run.measure(e, bed, plan, spec)
		run.Rounds, run.Rekeys, run.Failed = int(rounds.Load()), int(rekeys.Load()), int(failed.Load())
		if run.Rounds > 0 {
			run.RoundTime = time.Duration(roundTime.Load() / int64(run.Rounds))
			e.Logf("rekey: %d rounds, %d rekeys (%d failed), %v per round", run.Rounds, run.Rekeys, run.Failed, run.RoundTime.Round(time.Millisecond))
		}
		run.SpudDrops = system.DropsSince(drops0, spudDrops(sp))
		res.Runs = append(res.Runs, run)
	}
	if c.Iked {
		sp.Down()
		res.Iked = c.iked(e, bed)
	}
	return res, nil
}

// iked runs the comparison with iked rekeying: a search on a tunnel that
// does not rekey for the rate, then a run without and a run with
// rekeying every Interval, each on freshly started daemons.
func (c *Rekey) iked(e *Env, bed *Bed) *IkedRekeyResults {
	out := &IkedRekeyResults{Interval: c.IkedInterval}
	plan := system.Plan{Tunnels: 1, Suite: c.Suite, Line: bed.Plan}
	for _, rekeying := range []bool{false, true} {
		k := &system.Iked{}
		what := "no rekeying"
		if rekeying {
			k.ChildRekey = c.IkedInterval
			what = fmt.Sprintf("iked rekeying the Child SA every %v", c.IkedInterval)
		}
		e.Progress.Step("rekey: starting spud and iked ("+what+")", 5*time.Second)
		if err := k.Up(bed.Line, plan); err != nil {
			out.Error = err.Error()
			e.Logf("rekey: iked: %v", err)
			return out
		}
		if out.Rate == 0 {
			label := fmt.Sprintf("rekey: finding the rate, spud+iked, 1 tunnel, %s bytes", c.Mix.Name)
			t := traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond}
			e.Progress.Step(label, time.Duration(c.Search.Runs())*runTime(t))
			found, err := bed.Search(plan, Spec{Label: label, Mix: c.Mix, Flows: 16, Timing: t}, c.Search)
			if err != nil {
				k.Down()
				out.Error = err.Error()
				return out
			}
			out.Search = found
			if out.Rate = found.WithinTolerance(); out.Rate == 0 {
				out.Rate = found.PPS() / 2
			}
			e.Logf("%s: %s; runs at %.0f kpps", label, searchLine(found), out.Rate/1e3)
		}
		run := RekeyRun{Rekeying: rekeying}
		spec := Spec{Label: fmt.Sprintf("rekey: spud+iked, 1 tunnel at %.0f kpps, %s bytes, %s", out.Rate/1e3, c.Mix.Name, what),
			Mix: c.Mix, Flows: 16, Rate: out.Rate, Timing: c.timing()}
		e.Progress.Step(spec.Label, runTime(spec.Timing))
		a0, _, _ := k.ChildSAsInstalled()
		drops0 := spudDrops(k)
		run.measure(e, bed, plan, spec)
		if a1, _, err := k.ChildSAsInstalled(); err == nil {
			run.Rekeys = int(a1 - a0)
		}
		run.SpudDrops = system.DropsSince(drops0, spudDrops(k))
		if rekeying {
			e.Logf("rekey: iked installed %d new Child SAs on gw-a during the run", run.Rekeys)
		}
		out.Runs = append(out.Runs, run)
		if err := k.Down(); err != nil {
			e.Logf("rekey: stopping spud and iked: %v", err)
		}
	}
	return out
}

// measure runs spec into r, logging the outcome.
func (r *RekeyRun) measure(e *Env, bed *Bed, plan system.Plan, spec Spec) {
	m, err := bed.Measure(plan, spec)
	if err != nil {
		r.Error = err.Error()
		e.Logf("%s: %v", spec.Label, err)
		return
	}
	r.Result = &m
	e.Logf("%s: %s", spec.Label, oneLine(m.Result))
}
