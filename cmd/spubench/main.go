// Command spubench runs spugate's benchmark scenarios on network-namespace
// labs and writes the results (JSON), a markdown report and plots under
// bench/results/<timestamp>/.
//
//	spubench [flags] [scenario ...]
//
// Scenarios: ceiling, throughput, scaling, tunnels, ike, rekey; none named
// runs them all (the standard set, `make bench`). -quick shortens
// everything to a smoke run of about a minute, for CI. Each scenario's
// parameters have their own flags (spubench -h). It needs root.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spugate/spugate/bench/machine"
	"github.com/spugate/spugate/bench/report"
	"github.com/spugate/spugate/bench/scenario"
	"github.com/spugate/spugate/bench/traffic"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/internal/version"
	"github.com/spugate/spugate/testbed/daemons"
)

var scenarios = []string{"ceiling", "throughput", "tcp", "scaling", "tunnels", "ike", "rekey"}

type options struct {
	quick       bool
	out         string
	verbose     bool
	queues      int
	threaded    bool
	sizes       string
	suites      string
	systems     string
	duration    time.Duration
	warmup      time.Duration
	steps       int
	tolerance   float64
	resolution  float64
	tcpSystems  string
	tcpStreams  string
	tcpDuration time.Duration
	flows       int
	latency     float64
	spus        int
	profile     bool

	scalingSPUs    string
	scalingTunnels int
	scalingSizes   string

	tunnelCounts string
	tunnelSize   string
	tunnelWait   time.Duration

	ikeCount      int
	ikeAuths      string
	ikeResponders string
	ikeInitiators string
	ikeCountIked  int
	ikeWindow     int
	ikeHold       time.Duration
	ikeChildRekey time.Duration
	ikeTimeout    time.Duration

	rekeyTunnels  int
	rekeyInterval time.Duration
	rekeyDuration time.Duration
	rekeyRate     float64
	rekeySize     string
	rekeyIked     bool

	merge string
	// version: print the version and exit.
	version bool
}

