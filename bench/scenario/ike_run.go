package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/strongswan"
)

// assumed setup rates for the progress estimate, per method.
var assumedRate = map[string]float64{"psk": 300, "ecdsa": 150}

// Estimate is how long Run should take.
func (c *IKE) Estimate() time.Duration {
	c.defaults()
	var d time.Duration
	for _, ini := range c.Initiators {
		for range c.Responders {
			for _, a := range c.Auths {
				if ini == InitLoadTester && a != "psk" {
					continue
				}
				d += c.estimate(ini, a)
			}
		}
	}
	return d
}

func (c *IKE) estimate(initiator, auth string) time.Duration {
	rate := assumedRate[auth]
	if rate == 0 {
		rate = 100
	}
	return 8*time.Second + time.Duration(float64(c.count(initiator))/rate*float64(time.Second)) + c.Hold
}

// Run measures every initiator, responder and method, each on a fresh
// line.
func (c *IKE) Run(e *Env) (*IKEResults, error) {
	c.defaults()
	if m := strongswan.Missing(); m != "" {
		return nil, fmt.Errorf("ike: charon is an initiator and a responder: %s", m)
	}
	if slices.Contains(c.Initiators, InitLoadTester) || slices.Contains(c.Responders, RespCharonFake) {
		if err := EnsureLoadTester(e); err != nil {
			return nil, fmt.Errorf("ike: %w", err)
		}
	}
	res := &IKEResults{}
	res.Notes = append(res.Notes,
		fmt.Sprintf("Other initiators on gw-a: charon (%d VICI initiations in flight, IKE SA reuse off, "+
			"so that each initiation makes a new IKE SA with its Child SA; %d IKE SAs per responder and method) and iked with spud "+
			"(its load-initiator mode, `spuctl load-initiate`: new IKE SAs each with the connection's first child, %[1]d not yet established at a time; %[3]d IKE SAs per responder and method). "+
			"Responder on gw-b with unique = never and its half-open, cookie and block thresholds raised. "+
			"IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16; ECDSA is P-256 certificates from one CA, sent in every IKE_AUTH. "+
			"Both daemons share the machine's CPUs: the rate is the pair's, initiator included, so iked/charon ratios compare responders under the same initiator only. "+
			"iked runs with spud (iked keeps the IKE SAs, spud the Child SAs: both memories are given); "+
			"charon keeps both in one process (its ESP is kernel-libipsec's).", c.Window, c.Count, c.CountIkedInitiator))
	if slices.Contains(c.Initiators, InitLoadTester) {
		res.Notes = append(res.Notes, fmt.Sprintf("load-tester: strongSwan's load generator (built from Debian's source package by deploy/load-tester.sh), "+
			"a charon on gw-a with the plugin in its own mount namespace and its fake kernel (its Child SAs installed nowhere): "+
			"%d IKE SAs per responder, each with one Child SA and an identity of its own, at most %d half-open; PSK only. "+
			"CPU per IKE SA is user + system time of the responder's processes (/proc/PID/stat) over the run divided by the IKE SAs it holds at the end. "+
			"charon:fake is charon with load-tester's fake kernel as well (no ESP at all): its pure IKE cost, the yardstick of the CPU ratios; "+
			"charon is charon with its userspace ESP (kernel-libipsec). iked runs with spud, with ike_anchor tunnel (iked) or ike-sa (iked:ike-sa); "+
			"its per-worker figures are the IKE SAs each worker holds and the datagrams each received.", c.Count, c.Window))
	}
	if c.Hold > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("Each run's tunnels are held %v after the setup, untouched, then the responder's tables and memory are read again.", c.Hold))
	}
	for _, ini := range c.Initiators {
		for _, resp := range c.Responders {
			for _, auth := range c.Auths {
				if ini == InitLoadTester && auth != "psk" {
					continue
				}
				run := IKERun{Responder: resp, Initiator: ini, Auth: auth, Count: c.count(ini)}
				_, _, rerr := responderKind(resp)
				switch {
				case ini != "charon" && ini != "iked" && ini != InitLoadTester:
					run.Error = fmt.Sprintf("unknown initiator %q (%s, charon, iked)", ini, InitLoadTester)
				case rerr != nil:
					run.Error = rerr.Error()
				default:
					c.measure(e, &run)
				}
				if run.Error != "" {
					e.Logf("ike: %s initiator, %s responder, %s: %s", ini, resp, auth, run.Error)
				}
				res.Runs = append(res.Runs, run)
			}
		}
	}
	res.Ratios = IKERatios(res.Runs)
	res.CPURatios = IKECPURatios(res.Runs)
	return res, nil
}

// ikeProposal and espProposal are the suites of the setup test.
const (
	ikeProposal = "aes128gcm16-prfsha256-x25519"
	espProposal = "aes128gcm16"
)

// responderSide is the responder of a run as measure sees it.
type responderSide struct {
	pid, spudPID int
	// established counts the responder's established IKE SAs, live.
	established func() (int, error)
	// live reads the responder's tables at the end into run.
	live func(run *IKERun) error
	// installed reads iked's count of Child SAs installed (nil for
	// charon).
	installed func() (uint64, error)
	// workers reads iked's workers (nil for charon).
	workers func() ([]ikectl.WorkerStats, error)
	// failures reads iked's failure counters, stateDir is its state
	// folder (nil, "" for charon).
	failures func() (map[string]uint64, error)
	stateDir string
}

