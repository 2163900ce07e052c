// Package spudmetrics exports spud's counters to Prometheus (spud -metrics).
//
// Everything is read at scrape time from the counters spud keeps anyway,
// the ones `spuctl stats` and `spuctl status` show: the SPUs' atomics, the
// steering program's per-CPU map, the AF_XDP sockets' and the kernel's
// statistics. Nothing is added to the per-packet path; a scrape costs what
// `spuctl stats` plus `spuctl status` cost, and with per-tunnel series a
// paged read of the first -metrics-per-tunnel SAs.
//
// Cardinality is bounded by what the gateway is, not by its traffic: per
// SPU, per AF_XDP socket, per drop reason and steering verdict (all known
// ones, zero included, so that rate() sees the first increment). Per-SA
// series only with -metrics-per-tunnel, at most that many SAs.
package spudmetrics

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/spud"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/promserve"
)

// Source is what the collector reads: spud's in-process counters.
type Source interface {
	// Stats is `spuctl stats`: per SPU, drops, steering, sockets.
	Stats() api.Stats
	// SPUList is `spuctl status`: each SPU's state and what it holds.
	SPUList() api.SPUList
	// SAPage is a page of the installed SAs after cursor after, in
	// install order (spu.Engine.SAPage), for per-tunnel series.
	SAPage(after uint64, limit int) spu.Page[api.SAState]
}

// daemonSource reads a running spud.
type daemonSource struct{ d *spud.Daemon }

func (s daemonSource) Stats() api.Stats     { return s.d.Stats() }
func (s daemonSource) SPUList() api.SPUList { return s.d.SPUList() }
func (s daemonSource) SAPage(after uint64, limit int) spu.Page[api.SAState] {
	return s.d.Engine().SAPage(after, limit)
}

// FromDaemon is the Source of a running spud.
func FromDaemon(d *spud.Daemon) Source { return daemonSource{d} }

// Serve serves d's metrics on ln (promserve.Listen's) until Close, with
// per-tunnel series for at most perTunnel SAs.
func Serve(ln net.Listener, d *spud.Daemon, perTunnel int, log *slog.Logger) *promserve.Server {
	return promserve.Serve(ln, promserve.Registry("spud", New(FromDaemon(d), perTunnel)), "spud", log)
}

const ns = "spugate_spud_"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+name, help, labels, nil)
}

// spuCounter is one of SPUStats' counters as a per-SPU series.
type spuCounter struct {
	d   *prometheus.Desc
	get func(*api.SPUStats) uint64
}

var spuCounters = []spuCounter{
	{desc("spu_rx_packets_total", "Frames an SPU received from its AF_XDP sockets.", "spu"), func(s *api.SPUStats) uint64 { return s.RxPackets }},
	{desc("spu_tx_packets_total", "Frames an SPU sent.", "spu"), func(s *api.SPUStats) uint64 { return s.TxPackets }},
	{desc("spu_encap_packets_total", "Packets an SPU encapsulated in ESP.", "spu"), func(s *api.SPUStats) uint64 { return s.Encap }},
	{desc("spu_decap_packets_total", "ESP packets an SPU decapsulated.", "spu"), func(s *api.SPUStats) uint64 { return s.Decap }},
	{desc("spu_handoff_out_packets_total", "Frames an SPU passed to their anchor SPU through its ring.", "spu"), func(s *api.SPUStats) uint64 { return s.HandoffOut }},
	{desc("spu_handoff_in_packets_total", "Frames an SPU received from other SPUs' handoffs.", "spu"), func(s *api.SPUStats) uint64 { return s.HandoffIn }},
	{desc("spu_frag_handoff_packets_total", "ESP packets an SPU reassembled from fragments and passed to their SPI's anchor (counted in handoff_out too).", "spu"), func(s *api.SPUStats) uint64 { return s.FragHandoff }},
	{desc("spu_bypass_packets_total", "Cleartext an SPU forwarded in the clear (a bypass policy, or none matched).", "spu"), func(s *api.SPUStats) uint64 { return s.Bypass }},
	{desc("spu_cipher_warmed_total", "Times an SA of the SPU made its cipher state (its first packet, or the first after -cipher-idle).", "spu"), func(s *api.SPUStats) uint64 { return s.Warmed }},
	{desc("spu_cipher_cooled_total", "Times an SA of the SPU idle for -cipher-idle dropped its cipher state.", "spu"), func(s *api.SPUStats) uint64 { return s.Cooled }},
}

