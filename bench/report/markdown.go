package report

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spugate/spugate/bench/scenario"
	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/dataplane/steer"
)

// WriteMarkdown writes the report to dir/report.md.
func WriteMarkdown(r *Results, dir string) (string, error) {
	p := filepath.Join(dir, "report.md")
	f, err := os.Create(p)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	Markdown(f, r)
	return p, f.Close()
}

// Markdown writes the report.
func Markdown(w io.Writer, r *Results) {
	m := &md{w: w}
	m.p("# spugate benchmark report")
	m.p("Command: `%s`%s  ", r.Command, ifs(r.Quick, " (quick mode: short runs for CI, figures indicative only)"))
	m.p("Run: %s, %s.  ", r.Started.Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	mc := r.Machine
	m.p("Machine: %s, %d CPUs, %d MiB, Linux %s (%s), %s; %s; %s%s.  ",
		mc.CPUModel, mc.CPUs, mc.MemoryMiB, mc.Kernel, mc.Arch, mc.GoVersion, mc.StrongSwan, mc.WireGuard, ifs(mc.Virtual != "", ", virtualization: "+mc.Virtual))
	s := r.Settings
	m.p("Links: veth, %d queues per end, threaded NAPI %v, MTU %s, offloads off but GRO (for threaded NAPI); spud: -poll %s, AF_XDP %s mode, steering carrier %s; generator and sink: AF_XDP copy mode.  ",
		max(s.Links.Queues, 1), s.Links.Threaded, orDefault(s.Links.MTU, "1500"), s.SpudPoll, s.XSKMode, orText(s.Carrier, "not recorded"))
	m.p("Load average before / after: %s / %s.", s.LoadBefore, s.LoadAfter)
	m.p("")
	m.p("How to read this: every figure is packets per second received by the sink (Mpps) and the Ethernet frames' bits per second (Gbit/s, without the FCS), in UDP flows from client-b through gw-b and gw-a to client-a. " +
		"Packet sizes are Ethernet frame sizes with the FCS (64 bytes = 60 on the veth); IMIX is 7:4:1 of 64, 576 and 1400 bytes. " +
		"Each figure comes from a search: one run with the generator flat out, then a binary search over paced offered rates until the bracket closes (RFC 2544 throughput). " +
		"The headline is the maximum forwarding rate (RFC 2285: the most received over those runs, with the loss at that load in %%); " +
		"the throughput within the loss tolerance (RFC 2544 section 26.1) follows in its own table, with each search's runs and final bracket. " +
		"Generator, sink and both gateways share this machine's CPUs: see the generator's own ceiling below.")
	for _, e := range r.Errors {
		m.p("")
		m.p("**Not run:** %s", e)
	}
	if len(r.Ceiling) > 0 {
		m.ceiling(r.Ceiling)
	}
	if r.Throughput != nil {
		m.throughput(r.Throughput)
	}
	if r.TCP != nil {
		m.tcp(r.TCP)
	}
	if r.Scaling != nil {
		m.scaling(r.Scaling)
	}
	if r.Tunnels != nil {
		m.tunnels(r.Tunnels)
	}
	if r.IKE != nil {
		m.ike(r.IKE)
	}
	if r.Rekey != nil {
		m.rekey(r.Rekey)
	}
	if r.Throughput != nil && r.Throughput.Profile != nil {
		m.profile(r.Throughput.Profile)
	}
	m.drops(r)
}

type md struct{ w io.Writer }

func (m *md) p(format string, args ...any) { fmt.Fprintf(m.w, format+"\n", args...) }

func (m *md) table(head []string, rows [][]string) {
	m.p("")
	m.p("| %s |", strings.Join(head, " | "))
	seps := make([]string, len(head))
	for i := range seps {
		seps[i] = "---"
		if i > 0 {
			seps[i] = "--:"
		}
	}
	m.p("| %s |", strings.Join(seps, " | "))
	for _, r := range rows {
		m.p("| %s |", strings.Join(r, " | "))
	}
	m.p("")
}

func ifs(c bool, s string) string {
	if c {
		return s
	}
	return ""
}

func orText(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func orDefault(v int, d string) string {
	if v == 0 {
		return d
	}
	return fmt.Sprint(v)
}

// rate formats a search's peak: packet rate, bit rate, loss at that load.
func rate(f *scenario.Found) string {
	if f == nil || f.Peak == nil || f.PPS() == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f (%.2f) %.0f%%", f.PPS()/1e6, f.Gbps(), f.Loss()*100)
}

// within formats a search's throughput within tolerance.
func within(f *scenario.Found) string {
	if f == nil || f.Best == nil {
		return "none"
	}
	return fmt.Sprintf("%.3f", f.Best.PPS/1e6)
}

func pct(x float64) string { return fmt.Sprintf("%.2f%%", x*100) }

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond))
}