// measure sets up run.Count IKE SAs from run.Initiator to run.Responder
// with run.Auth on a fresh line.
func (c *IKE) measure(e *Env, run *IKERun) {
	label := fmt.Sprintf("ike: %s initiator, %s responder, %s, %d IKE SAs", run.Initiator, run.Responder, run.Auth, run.Count)
	e.Progress.Step(label, c.estimate(run.Initiator, run.Auth))
	ln, err := lab.NewLine(lab.Options{Logf: e.Debugf, NoSignalHandler: e.NoSignalHandler},
		lab.LineOptions{NoClearRoutes: true, Links: e.Links, GatewayLinks: e.Links})
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer ln.Close()
	ci, cr, root, certA, certB, err := c.configs(ln, run.Auth)
	if err != nil {
		run.Error = err.Error()
		return
	}
	lt := run.Initiator == InitLoadTester
	daemon, variant, err := responderKind(run.Responder)
	if err != nil {
		run.Error = err.Error()
		return
	}
	var rs responderSide
	if daemon == "iked" {
		o := ikedSide{Anchor: variant}
		if lt {
			o.RemoteID, o.PSK = loadTesterMatch, loadTesterPSK
		} else if run.Initiator == "iked" && run.Auth == "psk" {
			// iked's load initiator names each IKE SA as load-tester does.
			o.RemoteID = loadTesterMatch
		}
		k, err := startIked(ln, ln.GwB, root, certB, o)
		if err != nil {
			run.Error = err.Error()
			return
		}
		defer stopIked(k)
		rs.pid, rs.spudPID = k.Proc.PID, k.Spud.Proc.PID
		rs.established = func() (int, error) {
			st, err := k.Client.Stats()
			if err != nil {
				return 0, err
			}
			return st.IKESAs - int(st.HalfOpen), nil
		}
		rs.live = func(run *IKERun) error { return ikedLive(k, run) }
		rs.workers = func() ([]ikectl.WorkerStats, error) {
			st, err := k.Client.Stats()
			if err != nil {
				return nil, err
			}
			return st.Workers, nil
		}
		rs.failures = func() (map[string]uint64, error) {
			st, err := k.Client.Stats()
			if err != nil {
				return nil, err
			}
			return st.Failures, nil
		}
		rs.installed = func() (uint64, error) {
			st, err := k.Client.Stats()
			if err != nil {
				return 0, err
			}
			return st.Counters["child_sas_installed"], nil
		}
		rs.stateDir = k.StateDir
	} else {
		if lt {
			loadTesterPeer(&cr)
		}
		if variant == "fake" {
			fakeKernelResponder(&cr)
		}
		responder, err := strongswan.Start(ln.GwB, cr)
		if err != nil {
			run.Error = err.Error()
			return
		}
		defer responder.Stop()
		rs.pid = responder.PID
		rs.established = func() (int, error) {
			total, half, err := ikeCounts(responder)
			return total - half, err
		}
		rs.live = func(run *IKERun) error { return charonLive(responder, run) }
	}
	var driver func(count func() (int, error), progress func(int)) (int, error)
	timeout := c.timeout(run.Count)
	// initiatorPID is the initiator's process, initiatorPIDs all of its
	// processes (iked's spud as well) for its memory.
	initiatorPID := 0
	var initiatorPIDs []int
	switch run.Initiator {
	case "iked":
		k, err := startIked(ln, ln.GwA, root, certA, ikedSide{ChildRekey: c.ChildRekey})
		if err != nil {
			run.Error = err.Error()
			return
		}
		defer stopIked(k)
		initiatorPIDs = []int{k.Proc.PID, k.Spud.Proc.PID}
		driver = func(count func() (int, error), progress func(int)) (int, error) {
			// Against iked with PSK each IKE SA has an identity of its own
			// (as load-tester's), so that the responder holds as many
			// tunnels rather than one reauthenticated over and over.
			identity := ""
			if daemon == "iked" && run.Auth == "psk" {
				identity = ikedLoadID
			}
			up, lr, err := driveIked(k.Client, count, run.Count, c.Window, timeout, identity, progress)
			run.InitiatorFailed, run.FirstFailure, run.InitiatorRounds, run.InitiatorLost = lr.Failed, lr.FirstFailure, lr.Rounds, lr.Lost
			return up, err
		}
	case InitLoadTester:
		// load-tester initiates as soon as it is loaded: it starts with
		// the run, after the responder's figures before it.
		var ini *strongswan.Charon
		defer func() {
			if ini != nil {
				ini.Stop()
			}
		}()
		driver = func(count func() (int, error), progress func(int)) (int, error) {
			var err error
			if ini, err = strongswan.Start(ln.GwA, loadTesterConfig(ln.LogDir, loadTesterLine(ln, run.Count, c.Window))); err != nil {
				return 0, err
			}
			initiatorPID = ini.PID
			initiatorPIDs = []int{ini.PID}
			up, err := driveLoadTester(ini, count, run.Count, timeout, progress)
			if up < run.Count {
				// load-tester has no pause and would go on setting up IKE
				// SAs through the figures and the hold; stopping it would
				// delete them: it is frozen instead.
				if serr := ini.Proc.Signal(syscall.SIGSTOP); serr == nil {
					e.Logf("%s: load-tester frozen (SIGSTOP) with %d of %d IKE SAs up", label, up, run.Count)
				}
			}
			return up, err
		}
	default:
		initiator, err := strongswan.Start(ln.GwA, ci)
		if err != nil {
			run.Error = err.Error()
			return
		}
		defer initiator.Stop()
		initiatorPID = initiator.PID
		initiatorPIDs = []int{initiator.PID}
		driver = func(count func() (int, error), progress func(int)) (int, error) {
			return drive(initiator, count, run.Count, c.Window, timeout, progress)
		}
	}
	time.Sleep(500 * time.Millisecond)
	var spudBefore system.Memory
	var spudCPU0, cpu0, iniCPU0 time.Duration
	if rs.spudPID != 0 {
		if spudBefore, err = system.ReadMemory(rs.spudPID); err != nil {
			run.Error = err.Error()
			return
		}
		run.DataPlaneBefore = spudBefore
		spudCPU0, _ = processCPU(rs.spudPID)
	}
	if run.Before, err = system.ReadMemory(rs.pid); err != nil {
		run.Error = err.Error()
		return
	}
	if cpu0, err = processCPU(rs.pid); err != nil {
		run.Error = err.Error()
		return
	}
	if initiatorPID != 0 {
		iniCPU0, _ = processCPU(initiatorPID)
	}
	var workers0 []ikectl.WorkerStats
	if rs.workers != nil {
		workers0, _ = rs.workers()
	}
	var failures0 map[string]uint64
	if rs.failures != nil {
		failures0, _ = rs.failures()
	}
	start := time.Now()
	var points []IKEPoint
	up, err := driver(rs.established, func(up int) {
		el := time.Since(start)
		if len(points) == 0 || points[len(points)-1].Up != up {
			points = append(points, IKEPoint{Elapsed: el, Up: up, CPU: responderCPU(rs) - cpu0 - spudCPU0})
		}
		e.Progress.Update(label, float64(up)/float64(run.Count), fmt.Sprintf("%d up, %.0f/s", up, float64(up)/el.Seconds()))
	})
	run.Elapsed = time.Since(start)
	setupRates(run, points)
	run.Established = up
	if up > 0 {
		run.Rate = float64(up) / run.Elapsed.Seconds()
	}
	if err != nil {
		run.Error = err.Error()
	}
	// CPU up to the last IKE SA; what follows is the reading of the
	// tables, not the setup.
	cpu1, cerr := processCPU(rs.pid)
	var spudCPU1, iniCPU1 time.Duration
	if rs.spudPID != 0 {
		spudCPU1, _ = processCPU(rs.spudPID)
	}
	if initiatorPID != 0 {
		iniCPU1, _ = processCPU(initiatorPID)
	}
	var workers1 []ikectl.WorkerStats
	if rs.workers != nil {
		workers1, _ = rs.workers()
	}
	var failures1 map[string]uint64
	if rs.failures != nil {
		failures1, _ = rs.failures()
		run.Failures = grown(failures0, failures1)
	}
	time.Sleep(500 * time.Millisecond)
	if lerr := rs.live(run); lerr != nil && run.Error == "" {
		run.Error = lerr.Error()
	}
	run.WithChild = run.LiveChildSAs
	if n := run.LiveIKESAs; n > 0 && cerr == nil {
		run.CPUPerSA = perSA(cpu1-cpu0, n)
		run.Cores = (cpu1 - cpu0).Seconds() / run.Elapsed.Seconds()
		if rs.spudPID != 0 {
			run.DataPlaneCPUPerSA = perSA(spudCPU1-spudCPU0, n)
		}
		if initiatorPID != 0 {
			run.InitiatorCPUPerSA = perSA(iniCPU1-iniCPU0, n)
		}
	}
	run.Workers = workerDeltas(workers0, workers1)
	// A run whose Child SAs did not stay (load-tester's fake kernel loaded
	// after kernel-netlink, a responder refusing them) measured something
	// else than tunnels: say so rather than report its figures.
	if run.Error == "" && (run.LiveIKESAs < run.Count || run.LiveChildSAs < run.Count) {
		run.Error = fmt.Sprintf("ike: the responder holds %d IKE SAs and %d Child SAs at the end, %d wanted", run.LiveIKESAs, run.LiveChildSAs, run.Count)
	}
	tunnels := up
	if run.LiveIKESAs > 0 {
		tunnels = run.LiveIKESAs
	}
	if m, err := system.ReadMemory(rs.pid); err == nil {
		run.After = m
		if tunnels > 0 {
			run.PerTunnel = (float64(m.RSS) - float64(run.Before.RSS)) / float64(tunnels)
		}
	}
	state := ""
	if rs.stateDir != "" {
		if b, serr := dirBytes(rs.stateDir); serr == nil {
			run.StateBytes = b
			if tunnels > 0 {
				run.StatePerTunnel = float64(b) / float64(tunnels)
			}
			state = fmt.Sprintf(" + state %.1f KiB", run.StatePerTunnel/1024)
		} else if run.Error == "" {
			run.Error = serr.Error()
		}
	}
	run.InitiatorRSS = rssOf(initiatorPIDs)
	dp := ""
	if rs.spudPID != 0 {
		if m, err := system.ReadMemory(rs.spudPID); err == nil && tunnels > 0 {
			run.DataPlanePerTunnel = (float64(m.RSS) - float64(spudBefore.RSS)) / float64(tunnels)
		}
		dp = fmt.Sprintf(", spud +%.1f KiB per tunnel, %d SAs (per SPU %v), %d policies, %.3f ms CPU per IKE SA", run.DataPlanePerTunnel/1024,
			run.DataPlaneSAs, run.DataPlaneSPUSAs, run.DataPlanePolicies, run.DataPlaneCPUPerSA)
	}
	e.Logf("%s: %d up in %v (%.0f/s); live %d IKE SAs, %d Child SAs; responder %.3f ms CPU per IKE SA (%.2f cores), RSS %.1f -> %.1f MiB (%.1f KiB per tunnel%s)%s%s%s%s", label, up,
		run.Elapsed.Round(time.Millisecond), run.Rate, run.LiveIKESAs, run.LiveChildSAs, run.CPUPerSA, run.Cores,
		mib(run.Before.RSS), mib(run.After.RSS), run.PerTunnel/1024, state, dp, workersNote(run.Workers), setupNote(run), ifErr(err))
	if c.Hold > 0 && up > 0 {
		run.Hold = c.hold(e, label, rs, run, failures1)
	}
}