var (
	spuDrops   = desc("spu_drops_total", "Packets an SPU dropped, all causes (spugate_spud_drops_total has them by reason).", "spu")
	spuBusy    = desc("spu_busy_ratio", "Share of an SPU's recent time spent on packets (0 to 1).", "spu")
	spuWarm    = desc("spu_warm_sas", "SAs of an SPU holding their cipher state now.", "spu")
	spuSAs     = desc("spu_sas", "SAs (inbound and outbound) an SPU holds.", "spu")
	spuPols    = desc("spu_policies", "Policies an SPU holds.", "spu")
	spuTunnels = desc("spu_tunnels", "Protecting policies (tunnels) an SPU holds.", "spu")
	spuInfo    = desc("spu_info", "An SPU's CPU and state (active, draining, drained, failed), always 1.", "spu", "cpu", "state")
	logicalSPU = desc("logical_spus", "Logical SPUs mapped on the physical ones (-logical).")
	mapGen     = desc("spu_map_changes_total", "Changes of the logical-to-physical SPU map since start (drains, adds, failures).")
	drops      = desc("drops_total", "Packets the SPUs dropped outside an SA, by reason (reason sa: an SA dropped it, see spugate_spud_sa_drops_total).", "reason")
	saDrops    = desc("sa_drops_total", "Packets the SAs dropped, by ESP reason (replay, integrity, lifetime...), of SAs gone too.", "reason")
	xdp        = desc("xdp_packets_total", "The XDP steering program's verdicts: redirect_* to an AF_XDP socket, pass_* to the kernel, by verdict and reason.", "verdict")
	sockRx     = desc("socket_rx_frames_total", "Frames an AF_XDP socket received.", "interface", "queue")
	sockTx     = desc("socket_tx_frames_total", "Frames an AF_XDP socket sent.", "interface", "queue")
	sockDrop   = desc("socket_rx_dropped_frames_total", "Frames the kernel dropped for an AF_XDP socket (its rx ring full among them).", "interface", "queue")
	sockFill   = desc("socket_fill_ring_empty_total", "Times an AF_XDP socket's fill ring was found empty.", "interface", "queue")
	sockTxFull = desc("socket_tx_ring_full_total", "Times an AF_XDP socket's tx ring was full.", "interface", "queue")
	link       = desc("link_errors_total", "The kernel's drop and error counters of the data-plane interfaces (before or after spud), by kind.", "interface", "kind")
	refused    = desc("refused_total", "SA API requests refused for a full table, by table (policy_table_full: -max-policies).", "table")
	carrier    = desc("steering_carrier_info", "How the steering program hands each frame's anchor to the SPUs (-steer-carrier), always 1.", "carrier")
	tunPackets = desc("tunnel_sa_packets_total", "Packets an SA passed (-metrics-per-tunnel).", "name", "dir", "spi", "remote")
	tunBytes   = desc("tunnel_sa_bytes_total", "Bytes an SA passed (-metrics-per-tunnel).", "name", "dir", "spi", "remote")
	tunOmitted = desc("tunnel_sas_omitted", "SAs left out of the per-tunnel series by the -metrics-per-tunnel cap.")
)

// Names of every drop cause and ESP reason and steering verdict, so that
// each series exists from the first scrape.
var dropNames, saDropNames, xdpNames = func() (d, s, x []string) {
	for r := spu.Drop(0); r < spu.NumDrops; r++ {
		d = append(d, r.String())
	}
	for r := esp.None + 1; r < esp.NumReasons; r++ {
		s = append(s, r.String())
	}
	for c := steer.Counter(0); c < steer.NumCounters; c++ {
		x = append(x, c.String())
	}
	return d, s, x
}()

// Collector is spud's prometheus.Collector.
type Collector struct {
	src       Source
	perTunnel int
}

// New returns a collector of src, with per-SA series for at most
// perTunnel SAs (0: none).
func New(src Source, perTunnel int) *Collector { return &Collector{src: src, perTunnel: perTunnel} }

// Describe sends every series' description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, sc := range spuCounters {
		ch <- sc.d
	}
	for _, d := range []*prometheus.Desc{spuDrops, spuBusy, spuWarm, spuSAs, spuPols, spuTunnels, spuInfo, logicalSPU, mapGen,
		drops, saDrops, xdp, sockRx, sockTx, sockDrop, sockFill, sockTxFull, link, refused, carrier} {
		ch <- d
	}
	if c.perTunnel > 0 {
		ch <- tunPackets
		ch <- tunBytes
		ch <- tunOmitted
	}
}