// carriers compares spud on each steering carrier measured (systems
// spud:meta, spud:shim, spud:none), as ratios to spud as it runs by default
// (the best carrier the kernel allows), in one run.
func (m *md) carriers(pps func(sys, suite, mix string) float64, suites, mixes []string) {
	var cs []string
	for _, c := range steer.Carriers {
		for _, s := range suites {
			for _, mix := range mixes {
				if pps(scenario.SpudCarrier(c.String()), s, mix) > 0 && !slices.Contains(cs, c.String()) {
					cs = append(cs, c.String())
				}
			}
		}
	}
	if len(cs) == 0 {
		return
	}
	m.p("")
	m.p("### spud by steering carrier")
	m.p("")
	m.p("Maximum forwarding rate (Mpps) of spud on each carrier, and its ratio to spud on the carrier it chooses itself, in the same run.")
	head := []string{"suite", "size", "spud"}
	for _, c := range cs {
		head = append(head, c, c+"/spud")
	}
	var rows [][]string
	for _, s := range suites {
		for _, mix := range mixes {
			base := pps(scenario.Spud, s, mix)
			row := []string{s, mix, mpps(base)}
			for _, c := range cs {
				x := pps(scenario.SpudCarrier(c), s, mix)
				r := "–"
				if base > 0 && x > 0 {
					r = fmt.Sprintf("%.2f", x/base)
				}
				row = append(row, mpps(x), r)
			}
			rows = append(rows, row)
		}
	}
	m.table(head, rows)
}

func mpps(pps float64) string {
	if pps == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", pps/1e6)
}

func (m *md) ceiling(runs []scenario.CeilingRun) {
	m.p("")
	m.p("## Generator ceiling")
	m.p("")
	m.p("The generator sending flat out straight into the sink over one veth (same link settings, no gateway): the most this lab can measure.")
	var rows [][]string
	for _, c := range runs {
		if c.Result == nil {
			rows = append(rows, []string{c.Mix, "error: " + c.Error, "", "", ""})
			continue
		}
		r := c.Result
		rows = append(rows, []string{c.Mix, fmt.Sprintf("%.3f", r.OfferedPPS/1e6), fmt.Sprintf("%.3f", r.PPS/1e6), fmt.Sprintf("%.2f", r.Gbps), pct(r.LossRatio)})
	}
	m.table([]string{"size", "sent Mpps", "received Mpps", "received Gbit/s", "loss"}, rows)
}