// responderCPU is the responder's CPU time so far: iked's and spud's, or
// charon's (0 for a process gone).
func responderCPU(rs responderSide) time.Duration {
	d, _ := processCPU(rs.pid)
	if rs.spudPID != 0 {
		s, _ := processCPU(rs.spudPID)
		d += s
	}
	return d
}

// rssOf is the summed RSS of pids (0 for those gone).
func rssOf(pids []int) uint64 {
	var total uint64
	for _, p := range pids {
		if m, err := system.ReadMemory(p); err == nil {
			total += m.RSS
		}
	}
	return total
}

// setupNote is the run's setup rates and failures for the log line.
func setupNote(run *IKERun) string {
	s := ""
	if run.RateWindow > 0 {
		s = fmt.Sprintf("; setup %.0f/s (%.3f ms CPU per IKE SA) over the first %d, %.0f/s (%.3f ms) over the last %d",
			run.FirstRate, run.FirstCPU, run.RateWindow, run.LastRate, run.LastCPU, run.RateWindow)
	}
	if run.InitiatorFailed > 0 || run.InitiatorLost > 0 {
		s += fmt.Sprintf("; %d IKE SAs failed on the initiator (%d load runs, %d of them lost; first: %s)", run.InitiatorFailed, run.InitiatorRounds, run.InitiatorLost, run.FirstFailure)
	}
	if len(run.Failures) > 0 {
		s += fmt.Sprintf("; responder failures %v", run.Failures)
	}
	return s
}

