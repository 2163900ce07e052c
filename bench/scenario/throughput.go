package scenario

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

// Throughput is scenario 1: every system forwards the same UDP flows
// through one tunnel, per packet size and suite: the highest rate it
// carries within the search's loss tolerance (Search), and the latency at
// a fixed low rate.
type Throughput struct {
	Mixes   []traffic.Mix
	Suites  []string
	Systems []string
	// Flows through the tunnel (default 16: enough for the kernel and the
	// VPNs to spread over queues).
	Flows  int
	Timing traffic.Timing
	Search Search
	// LatencyRate is the rate of the latency run, with the first mix
	// (default 10 kpps, which every system carries; negative: no run).
	LatencyRate float64
	// SPUs of spud (0: one per CPU).
	SPUs int
	// Profile captures a system-wide CPU profile (perf) during spud's
	// first run.
	Profile bool
}

// ThroughputRun is one system, suite and packet size.
type ThroughputRun struct {
	System string `json:"system"`
	Suite  string `json:"suite,omitempty"` // empty where the system has no choice
	Mix    string `json:"mix"`
	// PPS and Gbps are the figures compared (Found.PPS).
	PPS   float64 `json:"pps"`
	Gbps  float64 `json:"gbps"`
	Found *Found  `json:"search,omitempty"`
	// Latency is a run at Throughput.LatencyRate (first mix only).
	Latency *Measurement `json:"latency_run,omitempty"`
	Error   string       `json:"error,omitempty"`
	// Memory of the system's daemons after the run, by host.
	Memory map[string]system.Memory `json:"memory,omitempty"`
	// SpudDrops are spud's drops over the runs, per gateway and reason.
	SpudDrops map[string]map[string]uint64 `json:"spud_drops,omitempty"`
}

// Ratio is spud's received packet rate over another system's, for one
// suite and packet size.
type Ratio struct {
	Suite  string  `json:"suite"`
	Mix    string  `json:"mix"`
	Versus string  `json:"versus"`
	Spud   float64 `json:"spud_pps"`
	Other  float64 `json:"other_pps"`
	Ratio  float64 `json:"ratio"`
}

// ThroughputResults are scenario 1's results.
type ThroughputResults struct {
	Flows       int             `json:"flows"`
	Timing      traffic.Timing  `json:"timing"`
	Search      Search          `json:"search"`
	LatencyRate float64         `json:"latency_pps"`
	Runs        []ThroughputRun `json:"runs"`
	Ratios      []Ratio         `json:"ratios"`
	Profile     *Profile        `json:"profile,omitempty"`
}

func (t *Throughput) defaults() {
	if len(t.Mixes) == 0 {
		t.Mixes = []traffic.Mix{traffic.Fixed(64), traffic.Fixed(512), traffic.Fixed(1400), traffic.IMIX()}
	}
	if len(t.Suites) == 0 {
		t.Suites = StandardSuites
	}
	if len(t.Systems) == 0 {
		t.Systems = AllSystems
	}
	if t.Flows == 0 {
		t.Flows = 16
	}
	if t.Timing.Duration == 0 {
		t.Timing = traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond}
	}
	t.Search = t.Search.withDefaults()
	if t.LatencyRate == 0 {
		t.LatencyRate = 10000
	}
}

// runTime is the planned length of one measurement, probe included.
func runTime(t traffic.Timing) time.Duration {
	return t.Warmup + t.Duration + 900*time.Millisecond
}

// passes are the (system, suite) pairs to bring up, in order.
func (t *Throughput) passes() [][2]string {
	var out [][2]string
	for _, sys := range t.Systems {
		if !suiteSpecific(sys) {
			out = append(out, [2]string{sys, ""})
			continue
		}
		for _, s := range t.Suites {
			out = append(out, [2]string{sys, s})
		}
	}
	return out
}

// Estimate is how long Run should take.
func (t *Throughput) Estimate() time.Duration {
	t.defaults()
	per := time.Duration(t.Search.Runs()) * runTime(t.Timing)
	lat := time.Duration(0)
	if t.LatencyRate > 0 {
		lat = runTime(t.Timing)
	}
	if t.Profile {
		lat += runTime(ProfileTiming) / time.Duration(max(len(t.passes()), 1))
	}
	return time.Duration(len(t.passes()))*(time.Duration(len(t.Mixes))*per+lat+3*time.Second) + 5*time.Second
}