// Collect reads the counters.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.src.Stats()
	for i := range st.SPUs {
		s := &st.SPUs[i]
		id := strconv.Itoa(s.ID)
		for _, sc := range spuCounters {
			counter(sc.d, sc.get(s), id)
		}
		var dropped uint64
		for k, v := range s.Drops {
			if !strings.HasPrefix(k, "sa_") {
				dropped += v
			}
		}
		counter(spuDrops, dropped, id)
		gauge(spuBusy, s.Busy, id)
		gauge(spuWarm, float64(s.WarmSAs), id)
	}
	spuDropsByReason := map[string]uint64{}
	saDropsByReason := map[string]uint64{}
	for k, v := range st.Drops {
		if r, ok := strings.CutPrefix(k, "sa_"); ok {
			saDropsByReason[r] = v
		} else {
			spuDropsByReason[k] = v
		}
	}
	byName(ch, drops, dropNames, spuDropsByReason)
	byName(ch, saDrops, saDropNames, saDropsByReason)
	byName(ch, xdp, xdpNames, st.XDP)
	for _, s := range st.Sockets {
		q := strconv.Itoa(s.Queue)
		counter(sockRx, s.Rx, s.Interface, q)
		counter(sockTx, s.Tx, s.Interface, q)
		counter(sockDrop, s.RxDropped, s.Interface, q)
		counter(sockFill, s.FillEmpty, s.Interface, q)
		counter(sockTxFull, s.TxFull, s.Interface, q)
	}
	for k, v := range st.Links {
		if ifc, kind, ok := strings.Cut(k, " "); ok {
			counter(link, v, ifc, kind)
		}
	}
	counter(refused, st.Refused["policy_table_full"], "policy_table_full")
	for k, v := range st.Refused {
		if k != "policy_table_full" {
			counter(refused, v, k)
		}
	}
	if st.Carrier != "" {
		gauge(carrier, 1, st.Carrier)
	}
	l := c.src.SPUList()
	for _, s := range l.SPUs {
		id := strconv.Itoa(s.ID)
		gauge(spuSAs, float64(s.SAs), id)
		gauge(spuPols, float64(s.Policies), id)
		gauge(spuTunnels, float64(s.Tunnels), id)
		gauge(spuInfo, 1, id, strconv.Itoa(s.CPU), s.State)
	}
	gauge(logicalSPU, float64(l.Logical))
	counter(mapGen, l.MapGen)
	if c.perTunnel > 0 {
		total := 0
		for _, s := range l.SPUs {
			total += s.SAs
		}
		c.collectTunnels(ch, total)
	}
}

// pageSize is how many SAs a page of the per-tunnel read takes from the
// SPUs at once.
const pageSize = 1000

// byName sends a counter for each of the names known (zero included) and
// for any other in m: a reason of a newer build still shows.
func byName(ch chan<- prometheus.Metric, d *prometheus.Desc, known []string, m map[string]uint64) {
	for _, k := range known {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(m[k]), k)
	}
	for k, v := range m {
		if !slices.Contains(known, k) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), k)
		}
	}
}

// collectTunnels sends the per-SA series of the first perTunnel SAs in
// install order (the oldest: stable from one scrape to the next while
// they live) and how many of the total SAs were left out. It reads no
// further than the cap: a scrape of a million SAs reads perTunnel.
func (c *Collector) collectTunnels(ch chan<- prometheus.Metric, total int) {
	shown := 0
	var after uint64
	for shown < c.perTunnel {
		pg := c.src.SAPage(after, min(pageSize, c.perTunnel-shown))
		for _, s := range pg.Entries {
			shown++
			spi := fmt.Sprintf("0x%08x", s.SPI)
			remote := ""
			if s.Dir == api.Out {
				remote = s.Remote.String()
			}
			ch <- prometheus.MustNewConstMetric(tunPackets, prometheus.CounterValue, float64(s.Stats.Packets), s.Name, string(s.Dir), spi, remote)
			ch <- prometheus.MustNewConstMetric(tunBytes, prometheus.CounterValue, float64(s.Stats.Bytes), s.Name, string(s.Dir), spi, remote)
		}
		if !pg.More || pg.Next == after {
			break
		}
		after = pg.Next
	}
	ch <- prometheus.MustNewConstMetric(tunOmitted, prometheus.GaugeValue, float64(max(0, total-shown)))
}
