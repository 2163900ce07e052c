package scenario

import (
	"errors"
	"fmt"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

// Tunnels is scenario 3: spud carrying 1, 100, 10,000 tunnels (distinct
// peers), one flow per tunnel: the time to install them through the SA
// API, the memory they take on the concentrator (gw-a), and the
// throughput with every tunnel busy.
type Tunnels struct {
	Counts []int
	Mix    traffic.Mix
	Suite  string
	Timing traffic.Timing
	Search Search
	// Settle is the pause between installing and reading the memory.
	Settle time.Duration
	// InstallTimeout bounds installing one count (default 60 s): the
	// scenario then goes on with the tunnels installed by then, and says
	// so.
	InstallTimeout time.Duration
}

// TunnelRun is one tunnel count.
type TunnelRun struct {
	Tunnels int `json:"tunnels"`
	// Installed is less than Tunnels when installing hit the timeout.
	Installed    int                   `json:"installed"`
	InstallTime  time.Duration         `json:"install_ns"`
	InstallCurve []system.InstallPoint `json:"install_curve,omitempty"`
	// InstallRate is tunnels per second through the SA API (per tunnel:
	// an SPI allocation, three SAs and two policies over both gateways).
	InstallRate float64 `json:"install_per_s"`
	// Before and After are gw-a's spud before and after installing.
	Before system.Memory `json:"memory_before"`
	After  system.Memory `json:"memory_after"`
	// PerTunnel is the growth of gw-a's resident memory per tunnel; with
	// few tunnels it is mostly noise.
	PerTunnel     float64                      `json:"rss_per_tunnel_bytes"`
	AnonPerTunnel float64                      `json:"anon_per_tunnel_bytes"`
	PPS           float64                      `json:"pps"`
	Gbps          float64                      `json:"gbps"`
	Found         *Found                       `json:"search,omitempty"`
	SpudDrops     map[string]map[string]uint64 `json:"spud_drops,omitempty"`
	Error         string                       `json:"error,omitempty"`
}

// TunnelResults are scenario 3's results.
type TunnelResults struct {
	Mix   string      `json:"mix"`
	Suite string      `json:"suite"`
	Runs  []TunnelRun `json:"runs"`
}

func (c *Tunnels) defaults() {
	if len(c.Counts) == 0 {
		c.Counts = []int{1, 100, 10000}
	}
	if c.Mix.Name == "" {
		c.Mix = traffic.Fixed(64)
	}
	if c.Suite == "" {
		c.Suite = StandardSuites[0]
	}
	if c.Timing.Duration == 0 {
		c.Timing = traffic.Timing{Warmup: 500 * time.Millisecond, Duration: 1500 * time.Millisecond}
	}
	c.Search = c.Search.withDefaults()
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.InstallTimeout == 0 {
		c.InstallTimeout = 60 * time.Second
	}
}

// Estimate is how long Run should take.
func (c *Tunnels) Estimate() time.Duration {
	c.defaults()
	var d time.Duration
	for _, n := range c.Counts {
		// Installing ran at about 1,000 tunnels/s here for a few hundred,
		// and slows down with the count (the steering program's SPD is
		// recomputed on every policy): thousands hit the timeout. Probing
		// sends one packet per flow at 20 kpps.
		install := time.Duration(n) * time.Second / 1000
		if n >= 1000 {
			install = c.InstallTimeout
		}
		d += 3*time.Second + 2*c.Settle + min(c.InstallTimeout, install) + time.Duration(n)*time.Second/20000
		d += time.Duration(c.Search.Runs()) * runTime(c.Timing)
	}
	return d
}

// Run measures every count, each with freshly started spuds.
func (c *Tunnels) Run(e *Env) (*TunnelResults, error) {
	c.defaults()
	res := &TunnelResults{Mix: c.Mix.Name, Suite: c.Suite}
	bed, err := e.NewBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	for _, n := range c.Counts {
		run := TunnelRun{Tunnels: n}
		res.Runs = append(res.Runs, c.one(e, bed, n, &run))
	}
	return res, nil
}

func (c *Tunnels) one(e *Env, bed *Bed, n int, run *TunnelRun) TunnelRun {
	plan := system.Plan{Tunnels: n, Suite: c.Suite, Line: bed.Plan}
	install := time.Duration(n) * time.Second / 1000
	if n >= 1000 {
		install = c.InstallTimeout
	}
	e.Progress.Step(fmt.Sprintf("tunnels: installing %d tunnels", n), 3*time.Second+min(c.InstallTimeout, install))
	sp := &system.Spud{InstallTimeout: c.InstallTimeout}
	if err := sp.Start(bed.Line); err != nil {
		run.Error = err.Error()
		return *run
	}
	defer sp.Down()
	a, _ := sp.Gateways()
	time.Sleep(c.Settle)
	var err error
	if run.Before, err = system.ReadMemory(a.Proc.PID); err != nil {
		run.Error = err.Error()
		return *run
	}
	err = sp.Install(plan)
	run.Installed, run.InstallTime, run.InstallCurve = sp.Installed, sp.InstallTime, sp.InstallCurve
	if err != nil {
		run.Error = err.Error()
		e.Logf("tunnels: %d: %v", n, err)
		if !errors.Is(err, system.ErrInstallTimeout) || sp.Installed == 0 {
			return *run
		}
		// Go on with what is installed.
		n = sp.Installed
		plan.Tunnels = n
	}
	run.InstallRate = float64(n) / sp.InstallTime.Seconds()
	time.Sleep(c.Settle)
	if run.After, err = system.ReadMemory(a.Proc.PID); err != nil {
		run.Error = err.Error()
		return *run
	}
	run.PerTunnel = (float64(run.After.RSS) - float64(run.Before.RSS)) / float64(n)
	run.AnonPerTunnel = (float64(run.After.RSSAnon) - float64(run.Before.RSSAnon)) / float64(n)
	e.Logf("tunnels: %d installed in %v (%.0f/s); gw-a spud RSS %.1f -> %.1f MiB (%.0f bytes per tunnel, anonymous %.0f)",
		n, run.InstallTime.Round(time.Millisecond), run.InstallRate, mib(run.Before.RSS), mib(run.After.RSS), run.PerTunnel, run.AnonPerTunnel)
	label := fmt.Sprintf("tunnels: %d tunnels, %s bytes", n, c.Mix.Name)
	e.Progress.Step(label, time.Duration(c.Search.Runs())*runTime(c.Timing))
	drops0 := spudDrops(sp)
	found, err := bed.Search(plan, Spec{Label: label, Mix: c.Mix, Flows: n, Timing: c.Timing}, c.Search)
	if found != nil {
		run.Found, run.PPS, run.Gbps = found, found.PPS(), found.Gbps()
	}
	if err != nil {
		run.Error = err.Error()
		e.Logf("%s: %v", label, err)
	} else {
		e.Logf("%s: %s", label, searchLine(found))
	}
	run.SpudDrops = system.DropsSince(drops0, spudDrops(sp))
	return *run
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
