package scenario

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
	"github.com/spugate/spugate/testbed/lab"
)

// SinkPort is the UDP port the benchmark's packets go to.
const SinkPort = 9000

// Links is the link setting of every lab of a run, recorded with the
// results: two queues per veth end (one per SPU on this machine kind) and
// threaded NAPI, which lets the second core share a veth chain's work (see
// docs/architecture.md). Every system of a comparison runs on these links.
var Links = lab.LinkOptions{Queues: 2, Threaded: true}

// Bed is a lab line ready for measurements: the generator on client-b
// (eth0, sending to gw-b's lan0 MAC address), the sink on client-a.
type Bed struct {
	Lab   *lab.Lab
	Line  *lab.Line // nil for a direct bed
	Plan  lab.Plan  // the line's addresses (a direct bed uses the clients')
	Clock *traffic.Clock
	env   *Env

	gen, sink       *lab.Host
	genMAC, nextHop net.HardwareAddr
}

// NewBed builds a line with the run's link settings.
func (e *Env) NewBed() (*Bed, error) {
	ln, err := lab.NewLine(lab.Options{Logf: e.Debugf, NoSignalHandler: e.NoSignalHandler}, lab.LineOptions{Links: e.Links, GatewayLinks: e.Links})
	if err != nil {
		return nil, err
	}
	b := &Bed{Lab: ln.Lab, Line: ln, Plan: ln.Plan, Clock: traffic.NewClock(), env: e, gen: ln.ClientB, sink: ln.ClientA}
	fail := func(err error) (*Bed, error) {
		ln.MarkFailed()
		e.Logf("lab report:\n%s", ln.Report())
		ln.Close()
		return nil, err
	}
	if err := system.PrepareLine(ln); err != nil {
		return fail(err)
	}
	if b.genMAC, err = system.MAC(ln.ClientB, "eth0"); err != nil {
		return fail(err)
	}
	if b.nextHop, err = system.MAC(ln.GwB, "lan0"); err != nil {
		return fail(err)
	}
	return b, nil
}

// NewDirectBed links the generator's host straight to the sink's, with the
// run's link settings and no gateway in between: what the traffic tools
// can do on their own.
func (e *Env) NewDirectBed() (*Bed, error) {
	l, err := lab.New(lab.Options{Logf: e.Debugf, NoSignalHandler: e.NoSignalHandler})
	if err != nil {
		return nil, err
	}
	b := &Bed{Lab: l, Plan: lab.DefaultPlan(), Clock: traffic.NewClock(), env: e}
	fail := func(err error) (*Bed, error) {
		l.MarkFailed()
		e.Logf("lab report:\n%s", l.Report())
		l.Close()
		return nil, err
	}
	if b.gen, err = l.AddHost("client-b", false); err != nil {
		return fail(err)
	}
	if b.sink, err = l.AddHost("client-a", false); err != nil {
		return fail(err)
	}
	if err := l.Link(b.gen, "eth0", b.sink, "eth0", e.Links); err != nil {
		return fail(err)
	}
	if err := b.gen.AddAddr("eth0", netip.PrefixFrom(b.Plan.ClientB4, 16)); err != nil {
		return fail(err)
	}
	if err := b.sink.AddAddr("eth0", netip.PrefixFrom(b.Plan.ClientA4, 16)); err != nil {
		return fail(err)
	}
	if b.genMAC, err = system.MAC(b.gen, "eth0"); err != nil {
		return fail(err)
	}
	if b.nextHop, err = system.MAC(b.sink, "eth0"); err != nil {
		return fail(err)
	}
	return b, nil
}

// Close removes the lab.
func (b *Bed) Close() error { return b.Lab.Close() }

// Spec is one measurement.
type Spec struct {
	Label  string // for the progress line
	Mix    traffic.Mix
	Flows  int     // at least the plan's tunnels and the queues
	Rate   float64 // 0: as fast as possible
	Timing traffic.Timing
	// Profile, when set, is a file to write a system-wide CPU profile of
	// the window to (perf record -a -g).
	Profile string
	// During, when set, runs in its own goroutine from the start of the
	// window until the window's end closes done.
	During func(done <-chan struct{})
	// NoProbe skips the probe: the previous measurement on the same
	// system and plan already showed every flow through.
	NoProbe bool
}

// Measurement is a traffic result with what the lab's links dropped
// during it.
type Measurement struct {
	traffic.Result
	// LinkDrops are the kernel's rx and tx drop counters of the lab's
	// interfaces that moved during the run ("host/ifname rx" or "... tx"):
	// where packets were lost outside the systems' own counters.
	LinkDrops map[string]uint64 `json:"link_drops,omitempty"`
}

// ProbeTimeout bounds the wait for every tunnel to carry traffic.
var ProbeTimeout = 15 * time.Second