// Run measures every pass on one line.
func (t *Throughput) Run(e *Env) (*ThroughputResults, error) {
	t.defaults()
	res := &ThroughputResults{Flows: t.Flows, Timing: t.Timing, Search: t.Search, LatencyRate: t.LatencyRate}
	bed, err := e.NewBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	profiled := !t.Profile
	for _, pass := range t.passes() {
		name, suite := pass[0], pass[1]
		label := name
		if suite != "" {
			label += " " + suite
		}
		plan := system.Plan{Tunnels: 1, Suite: suite, Line: bed.Line.Plan}
		if plan.Suite == "" {
			plan.Suite = StandardSuites[0]
		}
		e.Progress.Step("throughput: starting "+label, 3*time.Second)
		sys, err := newSystem(name, t.SPUs)
		if err == nil {
			err = sys.Up(bed.Line, plan)
		}
		if err != nil {
			e.Logf("throughput: %s: %v", label, err)
			for _, m := range t.Mixes {
				res.Runs = append(res.Runs, ThroughputRun{System: name, Suite: suite, Mix: m.Name, Error: err.Error()})
			}
			continue
		}
		var hint float64 // the most this system delivered at another size
		for mi, m := range t.Mixes {
			run := ThroughputRun{System: name, Suite: suite, Mix: m.Name}
			spec := Spec{Label: fmt.Sprintf("throughput: %s, %s bytes", label, m.Name), Mix: m, Flows: t.Flows, Timing: t.Timing}
			e.Progress.Step(spec.Label, time.Duration(t.Search.Runs())*runTime(t.Timing))
			drops0 := spudDrops(sys)
			search := t.Search
			search.Hint = hint
			found, err := bed.Search(plan, spec, search)
			if found != nil {
				run.Found = found
				run.PPS, run.Gbps = found.PPS(), found.Gbps()
				hint = max(hint, found.PPS())
				if found.Stalled {
					e.Logf("%s: the flat-out run stalled (%.3f Mpps, under a quarter of the %.3f Mpps of another size): paced steps started from half of that", spec.Label, found.Max.PPS/1e6, search.Hint/1e6)
				}
			}
			if err != nil {
				run.Error = err.Error()
				e.Logf("%s: %v", spec.Label, err)
			} else {
				e.Logf("%s: %s", spec.Label, searchLine(found))
			}
			if mi == 0 && t.LatencyRate > 0 && err == nil {
				ls := Spec{Label: fmt.Sprintf("latency: %s, %s bytes at %.0f kpps", label, m.Name, t.LatencyRate/1e3), Mix: m, Flows: t.Flows, Rate: t.LatencyRate, Timing: t.Timing, NoProbe: true}
				e.Progress.Step(ls.Label, runTime(t.Timing))
				if r, err := bed.Measure(plan, ls); err != nil {
					e.Logf("%s: %v", ls.Label, err)
				} else {
					run.Latency = &r
					e.Logf("%s: %s", ls.Label, oneLine(r.Result))
				}
			}
			if drops0 != nil {
				run.SpudDrops = system.DropsSince(drops0, spudDrops(sys))
			}
			run.Memory = memories(sys)
			res.Runs = append(res.Runs, run)
			if name == Spud && !profiled && err == nil {
				profiled = true
				if prof, err := t.profile(e, bed, plan, m, found.PPS(), label, sys); err != nil {
					e.Logf("profile: %v", err)
				} else {
					res.Profile = prof
				}
			}
		}
		if err := sys.Down(); err != nil {
			e.Logf("throughput: stopping %s: %v", label, err)
		}
	}
	res.Ratios = Ratios(res.Runs, t.Suites)
	return res, nil
}