// hold keeps the run's tunnels for c.Hold, reading the responder's
// established IKE SAs now and then, and then its tables and memory.
func (c *IKE) hold(e *Env, label string, rs responderSide, run *IKERun, failures0 map[string]uint64) *IKEHold {
	h := &IKEHold{Duration: c.Hold, Min: run.Established}
	// IKE SAs in flight when the setup ended may have come up since.
	if up, err := rs.established(); err == nil {
		h.Min = up
	}
	// What the hold costs the responder: its CPU, and its workers' time
	// blocked on spud, per Child SA installed (rekeys, with ChildRekey).
	cpu0, cerr := processCPU(rs.pid)
	var spudCPU0 time.Duration
	if rs.spudPID != 0 {
		spudCPU0, _ = processCPU(rs.spudPID)
	}
	var workers0 []ikectl.WorkerStats
	if rs.workers != nil {
		workers0, _ = rs.workers()
	}
	var installed0 uint64
	if rs.installed != nil {
		installed0, _ = rs.installed()
	}
	e.Progress.Step(label+", held", c.Hold)
	start := time.Now()
	for time.Since(start) < c.Hold {
		time.Sleep(min(10*time.Second, c.Hold-time.Since(start)))
		up, err := rs.established()
		if err != nil {
			h.Error = fmt.Sprintf("ike: during the hold: %v", err)
			break
		}
		h.Min = min(h.Min, up)
		e.Progress.Update(label+", held", float64(time.Since(start))/float64(c.Hold), fmt.Sprintf("%d up", up))
	}
	if rs.installed != nil {
		if n, err := rs.installed(); err == nil && n > installed0 {
			h.Rekeys = n - installed0
		}
	}
	if cpu1, err := processCPU(rs.pid); err == nil && cerr == nil && h.Rekeys > 0 {
		h.CPUPerRekey = perSA(cpu1-cpu0, int(h.Rekeys))
		if rs.spudPID != 0 {
			spudCPU1, _ := processCPU(rs.spudPID)
			h.DataPlaneCPUPerRekey = perSA(spudCPU1-spudCPU0, int(h.Rekeys))
		}
	}
	if rs.workers != nil {
		if ws, err := rs.workers(); err == nil {
			h.Workers = workerDeltas(workers0, ws)
		}
	}
	live := *run
	if err := rs.live(&live); err != nil && h.Error == "" {
		h.Error = err.Error()
	}
	h.LiveIKESAs, h.LiveChildSAs, h.DataPlaneSAs, h.DataPlanePolicies = live.LiveIKESAs, live.LiveChildSAs, live.DataPlaneSAs, live.DataPlanePolicies
	h.Memory, _ = system.ReadMemory(rs.pid)
	if rs.spudPID != 0 {
		h.DataPlane, _ = system.ReadMemory(rs.spudPID)
	}
	if rs.stateDir != "" {
		h.StateBytes, _ = dirBytes(rs.stateDir)
	}
	if rs.failures != nil {
		if f, err := rs.failures(); err == nil {
			h.Failures = grown(failures0, f)
		}
	}
	if h.Error == "" && (h.LiveIKESAs < run.LiveIKESAs || h.LiveChildSAs < run.LiveChildSAs) {
		h.Error = fmt.Sprintf("ike: %d IKE SAs and %d Child SAs live after %v, %d and %d before", h.LiveIKESAs, h.LiveChildSAs, c.Hold, run.LiveIKESAs, run.LiveChildSAs)
	}
	rekeys := ""
	if h.Rekeys > 0 {
		rekeys = fmt.Sprintf("; %d Child SAs installed (rekeys), %.3f ms CPU each (+ spud %.3f)%s", h.Rekeys, h.CPUPerRekey, h.DataPlaneCPUPerRekey, workersNote(h.Workers))
	}
	e.Logf("%s: after %v held: live %d IKE SAs, %d Child SAs (fewest established %d), spud %d SAs; RSS %.1f MiB, state %.1f MiB, spud %.1f MiB%s%s",
		label, c.Hold, h.LiveIKESAs, h.LiveChildSAs, h.Min, h.DataPlaneSAs, mib(h.Memory.RSS), mib(h.StateBytes), mib(h.DataPlane.RSS), rekeys, ifErr(errorOf(h.Error)))
	return h
}