// flags defines the command line into o.
func flags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("spubench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: every scenario cut down to seconds (CI)")
	fs.StringVar(&o.out, "out", "bench/results", "directory under which the run's <timestamp> directory is made")
	fs.BoolVar(&o.verbose, "v", false, "log the labs' commands")
	fs.IntVar(&o.queues, "queues", 2, "queues per veth end")
	fs.BoolVar(&o.threaded, "threaded", true, "threaded NAPI on every veth")
	fs.StringVar(&o.sizes, "sizes", "64,512,1400,imix", "throughput: packet sizes (wire bytes, or imix)")
	fs.StringVar(&o.suites, "suites", strings.Join(scenario.StandardSuites, ","), "throughput: ESP suites")
	fs.StringVar(&o.systems, "systems", strings.Join(scenario.AllSystems, ","), "throughput: systems to compare")
	fs.DurationVar(&o.duration, "duration", 1500*time.Millisecond, "length of each measurement window")
	fs.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "traffic before each window")
	fs.IntVar(&o.steps, "steps", 10, "most paced steps of each rate search (RFC 2544 binary search) after the flat-out run")
	fs.Float64Var(&o.tolerance, "tolerance", 0.01, "loss ratio a paced step may have and pass")
	fs.Float64Var(&o.resolution, "resolution", 0.05, "a rate search ends once its bracket's high/low is under 1+this")
	fs.IntVar(&o.flows, "flows", 16, "throughput, ceiling: UDP flows")
	fs.Float64Var(&o.latency, "latency-rate", 10000, "throughput: rate of the latency run (packets/s; negative: none)")
	fs.IntVar(&o.spus, "spus", 0, "throughput, tcp, tunnels, rekey: spud's SPUs per gateway (0: one per CPU)")
	fs.BoolVar(&o.profile, "profile", true, "throughput: perf profile of spud's first run")
	fs.StringVar(&o.tcpSystems, "tcp-systems", "spud,kernel,strongswan", "tcp: systems (iperf3 through one tunnel)")
	fs.StringVar(&o.tcpStreams, "tcp-streams", "1,8", "tcp: iperf3 streams of each run")
	fs.DurationVar(&o.tcpDuration, "tcp-duration", 5*time.Second, "tcp: length of each iperf3 run")
	fs.StringVar(&o.scalingSPUs, "scaling-spus", "", "scaling: SPU counts (default 1..CPUs and 2×CPUs)")
	fs.IntVar(&o.scalingTunnels, "scaling-tunnels", 64, "scaling: tunnels")
	fs.StringVar(&o.scalingSizes, "scaling-sizes", "64,1400", "scaling: packet sizes")
	fs.StringVar(&o.tunnelCounts, "tunnel-counts", "1,100,10000", "tunnels: tunnel counts")
	fs.StringVar(&o.tunnelSize, "tunnel-size", "64", "tunnels: packet size")
	fs.DurationVar(&o.tunnelWait, "tunnel-install-timeout", 60*time.Second, "tunnels: longest install of one count (then go on with what is in)")
	fs.IntVar(&o.ikeCount, "ike-count", 10000, "ike: IKE SAs charon initiates per responder and method")
	fs.IntVar(&o.ikeCountIked, "ike-count-iked-initiator", 2000, "ike: IKE SAs iked's load initiator sets up per responder and method")
	fs.StringVar(&o.ikeInitiators, "ike-initiators", "load-tester,iked", "ike: initiators (load-tester: strongSwan's load generator, built by make load-tester; charon: VICI initiations; iked: its load-initiator mode)")
	fs.StringVar(&o.ikeAuths, "ike-auth", "psk,ecdsa", "ike: authentication methods")
	fs.StringVar(&o.ikeResponders, "ike-responders", "iked,iked:ike-sa,charon:fake,charon", "ike: responders (iked with ike_anchor tunnel or ike-sa; charon:fake, charon with the fake kernel: pure IKE; charon: with kernel-libipsec)")
	fs.IntVar(&o.ikeWindow, "ike-window", 64, "ike: initiations in flight")
	fs.DurationVar(&o.ikeHold, "ike-hold", 0, "ike: keep each run's tunnels this long after the setup, then read the live SAs and memory again (the issue's 10m at 1M; 0: no hold)")
	fs.DurationVar(&o.ikeChildRekey, "ike-child-rekey", 0, "ike: iked initiator's Child SA rekey_time (0: none), so that a hold (-ike-hold) rekeys every tunnel's Child SA; the hold then gives the responder's CPU and time blocked on spud per rekey")
	fs.DurationVar(&o.ikeTimeout, "ike-timeout", 0, "ike: longest setup of one run, then go on with the IKE SAs up (0: 120 s or 50 ms per IKE SA, the longer)")
	fs.IntVar(&o.rekeyTunnels, "rekey-tunnels", 16, "rekey: tunnels")
	fs.DurationVar(&o.rekeyInterval, "rekey-interval", 2*time.Second, "rekey: time between rekeys of every tunnel")
	fs.DurationVar(&o.rekeyDuration, "rekey-duration", 10*time.Second, "rekey: window of each run")
	fs.Float64Var(&o.rekeyRate, "rekey-rate", 0, "rekey: offered packets/s (0: 80% of a short search's result)")
	fs.StringVar(&o.rekeySize, "rekey-size", "512", "rekey: packet size")
	fs.BoolVar(&o.rekeyIked, "rekey-iked", true, "rekey: also with iked rekeying a tunnel's Child SA")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.StringVar(&o.merge, "merge", "", "instead of measuring: merge the results of earlier runs (their directories, comma-separated) into a report of medians under -out")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: spubench [flags] [%s ...]\n", strings.Join(scenarios, " | "))
		fs.PrintDefaults()
	}
	return fs
}

// parse reads the command line: options and the scenarios to run.
func parse(args []string) (options, []string, error) {
	var o options
	fs := flags(&o)
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	which := fs.Args()
	if len(which) == 0 {
		which = scenarios
	}
	for _, s := range which {
		if !slices.Contains(scenarios, s) {
			return o, nil, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(scenarios, ", "))
		}
	}
	return o, which, nil
}