func (m *md) throughput(t *scenario.ThroughputResults) {
	m.p("")
	m.p("## 1. Throughput: spud against strongSwan, wireguard-go and kernel forwarding")
	m.p("")
	m.p("One tunnel (gw-a's LAN to gw-b's), %d UDP flows, %v per measurement after %v of warm-up; search: flat out, then a binary search over offered rates (RFC 2544 throughput) of at most %d paced steps, until the bracket is within %s, loss tolerance %s. "+
		"Cells: maximum forwarding rate in Mpps (Gbit/s) and the loss at that load. strongSwan is charon with kernel-libipsec (userspace ESP in UDP 4500: this kernel has no ESP); "+
		"wireguard-go has one cipher (ChaCha20-Poly1305) and kernel forwarding none, so they are measured once per size and shown in every suite's table.",
		t.Flows, t.Timing.Duration, t.Timing.Warmup, t.Search.Steps, pct(t.Search.Resolution), pct(t.Search.Tolerance))
	type key struct{ sys, suite, mix string }
	runs := map[key]scenario.ThroughputRun{}
	var mixes, suites []string
	seenMix, seenSuite := map[string]bool{}, map[string]bool{}
	for _, r := range t.Runs {
		runs[key{r.System, r.Suite, r.Mix}] = r
		if !seenMix[r.Mix] {
			seenMix[r.Mix] = true
			mixes = append(mixes, r.Mix)
		}
		if r.Suite != "" && !seenSuite[r.Suite] {
			seenSuite[r.Suite] = true
			suites = append(suites, r.Suite)
		}
	}
	ratio := map[[3]string]float64{}
	for _, x := range t.Ratios {
		ratio[[3]string{x.Suite, x.Mix, x.Versus}] = x.Ratio
	}
	cell := func(k key) string {
		r, ok := runs[k]
		if !ok {
			return "–"
		}
		if r.PPS == 0 {
			if r.Error != "" {
				return "error"
			}
			return "–"
		}
		return rate(r.Found)
	}
	rat := func(s, mix, v string) string {
		if x, ok := ratio[[3]string{s, mix, v}]; ok {
			return fmt.Sprintf("%.2f", x)
		}
		return "–"
	}
	for _, s := range suites {
		m.p("")
		m.p("### %s", s)
		var rows [][]string
		for _, mix := range mixes {
			wg := "–"
			if s == scenario.StandardSuites[2] {
				wg = cell(key{scenario.WireGuard, "", mix})
			}
			rows = append(rows, []string{mix, cell(key{scenario.Spud, s, mix}), cell(key{scenario.StrongSwan, s, mix}), wg,
				cell(key{scenario.Kernel, "", mix}), rat(s, mix, scenario.Kernel), rat(s, mix, scenario.StrongSwan), rat(s, mix, scenario.WireGuard)})
		}
		m.table([]string{"size", "spud", "strongSwan", "wireguard-go", "kernel (no crypto)", "spud/kernel", "spud/strongSwan", "spud/wireguard-go"}, rows)
	}
	m.carriers(func(sys, s, mix string) float64 { return runs[key{sys, s, mix}].PPS }, suites, mixes)
	// Within tolerance.
	var wrows [][]string
	wcell := func(k key) string {
		r, ok := runs[k]
		if !ok || r.Found == nil {
			return "–"
		}
		return within(r.Found)
	}
	for _, s := range suites {
		for _, mix := range mixes {
			wg := "–"
			if s == scenario.StandardSuites[2] {
				wg = wcell(key{scenario.WireGuard, "", mix})
			}
			wrows = append(wrows, []string{s, mix, wcell(key{scenario.Spud, s, mix}), wcell(key{scenario.StrongSwan, s, mix}), wg, wcell(key{scenario.Kernel, "", mix})})
		}
	}
	if len(wrows) > 0 {
		m.p("")
		m.p("### Throughput within %s loss", pct(t.Search.Tolerance))
		m.p("")
		m.p("The received rate of the run at each search's bracket low end (the highest offered rate within the tolerance with no failed run at or below it), Mpps; none: every run lost more.")
		m.table([]string{"suite", "size", "spud", "strongSwan", "wireguard-go", "kernel"}, wrows)
	}
	m.searches(t.Runs)
	var errs []string
	for _, r := range t.Runs {
		if r.Error != "" {
			errs = append(errs, fmt.Sprintf("%s %s %s: %s", r.System, r.Suite, r.Mix, r.Error))
		}
	}
	if len(errs) > 0 {
		m.p("Errors: %s", strings.Join(uniq(errs), "; "))
	}
	// Latency at a fixed rate.
	var rows [][]string
	for _, r := range t.Runs {
		if r.Latency == nil {
			continue
		}
		l := r.Latency
		rows = append(rows, []string{strings.TrimSpace(r.System + " " + r.Suite), r.Mix, us(l.Latency.P50), us(l.Latency.P99), us(l.Latency.P999), us(l.Latency.Max), pct(l.LossRatio)})
	}
	if len(rows) > 0 {
		m.p("")
		m.p("### Latency at %.0f kpps", t.LatencyRate/1e3)
		m.p("")
		m.p("One-way, generator to sink (one clock), in µs; the percentiles are upper bucket edges (within 6%%).")
		m.table([]string{"system", "size", "p50", "p99", "p99.9", "max", "loss"}, rows)
	}
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func (m *md) scaling(s *scenario.ScalingResults) {
	m.p("")
	m.p("## 2. SPU scaling")
	m.p("")
	m.p("spud with 1..N SPUs on each gateway, %d tunnels with distinct peers (so distinct anchor SPUs), %s, on %d CPUs. "+
		"Rows marked simulated run more SPUs than CPUs: SPUs then share cores, which measures the cost of the hand-offs between them, not a speed-up.",
		s.Tunnels, s.Suite, s.CPUs)
	var rows [][]string
	for _, r := range s.Runs {
		work := ""
		if w := r.Work["gw-a"]; len(w) > 0 {
			var t uint64
			for _, v := range w {
				t += v
			}
			var parts []string
			for _, v := range w {
				if t > 0 {
					parts = append(parts, fmt.Sprintf("%.0f", float64(v)*100/float64(t)))
				}
			}
			work = strings.Join(parts, "/")
		}
		pps := rate(r.Found)
		if r.Error != "" && r.PPS == 0 {
			pps = "error"
		}
		rows = append(rows, []string{fmt.Sprint(r.SPUs), ifs(r.Simulated, "yes"), r.Mix, pps, within(r.Found), work})
	}
	m.table([]string{"SPUs", "simulated", "size", "peak Mpps (Gbit/s) loss", "within tolerance", "gw-a work per SPU, %"}, rows)
}

func (m *md) tunnels(t *scenario.TunnelResults) {
	m.p("")
	m.p("## 3. Tunnel count")
	m.p("")
	m.p("spud carrying N tunnels, each with its own peer and one flow, %s bytes, %s. Installing a tunnel takes an SPI allocation, three SAs and two policies over the two gateways' SA API; "+
		"memory is gw-a's spud (the concentrator, whole tunnels), resident set before and after installing, after a pause.", t.Mix, t.Suite)
	var rows [][]string
	for _, r := range t.Runs {
		pps := rate(r.Found)
		if r.Error != "" && r.PPS == 0 {
			pps = "error: " + r.Error
		}
		count := fmt.Sprint(r.Tunnels)
		if r.Installed > 0 && r.Installed < r.Tunnels {
			count = fmt.Sprintf("%d (only %d installed in %v)", r.Tunnels, r.Installed, r.InstallTime.Round(time.Second))
		}
		rows = append(rows, []string{count, fmt.Sprintf("%.0f", r.InstallRate), fmt.Sprintf("%.1f", mib(r.Before.RSS)), fmt.Sprintf("%.1f", mib(r.After.RSS)),
			fmt.Sprintf("%.1f", r.PerTunnel/1024), fmt.Sprintf("%.1f", r.AnonPerTunnel/1024), pps, within(r.Found)})
	}
	m.table([]string{"tunnels", "installed per s", "RSS before, MiB", "RSS after, MiB", "KiB per tunnel", "anon KiB per tunnel", "peak Mpps (Gbit/s) loss", "within tolerance"}, rows)
	for _, r := range t.Runs {
		if len(r.InstallCurve) < 2 {
			continue
		}
		var parts []string
		var prev system.InstallPoint
		for _, p := range r.InstallCurve {
			dt := (p.Elapsed - prev.Elapsed).Seconds()
			if dt > 0 {
				parts = append(parts, fmt.Sprintf("%d: %.0f/s", p.Tunnels, float64(p.Tunnels-prev.Tunnels)/dt))
			}
			prev = p
		}
		m.p("Install rate of the %d-tunnel run, by tenths (tunnels in: rate over that tenth): %s.  ", r.Tunnels, strings.Join(parts, ", "))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func (m *md) ike(k *scenario.IKEResults) {
	m.p("")
	m.p("## 4. IKE setup rate")
	m.p("")
	for _, n := range k.Notes {
		m.p("%s  ", n)
	}
	var rows [][]string
	for _, r := range k.Runs {
		if r.Error != "" && r.Established == 0 {
			rows = append(rows, []string{r.Responder, r.Initiator, r.Auth, fmt.Sprintf("0/%d", r.Count), "error: " + r.Error, "", "", "", "", "", ""})
			continue
		}
		dp, spudSAs, state := "–", "–", ""
		if r.DataPlanePerTunnel > 0 {
			dp = fmt.Sprintf("%.1f", r.DataPlanePerTunnel/1024)
		}
		if r.DataPlaneSAs > 0 {
			spudSAs = fmt.Sprint(r.DataPlaneSAs)
		}
		if r.StatePerTunnel > 0 {
			state = fmt.Sprintf(" + %.1f", r.StatePerTunnel/1024)
		}
		cpu := "–"
		if r.CPUPerSA > 0 {
			cpu = fmt.Sprintf("%.2f", r.CPUPerSA)
			if r.DataPlaneCPUPerSA > 0 {
				cpu += fmt.Sprintf(" + %.2f", r.DataPlaneCPUPerSA)
			}
		}
		rows = append(rows, []string{r.Responder, r.Initiator, r.Auth, fmt.Sprintf("%d/%d", r.Established, r.Count), fmt.Sprintf("%.0f", r.Rate),
			r.Elapsed.Round(100 * time.Millisecond).String(), fmt.Sprintf("%d / %d", r.LiveIKESAs, r.LiveChildSAs), spudSAs, cpu,
			fmt.Sprintf("%.1f", mib(r.After.RSS)), fmt.Sprintf("%.1f%s", r.PerTunnel/1024, state), dp})
	}
	m.table([]string{"responder", "initiator", "auth", "established", "IKE SAs per s", "time to all", "live IKE / Child SAs", "spud SAs",
		"CPU ms per IKE SA (+ spud)", "responder RSS, MiB", "KiB per tunnel (+ state)", "spud KiB per tunnel"}, rows)
	for _, r := range k.Runs {
		if r.Error != "" && r.Established > 0 {
			m.p("")
			m.p("%s responder, %s initiator, %s: %s  ", r.Responder, r.Initiator, r.Auth, r.Error)
		}
	}
	if len(k.Ratios) > 0 {
		var rr [][]string
		for _, x := range k.Ratios {
			ini := x.Initiator
			if ini == "" {
				ini = "charon"
			}
			rr = append(rr, []string{ini, x.Auth, fmt.Sprintf("%.0f", x.Iked), fmt.Sprintf("%.0f", x.Charon), fmt.Sprintf("%.2f", x.Ratio)})
		}
		m.p("")
		m.p("Responders compared under the same initiator:")
		m.table([]string{"initiator", "auth", "iked per s", "charon per s", "iked/charon as responder"}, rr)
	}
	if len(k.CPURatios) > 0 {
		var rr [][]string
		for _, x := range k.CPURatios {
			rr = append(rr, []string{x.Responder, x.Initiator, x.Auth, fmt.Sprintf("%.3f", x.CPU), fmt.Sprintf("%.3f", x.Charon), fmt.Sprintf("%.2f", x.Ratio)})
		}
		m.p("")
		m.p("Responder CPU per IKE SA, iked + spud against charon's pure IKE cost (charon:fake) under the same initiator:")
		m.table([]string{"responder", "initiator", "auth", "iked + spud, ms", "charon:fake, ms", "ratio"}, rr)
	}
	var workers []string
	for _, r := range k.Runs {
		if len(r.Workers) == 0 {
			continue
		}
		var ws []string
		for _, w := range r.Workers {
			ws = append(ws, fmt.Sprintf("worker %d: %d IKE SAs, %d datagrams", w.ID, w.IKESAs, w.Datagrams))
		}
		workers = append(workers, fmt.Sprintf("%s (%s, %s, %.2f cores): %s", r.Responder, r.Initiator, r.Auth, r.Cores, strings.Join(ws, "; ")))
	}
	if len(workers) > 0 {
		m.p("")
		m.p("iked's IKE workers at the end (IKE SAs held, datagrams received during the run):")
		m.p("")
		for _, w := range workers {
			m.p("- %s", w)
		}
	}
	m.ikeScale(k)
}

// ikeScale is the setup at scale: the rate over the first and the last
// IKE SAs and per tenth, failures counted, and the tunnels after the hold.
func (m *md) ikeScale(k *scenario.IKEResults) {
	var rows, holds [][]string
	for _, r := range k.Runs {
		if r.RateWindow == 0 {
			continue
		}
		ratio := "–"
		if r.FirstRate > 0 {
			ratio = fmt.Sprintf("%.2f", r.LastRate/r.FirstRate)
		}
		var dec, decCPU []string
		for _, d := range r.Deciles {
			dec = append(dec, fmt.Sprintf("%.0f", d))
		}
		for _, c := range r.DecileCPU {
			decCPU = append(decCPU, fmt.Sprintf("%.2f", c))
		}
		// A 10,000 window at 1M lasts seconds and may fall between two
		// garbage collections of a multi-GiB heap; the tenths average over
		// many, so their ratio is the one that tells a cost that grows.
		tenths := "–"
		if k := len(r.Deciles); k == 10 && r.Deciles[0] > 0 && len(r.DecileCPU) == 10 && r.DecileCPU[0] > 0 {
			tenths = fmt.Sprintf("%.2f / %.2f", r.Deciles[9]/r.Deciles[0], r.DecileCPU[9]/r.DecileCPU[0])
		}
		fails := fmt.Sprint(r.InitiatorFailed)
		if r.FirstFailure != "" {
			lost := ""
			if r.InitiatorLost > 0 {
				lost = fmt.Sprintf(", %d lost", r.InitiatorLost)
			}
			fails += fmt.Sprintf(" (%d load runs%s; first: %s)", r.InitiatorRounds, lost, r.FirstFailure)
		}
		cpu := "–"
		if r.FirstCPU > 0 && r.LastCPU > 0 {
			cpu = fmt.Sprintf("%.2f → %.2f", r.FirstCPU, r.LastCPU)
		}
		rows = append(rows, []string{r.Responder, r.Initiator, r.Auth, fmt.Sprint(r.Established), fmt.Sprintf("%.0f", r.FirstRate), fmt.Sprintf("%.0f", r.LastRate),
			ratio, cpu, strings.Join(dec, " "), strings.Join(decCPU, " "), tenths, fails, counts(r.Failures)})
		if h := r.Hold; h != nil {
			n := float64(max(h.LiveIKESAs, 1))
			status := "ok"
			if h.Error != "" {
				status = h.Error
			}
			holds = append(holds, []string{r.Responder, r.Initiator, r.Auth, h.Duration.String(), fmt.Sprintf("%d / %d", h.LiveIKESAs, h.LiveChildSAs), fmt.Sprint(h.Min),
				fmt.Sprint(h.DataPlaneSAs), perTunnel(h.Memory.RSS, r.Before.RSS, n), perTunnel(h.StateBytes, 0, n),
				perTunnel(h.DataPlane.RSS, r.DataPlaneBefore.RSS, n), counts(h.Failures), status})
		}
	}
	if len(rows) == 0 {
		return
	}
	m.p("")
	m.p("### Setup rate as the table grows")
	m.p("")
	m.p("IKE SAs per second over the first and the last 10,000 IKE SAs established (a tenth of smaller runs), and over each tenth; a per-setup cost that grows with the table shows as a last/first ratio below 1, and as the responder's CPU per IKE SA (iked + spud, or charon) rising from the first to the last, which other work on the machine hardly moves. In large runs a window of 10,000 lasts seconds and may fall between two garbage collections of a large heap: the last tenth against the first, which average over many, is the ratio to read there (rate, and CPU per IKE SA: above 1 is a cost that grows). Failures: IKE SAs the initiator gave up on (iked's load initiator starts them again in another load run, so that the count is reached), and the responder's failure counters that grew. The two ends share the machine: other work on it shows in every rate.")
	m.table([]string{"responder", "initiator", "auth", "IKE SAs", "first, per s", "last, per s", "last/first", "CPU ms per IKE SA, first → last", "per tenth, per s", "CPU ms per IKE SA per tenth", "last/first tenth: rate / CPU", "initiator failures", "responder failures"}, rows)
	if len(holds) > 0 {
		m.p("")
		m.p("The tunnels after the hold (memory per live IKE SA: the growth of the responder's RSS since before the setup, its state folder on tmpfs, the growth of spud's RSS):")
		m.table([]string{"responder", "initiator", "auth", "held", "live IKE / Child SAs", "fewest established", "spud SAs", "RSS KiB per tunnel", "state KiB per tunnel", "spud KiB per tunnel", "failures during", "status"}, holds)
	}
}

// perTunnel is (now - before) / n in KiB.
func perTunnel(now, before uint64, n float64) string {
	return fmt.Sprintf("%.2f", (float64(now)-float64(before))/n/1024)
}

// counts is a counter map as "name n, name n" in name order, or "–".
func counts(c map[string]uint64) string {
	if len(c) == 0 {
		return "–"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		out = append(out, fmt.Sprintf("%s %d", k, c[k]))
	}
	return strings.Join(out, ", ")
}

func (m *md) rekey(k *scenario.RekeyResults) {
	m.p("")
	m.p("## 5. Rekey under load")
	m.p("")
	m.p("%d tunnels, %s bytes, %s, offered %.0f kpps in both runs; with rekeying, every tunnel's SAs are replaced make-before-break through the SA API every %v (new inbound SA, new outbound SAs, old outbound deleted, old inbound deleted after %v). "+
		"This measures the data plane's side of a rekey as iked drives it, with no IKE exchange in it; iked's own rekeying follows.", k.Tunnels, k.Mix, k.Suite, k.Rate/1e3, k.Interval, k.Grace)
	var rows [][]string
	for _, r := range k.Runs {
		name := "no rekeying"
		if r.Rekeying {
			name = fmt.Sprintf("rekeying (%d rounds, %d rekeys, %d failed, %v per round)", r.Rounds, r.Rekeys, r.Failed, r.RoundTime.Round(time.Millisecond))
		}
		if r.Result == nil {
			rows = append(rows, []string{name, "error: " + r.Error, "", "", ""})
			continue
		}
		x := r.Result
		rows = append(rows, []string{name, fmt.Sprintf("%.3f", x.PPS/1e6), fmt.Sprint(x.Lost), pct(x.LossRatio), us(x.Latency.P99)})
	}
	m.table([]string{"run", "Mpps", "lost", "loss", "p99 µs"}, rows)
	if len(k.Errors) > 0 {
		m.p("Rekey errors: %s", strings.Join(k.Errors, "; "))
	}
	if ik := k.Iked; ik != nil {
		m.p("")
		m.p("### iked rekeying")
		m.p("")
		m.p("spud and iked on both gateways, one site-to-site tunnel (PSK), offered %.0f kpps in both runs; with rekeying, iked's child rekey_time is %v (rand_time 0): the whole rekey, CREATE_CHILD_SA exchange included.", ik.Rate/1e3, ik.Interval)
		if ik.Error != "" {
			m.p("")
			m.p("**Error:** %s", ik.Error)
		}
		rows = nil
		for _, r := range ik.Runs {
			name := "no rekeying"
			if r.Rekeying {
				name = fmt.Sprintf("iked rekeying (%d new Child SAs on gw-a during the run)", r.Rekeys)
			}
			if r.Result == nil {
				rows = append(rows, []string{name, "error: " + r.Error, "", "", ""})
				continue
			}
			x := r.Result
			rows = append(rows, []string{name, fmt.Sprintf("%.3f", x.PPS/1e6), fmt.Sprint(x.Lost), pct(x.LossRatio), us(x.Latency.P99)})
		}
		m.table([]string{"run", "Mpps", "lost", "loss", "p99 µs"}, rows)
	}
}

func (m *md) profile(p *scenario.Profile) {
	m.p("")
	m.p("## Where the CPU went")
	m.p("")
	m.p("System-wide perf profile (cpu-clock sampling at 999 Hz, %d samples) of `%s`, spud paced at the rate it peaked at. All commands, both CPUs (swapper is idle time; commands that are not the lab's are other work on the machine):", p.Samples, p.Run)
	if p.Result != nil {
		m.p("")
		m.p("That run: %s Mpps received of %s offered, loss %s, p99 latency %s µs.", fmt.Sprintf("%.3f", p.Result.PPS/1e6), fmt.Sprintf("%.3f", p.Result.OfferedPPS/1e6), pct(p.Result.LossRatio), us(p.Result.Latency.P99))
	}
	var rows [][]string
	for i, s := range p.ByCommand {
		if i >= 12 {
			break
		}
		rows = append(rows, []string{s.Name, fmt.Sprintf("%.1f%%", s.Percent)})
	}
	m.table([]string{"command", "share of samples"}, rows)
	m.p("Inside spud (both gateways, %d samples), %.0f%% of its samples are in the kernel. Top functions:", p.SpudSamples, p.SpudKernel)
	rows = nil
	for i, s := range p.Spud {
		if i >= 20 {
			break
		}
		rows = append(rows, []string{"`" + s.Name + "`", fmt.Sprintf("%.1f%%", s.Percent)})
	}
	m.table([]string{"function", "share of spud"}, rows)
}

// drops sums spud's drop reasons over every run of the report.
func (m *md) drops(r *Results) {
	tot := map[string]uint64{}
	add := func(d map[string]map[string]uint64) {
		for _, byReason := range d {
			for k, v := range byReason {
				tot[k] += v
			}
		}
	}
	if r.Throughput != nil {
		for _, x := range r.Throughput.Runs {
			add(x.SpudDrops)
		}
	}
	if r.Scaling != nil {
		for _, x := range r.Scaling.Runs {
			add(x.SpudDrops)
		}
	}
	if r.Tunnels != nil {
		for _, x := range r.Tunnels.Runs {
			add(x.SpudDrops)
		}
	}
	if len(tot) == 0 {
		return
	}
	var keys []string
	for k := range tot {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return tot[keys[i]] > tot[keys[j]] })
	m.p("")
	m.p("## spud's drops")
	m.p("")
	m.p("spud's own drop counters summed over every spud measurement above (both gateways, searches included):")
	var rows [][]string
	for _, k := range keys {
		rows = append(rows, []string{k, fmt.Sprint(tot[k])})
	}
	m.table([]string{"reason", "packets"}, rows)
}

// searches lists each search's runs and final bracket.
func (m *md) searches(runs []scenario.ThroughputRun) {
	var rows [][]string
	for _, r := range runs {
		f := r.Found
		if f == nil || f.Trials == 0 {
			// No search, or results from before searches counted their
			// runs.
			continue
		}
		mpps := func(x float64) string {
			if x == 0 {
				return "–"
			}
			return fmt.Sprintf("%.3f", x/1e6)
		}
		rows = append(rows, []string{strings.TrimSpace(r.System + " " + r.Suite), r.Mix, fmt.Sprint(f.Trials),
			mpps(f.Low), mpps(f.High), orText(f.Stop, "–"), within(f)})
	}
	if len(rows) == 0 {
		return
	}
	m.p("")
	m.p("### Searches")
	m.p("")
	m.p("Runs each search made (the flat-out one included) and its final bracket in offered Mpps: the highest rate that passed and the lowest that failed above it; stop: resolution (the bracket closed), steps (out of steps), floor (nothing passed down to %d packets/s), generator (a paced run carried all the generator could offer), flat out (the flat-out run passed: the generator was the limit).", scenario.MinSearchRate)
	m.table([]string{"system", "size", "runs", "passed Mpps", "failed Mpps", "stop", "within tolerance Mpps"}, rows)
}

func (m *md) tcp(t *scenario.TCPResults) {
	m.p("")
	m.p("## TCP through one tunnel (iperf3)")
	m.p("")
	m.p("iperf3 from client-b to client-a through the throughput scenario's lab (same link settings), %v a run; Gbit/s received over all streams, the sender's retransmissions.", t.Duration)
	var rows [][]string
	for _, r := range t.Runs {
		g, rt := fmt.Sprintf("%.2f", r.Gbps), fmt.Sprint(r.Retransmits)
		if r.Error != "" {
			g, rt = "error: "+r.Error, ""
		}
		rows = append(rows, []string{strings.TrimSpace(r.System + " " + r.Suite), fmt.Sprint(r.Streams), g, rt})
	}
	m.table([]string{"system", "streams", "Gbit/s", "retransmits"}, rows)
}