// errorOf turns a recorded error back into one for ifErr.
func errorOf(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// perSA is d in milliseconds per IKE SA.
func perSA(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Millisecond) / float64(n)
}

// workerDeltas are the workers at the end with the datagrams they
// received since before.
func workerDeltas(before, after []ikectl.WorkerStats) []IKEWorker {
	var out []IKEWorker
	for _, w := range after {
		x := IKEWorker{ID: w.ID, SPU: w.SPU, IKESAs: w.IKESAs, Datagrams: w.Datagrams, HandedIn: w.HandedIn}
		wait := w.SpudWaitNS
		for _, b := range before {
			if b.ID == w.ID {
				x.Datagrams -= min(b.Datagrams, w.Datagrams)
				x.HandedIn -= min(b.HandedIn, w.HandedIn)
				wait -= min(b.SpudWaitNS, w.SpudWaitNS)
			}
		}
		x.SpudWaitMS = float64(wait) / 1e6
		out = append(out, x)
	}
	return out
}

// workersNote is the workers' share for the log line.
func workersNote(ws []IKEWorker) string {
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; workers (IKE SAs/datagrams):")
	waited := false
	for _, w := range ws {
		fmt.Fprintf(&b, " %d:%d/%d", w.ID, w.IKESAs, w.Datagrams)
		waited = waited || w.SpudWaitMS > 0
	}
	if waited {
		b.WriteString("; blocked on spud (ms):")
		for _, w := range ws {
			fmt.Fprintf(&b, " %d:%.0f", w.ID, w.SpudWaitMS)
		}
	}
	return b.String()
}