func main() {
	o, which, err := parse(os.Args[1:])
	if err != nil {
		fail("%v", err)
	}
	if o.version {
		fmt.Println(version.Line("spubench"))
		return
	}
	if o.merge != "" {
		dir, err := merge(o)
		if err != nil {
			fail("%v", err)
		}
		fmt.Println(dir)
		return
	}
	if why := privileged.Missing(privileged.Default, "ip", "ethtool"); why != "" {
		fail("%s: run as root", why)
	}
	useLocalBinaries()
	dir, err := run(o, which)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(dir)
}

// useLocalBinaries points testbed/daemons at the spud next to spubench
// (make build puts them all in bin/), unless told otherwise.
func useLocalBinaries() {
	if os.Getenv(daemons.BinEnv) != "" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	dir := filepath.Dir(exe)
	for _, b := range []string{"spud", "spuctl"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return
		}
	}
	os.Setenv(daemons.BinEnv, dir)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "spubench: "+format+"\n", args...)
	os.Exit(1)
}

func (o *options) applyQuick() {
	if !o.quick {
		return
	}
	o.sizes = "64"
	o.suites = scenario.StandardSuites[0]
	o.duration, o.warmup = 500*time.Millisecond, 200*time.Millisecond
	o.steps = 1
	o.profile = false
	o.tcpSystems, o.tcpStreams, o.tcpDuration = "spud,kernel", "1", time.Second
	if o.scalingSPUs == "" {
		o.scalingSPUs = "1,2"
	}
	o.scalingTunnels, o.scalingSizes = 8, "64"
	o.tunnelCounts = "1,100"
	o.ikeCount, o.ikeCountIked = 20, 20
	if o.ikeHold > 0 {
		o.ikeHold = min(o.ikeHold, 2*time.Second)
	}
	o.rekeyTunnels, o.rekeyInterval, o.rekeyDuration = 4, 300*time.Millisecond, time.Second
	if o.rekeyRate == 0 {
		o.rekeyRate = 5000
	}
}