func memories(sys system.System) map[string]system.Memory {
	out := map[string]system.Memory{}
	for _, d := range sys.Daemons() {
		if m, err := system.ReadMemory(d.PID); err == nil {
			out[d.Host] = m
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ProfileTiming is the profiled run's: longer than a search step, for
// enough samples.
var ProfileTiming = traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 3 * time.Second}

// profile runs spud at the rate it peaked at, under perf.
func (t *Throughput) profile(e *Env, bed *Bed, plan system.Plan, m traffic.Mix, rate float64, label string, sys system.System) (*Profile, error) {
	spec := Spec{Label: fmt.Sprintf("profile: %s, %s bytes at %.0f kpps", label, m.Name, rate/1e3), Mix: m, Flows: t.Flows, Rate: rate,
		Timing: ProfileTiming, NoProbe: true, Profile: filepath.Join(e.Dir, fmt.Sprintf("perf-spud-%s-%s.data", plan.Suite, m.Name))}
	e.Progress.Step(spec.Label, runTime(spec.Timing))
	r, err := bed.Measure(plan, spec)
	if err != nil {
		return nil, err
	}
	e.Logf("%s: %s", spec.Label, oneLine(r.Result))
	prof, err := AnalyzeProfile(spec.Profile, sys.Daemons())
	if err != nil {
		return nil, err
	}
	prof.Run = spec.Label
	prof.Result = &r
	return prof, nil
}

// spudDrops reads spud's drop counters, or nil for other systems.
func spudDrops(sys system.System) map[string]map[string]uint64 {
	sp, ok := sys.(interface {
		Drops() (map[string]map[string]uint64, error)
	})
	if !ok {
		return nil
	}
	d, err := sp.Drops()
	if err != nil {
		return nil
	}
	return d
}

// searchLine summarizes a search for the log.
func searchLine(f *Found) string {
	s := fmt.Sprintf("peak %.3f Mpps, %.3f Gbit/s at %.1f%% loss (flat out: %.3f of %.3f Mpps offered); ",
		f.PPS()/1e6, f.Gbps(), f.Loss()*100, f.Max.PPS/1e6, f.Max.OfferedPPS/1e6)
	if f.Best == nil {
		s += "no run within tolerance"
	} else {
		s += fmt.Sprintf("within tolerance %.3f Mpps", f.Best.PPS/1e6)
	}
	return s + "; " + f.Bracket()
}

// oneLine summarizes a result for the log.
func oneLine(r traffic.Result) string {
	return fmt.Sprintf("%.3f Mpps (%.3f offered) %.3f Gbit/s, loss %.2f%%, reordered %d, latency p50 %v p99 %v p99.9 %v, sink drops %d",
		r.PPS/1e6, r.OfferedPPS/1e6, r.Gbps, r.LossRatio*100, r.Reordered, r.Latency.P50.Round(time.Microsecond),
		r.Latency.P99.Round(time.Microsecond), r.Latency.P999.Round(time.Microsecond), r.SinkDrops)
}

// Ratios compares spud with every other system, per suite and size.
// wireguard-go has one cipher, compared with spud's ChaCha20-Poly1305; the
// kernel has none, compared with every suite.
func Ratios(runs []ThroughputRun, suites []string) []Ratio {
	pps := map[[3]string]float64{}
	var mixes []string
	seen := map[string]bool{}
	for _, r := range runs {
		if r.PPS > 0 {
			pps[[3]string{r.System, r.Suite, r.Mix}] = r.PPS
		}
		if !seen[r.Mix] {
			seen[r.Mix] = true
			mixes = append(mixes, r.Mix)
		}
	}
	var out []Ratio
	for _, s := range suites {
		for _, m := range mixes {
			sp, ok := pps[[3]string{Spud, s, m}]
			if !ok {
				continue
			}
			for _, v := range []struct{ sys, suite string }{{Kernel, ""}, {StrongSwan, s}, {WireGuard, ""}} {
				if v.sys == WireGuard && s != StandardSuites[2] {
					continue
				}
				o, ok := pps[[3]string{v.sys, v.suite, m}]
				if !ok || o == 0 {
					continue
				}
				out = append(out, Ratio{Suite: s, Mix: m, Versus: v.sys, Spud: sp, Other: o, Ratio: sp / o})
			}
		}
	}
	return out
}