// ikedLive reads iked's and spud's tables: established IKE SAs and their
// installed Child SAs (list-sas, page by page), spud's SAs and policies.
func ikedLive(k *daemons.Iked, run *IKERun) error {
	ike, child := 0, 0
	if err := k.Client.SAPages(func(sas []ikectl.IKESA) error {
		for _, sa := range sas {
			if sa.State != "ESTABLISHED" {
				continue
			}
			ike++
			for _, ch := range sa.Children {
				if ch.State == "INSTALLED" {
					child++
				}
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ike: iked's list-sas: %w", err)
	}
	run.LiveIKESAs, run.LiveChildSAs = ike, child
	l, err := k.Spud.Client.SPUs()
	if err != nil {
		return fmt.Errorf("ike: spud's spu.list: %w", err)
	}
	run.DataPlaneSAs, run.DataPlanePolicies, run.DataPlaneSPUSAs = 0, 0, nil
	for _, s := range l.SPUs {
		run.DataPlaneSAs += s.SAs
		run.DataPlanePolicies += s.Policies
		run.DataPlaneSPUSAs = append(run.DataPlaneSPUSAs, s.SAs)
	}
	return nil
}

// charonLive reads charon's established IKE SAs and installed Child SAs.
func charonLive(ch *strongswan.Charon, run *IKERun) error {
	sas, err := ch.ListSAs()
	if err != nil {
		return fmt.Errorf("ike: charon's list-sas: %w", err)
	}
	run.LiveIKESAs, run.LiveChildSAs = 0, 0
	for _, sa := range sas {
		if !sa.Ready() {
			continue
		}
		run.LiveIKESAs++
		for _, c := range sa.Children {
			if c.State == "INSTALLED" {
				run.LiveChildSAs++
			}
		}
	}
	return nil
}

// loadTesterStall is how long driveLoadTester waits for one more IKE SA
// before it gives up: load-tester retransmits on its own, and a loaded
// machine can hold a responder up for seconds.
const loadTesterStall = 60 * time.Second

// driveLoadTester waits while load-tester sets up n IKE SAs, until the
// responder holds n established (count), load-tester exits, nothing moves
// for loadTesterStall or timeout passes.
func driveLoadTester(ini *strongswan.Charon, count func() (int, error), n int, timeout time.Duration, progress func(up int)) (int, error) {
	deadline := time.Now().Add(timeout)
	last, moved := -1, time.Now()
	for {
		up, err := count()
		if err != nil {
			return up, err
		}
		progress(up)
		if up >= n {
			return up, nil
		}
		if up != last {
			last, moved = up, time.Now()
		}
		if exited, perr := ini.Proc.Exited(); exited {
			return up, fmt.Errorf("ike: load-tester's charon exited with %d of %d IKE SAs up (%v):\n%s", up, n, perr, ini.Report())
		}
		if time.Since(moved) > loadTesterStall {
			return up, fmt.Errorf("ike: %d of %d IKE SAs up, none more for %v:\n%s", up, n, loadTesterStall, ini.Report())
		}
		if time.Now().After(deadline) {
			return up, fmt.Errorf("ike: %d of %d IKE SAs up after %v", up, n, timeout)
		}
		time.Sleep(pollEvery(n))
	}
}

func ifErr(err error) string {
	if err == nil {
		return ""
	}
	return "; " + err.Error()
}

// configs are the initiator's (gw-a) and responder's (gw-b) charon
// configurations for auth ("psk" or "ecdsa"), and for "ecdsa" the CA and
// the gateways' certificates (for iked on either side).
func (c *IKE) configs(ln *lab.Line, auth string) (ci, cr strongswan.Config, root, certA, certB *strongswan.Cert, err error) {
	var pki *strongswan.PKI
	if auth == "ecdsa" {
		if pki, err = strongswan.NewPKI(filepath.Join(ln.LogDir, "pki")); err != nil {
			return
		}
		o := strongswan.CertOptions{Key: strongswan.ECDSA256}
		if root, err = pki.NewCA("root", o); err != nil {
			return
		}
		oa, ob := o, o
		oa.SANs = []string{strongswan.IDGwA, ln.Plan.GwAWan4.String()}
		ob.SANs = []string{strongswan.IDGwB, ln.Plan.GwBWan4.String()}
		oa.Flags, ob.Flags = []string{"serverAuth"}, []string{"serverAuth"}
		if certA, err = pki.NewCert("gw-a", root, oa); err != nil {
			return
		}
		if certB, err = pki.NewCert("gw-b", root, ob); err != nil {
			return
		}
	} else if auth != "psk" {
		err = fmt.Errorf("ike: authentication %q: want psk or ecdsa", auth)
		return
	}
	mk := func(gw *lab.Host, own *strongswan.Cert) (strongswan.Config, error) {
		conn, err := strongswan.LineConn(ln, gw, strongswan.LineConnOptions{Families: "4"})
		if err != nil {
			return strongswan.Config{}, err
		}
		conn.Proposals = []string{ikeProposal}
		conn.Children[0].ESPProposals = []string{espProposal}
		conn.Mobike = strongswan.No
		cfg := strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{conn}}
		cn := &cfg.Conns[0]
		if auth == "psk" {
			cn.Local.Auth, cn.Remote.Auth = "psk", "psk"
			cfg.Secrets = strongswan.LinePSK(system.StrongSwanPSK)
		} else {
			cn.Local.Auth, cn.Remote.Auth = "pubkey", "pubkey"
			cn.Local.Certs = []string{cfg.Files.AddIdentity(own)}
			cn.Remote.CACerts = []string{cfg.Files.AddCA(root)}
			cn.SendCert = strongswan.Flag("always")
		}
		st := &cfg.Settings
		st.IKESATableSize, st.IKESATableSegs = 4096, 16
		st.InitLimitHalfOpen, st.CookieThreshold, st.CookieThresholdIP, st.BlockThreshold = 100000, 100000, 100000, 100000
		// Warnings only: a log line per SA would cost the daemons more
		// than the exchange.
		cfg.Log = map[string]int{"default": 0, "ike": 0}
		return cfg, nil
	}
	if ci, err = mk(ln.GwA, certA); err != nil {
		return
	}
	ci.Settings.ReuseIKESA = strongswan.No
	if cr, err = mk(ln.GwB, certB); err != nil {
		return
	}
	cr.Conns[0].Unique = strongswan.Flag("never")
	return
}

// ikeCounts reads charon's IKE SA counters: all, and half-open.
func ikeCounts(ch *strongswan.Charon) (total, halfOpen int, err error) {
	st, err := ch.Stats()
	if err != nil {
		return 0, 0, err
	}
	s := st.Sub("ikesas")
	if s == nil {
		return 0, 0, errors.New("ike: stats without ikesas")
	}
	total, _ = strconv.Atoi(s.Get("total"))
	halfOpen, _ = strconv.Atoi(s.Get("half-open"))
	return total, halfOpen, nil
}

// drive has the initiator start n IKE SAs, at most window of them not yet
// established on the responder (count) at a time, and returns how many
// the responder holds established when all are, or when timeout passes.
func drive(ini *strongswan.Charon, count func() (int, error), n, window int, timeout time.Duration, progress func(up int)) (int, error) {
	deadline := time.Now().Add(timeout)
	var started, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	sem := make(chan struct{}, 8) // concurrent VICI calls (charon's socket backlog is 3)
	var wg sync.WaitGroup
	up := 0
	for {
		var err error
		if up, err = count(); err != nil {
			wg.Wait()
			return up, err
		}
		progress(up)
		if up >= n {
			break
		}
		if time.Now().After(deadline) {
			wg.Wait()
			return up, fmt.Errorf("ike: %d of %d IKE SAs up after %v (%d initiations failed: %v)", up, n, timeout, failed.Load(), firstErr)
		}
		inflight := int(started.Load()) - up
		for inflight < window && int(started.Load()) < n {
			started.Add(1)
			inflight++
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := ini.InitiateIKE("site", "net", -1); err != nil {
					failed.Add(1)
					started.Add(-1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(pollEvery(n))
	}
	wg.Wait()
	return up, nil
}

// ikedLoadRounds is how many load runs driveIked starts at most: the
// first, then one per round that ended with failed IKE SAs, for those.
const ikedLoadRounds = 5

// ikedLoad is what iked's load runs of a measurement did.
type ikedLoad struct {
	Rounds       int
	Failed       int
	FirstFailure string
	// Lost counts load runs iked lost track of: the connection's IKE SAs
	// moved to another worker (spud's SPU map changed) and the run stayed
	// behind on the old one.
	Lost int
}

// driveIked has iked's load initiator start n IKE SAs, window of them in
// flight, and returns how many the responder holds established (count)
// when all are, or when the load runs ended, with their outcome. IKE SAs
// that failed on the initiator are started again in another load run
// (up to ikedLoadRounds in all) and counted: failures are the figure of
// a run, not its end. A load run iked no longer finds (its connection
// moved to another worker) is taken as ended, and another one started.
func driveIked(k *ikectl.Client, count func() (int, error), n, window int, timeout time.Duration, identity string, progress func(up int)) (int, ikedLoad, error) {
	var out ikedLoad
	// A load run stops starting IKE SAs at its timeout; those in flight
	// end within their retransmission timeout.
	deadline := time.Now().Add(timeout)
	poll := pollEvery(n)
	var st *ikectl.LoadResult
	lost := false // the last load run was lost, not ended
	account := func() {
		out.Failed += st.Failed
		if out.FirstFailure == "" {
			out.FirstFailure = st.FirstFailure
		}
	}
	for {
		up, err := count()
		if err != nil {
			return up, out, err
		}
		progress(up)
		if up >= n && st != nil {
			// Established on the responder: wait for the initiator to
			// count the last ones (its Child SAs are in).
			for i := 0; !st.Done && i < 250; i++ {
				time.Sleep(20 * time.Millisecond)
				if st, err = k.LoadStatus("site"); err != nil {
					return up, out, err
				}
			}
			account()
			return up, out, nil
		}
		if st == nil || st.Done {
			if st != nil {
				account()
				if up, err = count(); err != nil || up >= n {
					return up, out, err
				}
				if st.Stopped != "" || (st.Failed == 0 && !lost) || out.Rounds >= ikedLoadRounds || !time.Now().Before(deadline) {
					return up, out, fmt.Errorf("ike: iked's load runs ended with %d of %d IKE SAs up on the responder (%d rounds, %d IKE SAs failed on the initiator; first failure: %s; last run stopped: %s)",
						up, n, out.Rounds, out.Failed, out.FirstFailure, st.Stopped)
				}
			}
			id := ""
			if identity != "" {
				// A run numbers its IKE SAs from 1: the round keeps them
				// apart from the earlier runs'.
				id = strings.Replace(identity, "%r", strconv.Itoa(out.Rounds), 1)
			}
			if _, err := k.Load(ikectl.Load{Conn: "site", Count: n - up, Window: window, Timeout: time.Until(deadline), Background: true,
				Identity: id}); err != nil {
				return up, out, err
			}
			out.Rounds++
			lost = false
		}
		if st, err = k.LoadStatus("site"); unixrpc.CodeOf(err) == unixrpc.CodeNotFound && out.Rounds > 0 {
			// load.status asks the worker that owns the connection now;
			// the run stayed on the one it started on, its IKE SAs in
			// flight unable to move (not established): what it
			// established is on the responder, the rest is to start again.
			out.Lost++
			if out.FirstFailure == "" {
				out.FirstFailure = "load run lost: " + err.Error()
			}
			if out.Rounds >= ikedLoadRounds {
				return up, out, fmt.Errorf("ike: %d of %d IKE SAs up on the responder, iked lost its load run (%d lost of %d rounds): %w", up, n, out.Lost, out.Rounds, err)
			}
			st, lost = &ikectl.LoadResult{Done: true}, true
			continue
		} else if err != nil {
			return up, out, err
		}
		if time.Now().After(deadline.Add(3 * time.Minute)) {
			return up, out, fmt.Errorf("ike: %d of %d IKE SAs up after %v, iked's load run not finished (%d failed: %s)", up, n, timeout, out.Failed+st.Failed, st.FirstFailure)
		}
		time.Sleep(poll)
	}
}

// ikedLoadID is the identity of iked's load initiator's IKE SAs against
// an iked responder (%r: the load run, %d: the IKE SA's number in it),
// which loadTesterMatch accepts.
const ikedLoadID = "c%d.r%r.load.gw-a.lab.example"

// ikedSide is what differs between iked's runs.
type ikedSide struct {
	// Anchor is ike_anchor (tunnel, ike-sa); "" keeps iked's default.
	Anchor string
	// RemoteID and PSK, when set, replace the peer's identity and the
	// pre-shared key (then for any identity): load-tester's.
	RemoteID string
	PSK      []byte
	// ChildRekey is the Child SA's rekey_time (zero: none).
	ChildRekey time.Duration
}

// ikedConfig is iked's YAML configuration and secrets for gw's side of
// the line (gw-a initiates, gw-b answers): connection "site" to the
// other gateway, PSK or, with own, public keys; global is what goes
// before the connections (the PKI folders).
func ikedConfig(ln *lab.Line, gw *lab.Host, global string, own bool, o ikedSide) (conf, secrets string) {
	pl := ln.Plan
	name, localID, remoteID := "gw-b", strongswan.IDGwB, strongswan.IDGwA
	localAddr, remoteAddr, localTS, remoteTS := pl.GwBWan4, pl.GwAWan4, pl.LanB4, pl.LanA4
	if gw == ln.GwA {
		name, localID, remoteID = "gw-a", strongswan.IDGwA, strongswan.IDGwB
		localAddr, remoteAddr, localTS, remoteTS = pl.GwAWan4, pl.GwBWan4, pl.LanA4, pl.LanB4
	}
	if o.RemoteID != "" {
		remoteID = o.RemoteID
	}
	local := fmt.Sprintf("{auth: psk, id: %s}", localID)
	remote := fmt.Sprintf("{auth: psk, id: %q}", remoteID)
	sendCert := ""
	if own {
		local = fmt.Sprintf("{auth: pubkey, certs: %s.pem, id: %s}", name, localID)
		remote = fmt.Sprintf("{auth: pubkey, id: %q}", remoteID)
		sendCert = "    send_cert: always\n"
	}
	if o.Anchor != "" {
		global += "ike_anchor: " + o.Anchor + "\n"
	}
	rekey := ""
	if o.ChildRekey > 0 {
		rekey = fmt.Sprintf("        rekey_time: %s\n        rand_time: %s\n", o.ChildRekey, o.ChildRekey/3)
	}
	conf = fmt.Sprintf(`%scookie_threshold: 1000000
init_limit_half_open: 1000000
cookie_threshold_ip: 1000000
block_threshold: 1000000
connections:
  site:
    local_addrs: %s
    remote_addrs: %s
    proposals: %s
    unique: never
    mobike: no
%s    local: %s
    remote: %s
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
%s`, global, localAddr, remoteAddr, ikeProposal, sendCert, local, remote, localTS, remoteTS, espProposal, rekey)
	if o.PSK != nil {
		secrets = fmt.Sprintf("ike:\n  site:\n    secret: 0x%x\n", o.PSK)
	} else {
		secrets = fmt.Sprintf("ike:\n  site:\n    id: [%s, %s]\n    secret: %q\n", strongswan.IDGwA, strongswan.IDGwB, string(system.StrongSwanPSK))
	}
	return conf, secrets
}

// startIked starts spud and iked on gw (gw-a initiates, gw-b answers) with
// connection "site" to the other gateway: PSK, or with own (its P-256
// certificate from root, sent in every IKE_AUTH) public keys; the same
// identities as charon's unless o says otherwise.
func startIked(ln *lab.Line, gw *lab.Host, root, own *strongswan.Cert, o ikedSide) (*daemons.Iked, error) {
	name := "gw-b"
	if gw == ln.GwA {
		name = "gw-a"
	}
	global := ""
	if own != nil {
		dir := filepath.Join(ln.LogDir, "iked-pki-"+name)
		if err := ikedCerts(dir, name, root, own); err != nil {
			return nil, err
		}
		global = fmt.Sprintf("pki:\n  x509: %[1]s/x509\n  x509ca: %[1]s/x509ca\n  x509crl: %[1]s/x509crl\n  private: %[1]s/private\n", dir)
	}
	conf, secrets := ikedConfig(ln, gw, global, own != nil, o)
	sp, err := daemons.StartSpud(gw, daemons.SpudOptions{})
	if err != nil {
		return nil, err
	}
	k, err := daemons.StartIked(sp, daemons.IkedOptions{Config: conf, Secrets: secrets, Args: []string{"-log-level", "warn"}})
	if err != nil {
		sp.Stop()
		return nil, err
	}
	return k, nil
}

// stopIked stops what startIked started, iked before its spud, and
// removes iked's files.
func stopIked(k *daemons.Iked) {
	k.Stop()
	k.Spud.Stop()
	k.Cleanup()
}

// ikedCerts lays out iked's certificate folders under dir: the gateway's
// certificate and key (name.pem, name.key), and the CA as the trust
// anchor.
func ikedCerts(dir, name string, root, own *strongswan.Cert) error {
	for _, f := range []struct {
		sub, name string
		data      []byte
		mode      os.FileMode
	}{
		{"x509", name + ".pem", own.CertPEM, 0o644},
		{"private", name + ".key", own.KeyPEM, 0o600},
		{"x509ca", "root.pem", root.CertPEM, 0o644},
		{"x509crl", "", nil, 0},
	} {
		if err := os.MkdirAll(filepath.Join(dir, f.sub), 0o700); err != nil {
			return fmt.Errorf("ike: %w", err)
		}
		if f.name == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f.sub, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("ike: %w", err)
		}
	}
	return nil
}