// run runs the scenarios and writes the results; it returns their
// directory.
func run(o options, which []string) (string, error) {
	o.applyQuick()
	started := time.Now()
	dir := filepath.Join(o.out, started.Format("2006-01-02T150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	logf, err := os.Create(filepath.Join(dir, "log.txt"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	prog := scenario.NewProgress(os.Stderr)
	env := &scenario.Env{
		Links:    scenario.Links,
		Dir:      dir,
		Log:      io.MultiWriter(os.Stderr, logf),
		Verbose:  o.verbose,
		Progress: prog,
	}
	env.Links.Queues, env.Links.Threaded = o.queues, o.threaded
	res := &report.Results{
		Version: report.Version, Command: strings.Join(os.Args, " "), Quick: o.quick, Started: started, Machine: machine.Collect(),
		Settings: report.Settings{Links: env.Links, SpudPoll: "adaptive", XSKMode: "copy (veth has no zero-copy)", Carrier: steer.Best().String(), LoadBefore: report.LoadAvg()},
	}
	env.Logf("spubench: %s on %s (%d CPUs), results in %s", res.Command, res.Machine.CPUModel, res.Machine.CPUs, dir)
	timing := traffic.Timing{Warmup: o.warmup, Duration: o.duration}
	search := scenario.Search{Steps: o.steps, Tolerance: o.tolerance, Resolution: o.resolution}
	mixes, err := parseMixes(o.sizes)
	if err != nil {
		return "", err
	}

	type job struct {
		name string
		est  time.Duration
		run  func() error
	}
	var jobs []job
	for _, name := range which {
		switch name {
		case "ceiling":
			c := &scenario.Ceiling{Mixes: mixes, Flows: o.flows, Timing: timing}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.Ceiling = r
				return err
			}})
		case "throughput":
			t := &scenario.Throughput{Mixes: mixes, Suites: split(o.suites), Systems: split(o.systems), Flows: o.flows, Timing: timing,
				Search: search, LatencyRate: o.latency, SPUs: o.spus, Profile: o.profile}
			if o.quick {
				t.Systems = []string{scenario.Spud, scenario.Kernel}
			}
			jobs = append(jobs, job{name, t.Estimate(), func() error {
				r, err := t.Run(env)
				res.Throughput = r
				return err
			}})
		case "tcp":
			streams, err := ints(o.tcpStreams)
			if err != nil {
				return "", fmt.Errorf("-tcp-streams: %w", err)
			}
			c := &scenario.TCP{Systems: split(o.tcpSystems), Streams: streams, Duration: o.tcpDuration, SPUs: o.spus}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.TCP = r
				return err
			}})
		case "scaling":
			sm, err := parseMixes(o.scalingSizes)
			if err != nil {
				return "", err
			}
			spus, err := ints(o.scalingSPUs)
			if err != nil {
				return "", fmt.Errorf("-scaling-spus: %w", err)
			}
			c := &scenario.Scaling{SPUs: spus, Tunnels: o.scalingTunnels, Mixes: sm, Timing: timing, Search: search}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.Scaling = r
				return err
			}})
		case "tunnels":
			m, err := traffic.ParseMix(o.tunnelSize)
			if err != nil {
				return "", err
			}
			counts, err := ints(o.tunnelCounts)
			if err != nil {
				return "", fmt.Errorf("-tunnel-counts: %w", err)
			}
			c := &scenario.Tunnels{Counts: counts, Mix: m, Timing: timing, Search: search, InstallTimeout: o.tunnelWait}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.Tunnels = r
				return err
			}})
		case "ike":
			c := &scenario.IKE{Count: o.ikeCount, CountIkedInitiator: o.ikeCountIked, Auths: split(o.ikeAuths), Responders: split(o.ikeResponders),
				Initiators: split(o.ikeInitiators), Window: o.ikeWindow, Hold: o.ikeHold, Timeout: o.ikeTimeout, ChildRekey: o.ikeChildRekey}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.IKE = r
				return err
			}})
		case "rekey":
			m, err := traffic.ParseMix(o.rekeySize)
			if err != nil {
				return "", err
			}
			c := &scenario.Rekey{Tunnels: o.rekeyTunnels, Interval: o.rekeyInterval, Mix: m, Rate: o.rekeyRate, Duration: o.rekeyDuration, Search: search, Iked: o.rekeyIked}
			if o.quick {
				c.Grace = 50 * time.Millisecond
				c.IkedInterval = time.Second
			}
			jobs = append(jobs, job{name, c.Estimate(), func() error {
				r, err := c.Run(env)
				res.Rekey = r
				return err
			}})
		}
	}
	var total time.Duration
	for _, j := range jobs {
		prog.Plan(j.est)
		total += j.est
	}
	env.Logf("spubench: %s planned (about %v)", strings.Join(which, ", "), total.Round(time.Second))
	for _, j := range jobs {
		t0 := time.Now()
		if err := j.run(); err != nil {
			env.Logf("spubench: %s: %v", j.name, err)
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", j.name, err))
		}
		env.Logf("spubench: %s done in %v (planned %v)", j.name, time.Since(t0).Round(time.Second), j.est.Round(time.Second))
	}
	prog.Finish()
	res.Finished = time.Now()
	res.Settings.LoadAfter = report.LoadAvg()
	jp, err := report.WriteJSON(res, dir)
	if err != nil {
		return "", err
	}
	mp, err := report.WriteMarkdown(res, dir)
	if err != nil {
		return "", err
	}
	plots, err := report.WritePlots(res, dir)
	if err != nil {
		env.Logf("spubench: plots: %v", err)
	}
	env.Logf("spubench: done in %v: %s, %s, %d plots", res.Finished.Sub(started).Round(time.Second), jp, mp, len(plots))
	return dir, nil
}

// merge writes the medians of earlier runs' results, with their report
// and plots, to a new directory under o.out.
func merge(o options) (string, error) {
	var rs []*report.Results
	dirs := split(o.merge)
	for _, d := range dirs {
		r, err := report.ReadJSON(filepath.Join(d, "results.json"))
		if err != nil {
			return "", err
		}
		rs = append(rs, r)
	}
	m, err := report.Merge(rs, dirs)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(o.out, time.Now().Format("2006-01-02T150405")+"-median")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := report.WriteJSON(m, dir); err != nil {
		return "", err
	}
	if _, err := report.WriteMarkdown(m, dir); err != nil {
		return "", err
	}
	if _, err := report.WritePlots(m, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseMixes(s string) ([]traffic.Mix, error) {
	var out []traffic.Mix
	for _, f := range split(s) {
		m, err := traffic.ParseMix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no packet size given")
	}
	return out, nil
}