// Measure sends spec's traffic over p's tunnels, once every flow has
// reached the sink (a probe at a low rate), and returns what the sink saw.
func (b *Bed) Measure(p system.Plan, spec Spec) (Measurement, error) {
	flows := p.Flows(max(spec.Flows, p.Tunnels, b.env.Links.Queues), SinkPort)
	queues := max(b.env.Links.Queues, 1)
	var rx, tx *traffic.Sockets
	if err := b.sink.Do(func() (err error) {
		rx, err = traffic.OpenRx("eth0", queues, SinkPort, traffic.DefaultXSK)
		return err
	}); err != nil {
		return Measurement{}, err
	}
	defer rx.Close()
	if err := b.gen.Do(func() (err error) {
		tx, err = traffic.OpenTx("eth0", queues, traffic.DefaultXSK)
		return err
	}); err != nil {
		return Measurement{}, err
	}
	defer tx.Close()
	pair := func(mix traffic.Mix, rate float64) (*traffic.Generator, *traffic.Sink, error) {
		g, err := traffic.NewGenerator(tx.Ports, traffic.GenConfig{SrcMAC: b.genMAC, DstMAC: b.nextHop, Flows: flows, Mix: mix, Rate: rate, Clock: b.Clock})
		if err != nil {
			return nil, nil, err
		}
		s, err := traffic.NewSink(rx.Ports, traffic.SinkConfig{Port: SinkPort, Flows: len(flows), Clock: b.Clock})
		return g, s, err
	}
	if !spec.NoProbe {
		if err := b.probe(pair, len(flows), spec.Label); err != nil {
			return Measurement{}, err
		}
	}
	g, s, err := pair(spec.Mix, spec.Rate)
	if err != nil {
		return Measurement{}, err
	}
	drops0 := b.linkDrops()
	stopExtra := b.during(spec)
	res, err := traffic.Measure(b.Clock, g, s, spec.Timing, func(l traffic.Live) { b.env.live(spec.Label, l) })
	if perr := stopExtra(); perr != nil && err == nil {
		b.env.Logf("%s: %v", spec.Label, perr)
	}
	m := Measurement{Result: res}
	for k, v := range b.linkDrops() {
		if d := v - drops0[k]; d > 0 {
			if m.LinkDrops == nil {
				m.LinkDrops = map[string]uint64{}
			}
			m.LinkDrops[k] = d
		}
	}
	return m, err
}

// linkDrops reads the rx and tx drop counters of every interface of the
// bed's hosts.
func (b *Bed) linkDrops() map[string]uint64 {
	out := map[string]uint64{}
	for _, h := range b.Lab.Hosts() {
		o, err := h.Exec("sh", "-c", `for d in /sys/class/net/*; do echo "${d##*/} $(cat $d/statistics/rx_dropped) $(cat $d/statistics/tx_dropped)"; done`)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(o), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] == "lo" {
				continue
			}
			rx, _ := strconv.ParseUint(f[1], 10, 64)
			tx, _ := strconv.ParseUint(f[2], 10, 64)
			out[h.Name+"/"+f[0]+" rx"] = rx
			out[h.Name+"/"+f[0]+" tx"] = tx
		}
	}
	return out
}

// probe sends 64-byte packets at a low rate until every flow has reached
// the sink at least once, over one or more attempts: tunnels are up,
// neighbours resolved, handshakes done.
func (b *Bed) probe(pair func(traffic.Mix, float64) (*traffic.Generator, *traffic.Sink, error), nflows int, label string) error {
	deadline := time.Now().Add(ProbeTimeout)
	rate := 20000.0
	dur := max(300*time.Millisecond, time.Duration(float64(nflows)/rate*1.5*float64(time.Second)))
	seen := make([]bool, nflows)
	for try := 0; ; try++ {
		g, s, err := pair(traffic.Fixed(64), rate)
		if err != nil {
			return err
		}
		if _, err := traffic.Measure(b.Clock, g, s, traffic.Timing{Duration: dur}, nil); err != nil {
			return err
		}
		s.MarkSeen(seen)
		n := 0
		for _, v := range seen {
			if v {
				n++
			}
		}
		if n == nflows {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: after %v only %d of %d flows reached the sink", label, ProbeTimeout, n, nflows)
		}
		b.env.Debugf("%s: probe %d: %d of %d flows through", label, try, n, nflows)
	}
}

// during starts what spec wants running over the window and returns a
// function that waits for it to end.
func (b *Bed) during(spec Spec) func() error {
	var waits []func()
	window := spec.Timing.Duration
	if _, err := exec.LookPath("perf"); spec.Profile != "" && err != nil {
		b.env.Logf("%s: no profile: perf is not installed (Debian: linux-perf)", spec.Label)
		spec.Profile = ""
	}
	if spec.Profile != "" {
		fin := make(chan struct{})
		timer := time.AfterFunc(spec.Timing.Warmup, func() {
			defer close(fin)
			out, err := exec.Command("perf", "record", "-a", "-g", "-F", "999", "-o", spec.Profile, "--", "sleep",
				strconv.FormatFloat(window.Seconds(), 'f', 2, 64)).CombinedOutput()
			if err != nil {
				b.env.Logf("perf record: %v: %s", err, out)
			}
		})
		waits = append(waits, func() {
			if !timer.Stop() {
				<-fin
			}
		})
	}
	if spec.During != nil {
		done := make(chan struct{})
		fin := make(chan struct{})
		timer := time.AfterFunc(spec.Timing.Warmup, func() {
			defer close(fin)
			spec.During(done)
		})
		end := time.AfterFunc(spec.Timing.Warmup+window, func() { close(done) })
		waits = append(waits, func() {
			if timer.Stop() {
				end.Stop()
				return
			}
			<-fin
		})
	}
	return func() error {
		for _, w := range waits {
			w()
		}
		return nil
	}
}
