// Package ikedmetrics exports iked's counters to Prometheus (iked -metrics).
//
// Everything is read at scrape time: the event counters iked keeps anyway
// (stats.Counters, what `spuctl ike-stats` shows), and a census of the IKE
// and Child SAs by state taken on the workers between datagrams
// (iked.Census). Nothing is counted for the metrics' sake on any
// per-datagram path.
//
// Each event counter of `spuctl ike-stats` is the series
// spugate_iked_<its name>_total; failures are spugate_iked_failures_total
// by reason, every reason present from the first scrape. Per-connection
// series only with -metrics-per-tunnel, for at most that many connections.
package ikedmetrics

import (
	"log/slog"
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/control/reuseport"
	"github.com/spugate/spugate/internal/promserve"
)

// Source is what the collector reads: iked's counters and census.
type Source interface {
	// Stats is the daemon's event counters.
	Stats() *stats.Counters
	// Census counts the SAs and workers now, per connection for at most
	// perConn connections.
	Census(perConn int) (*iked.Census, error)
}

// Serve serves d's metrics on ln (promserve.Listen's) until Close, with
// per-connection series for at most perTunnel connections.
func Serve(ln net.Listener, d *iked.Daemon, perTunnel int, log *slog.Logger) *promserve.Server {
	return promserve.Serve(ln, promserve.Registry("iked", New(d, perTunnel)), "iked", log)
}

const ns = "spugate_iked_"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+name, help, labels, nil)
}

// counterHelp is the HELP of each event counter's series; a counter
// without one fails the package's test.
var counterHelp = map[stats.Counter]string{
	stats.ExchangesInitiated:   "Requests iked sent (first transmissions).",
	stats.ExchangesAnswered:    "Requests of peers iked answered (not from the cache).",
	stats.Retransmissions:      "Requests iked sent again for want of a response.",
	stats.CachedResponses:      "Retransmitted requests of peers answered from the cache.",
	stats.IKESAsEstablished:    "IKE SAs established (setups).",
	stats.IKESAsDeleted:        "IKE SAs deleted.",
	stats.ChildSAsInstalled:    "Child SAs installed in spud (setups and rekeys).",
	stats.ChildSAsDeleted:      "Child SAs deleted.",
	stats.Handoffs:             "Datagrams a worker passed to the worker of their anchor.",
	stats.Keepalives:           "NAT keepalives sent.",
	stats.DPDChecks:            "Dead peer detection (liveness) checks sent.",
	stats.CookiesSent:          "COOKIE notifies sent (IKE_SA_INIT under load).",
	stats.InitialContacts:      "IKE SAs removed on an INITIAL_CONTACT.",
	stats.Acquires:             "Data-plane acquires that started a negotiation.",
	stats.LateResponses:        "Responses to retransmissions of requests already answered.",
	stats.ChildSAsRekeyed:      "Old Child SAs retired after a rekey, either side's.",
	stats.IKESAsRekeyed:        "Old IKE SAs retired after a rekey, either side's.",
	stats.IKESAsReauthed:       "IKE SAs replaced by a reauthentication iked started.",
	stats.ChildRekeyCollisions: "Simultaneous rekeys of one Child SA by both sides (RFC 7296 2.8.1).",
	stats.IKERekeyCollisions:   "Simultaneous rekeys of one IKE SA by both sides (RFC 7296 2.8.2).",
	stats.TemporaryFailures:    "TEMPORARY_FAILURE notifies sent (a rekey or creation crossing another exchange).",
	stats.RekeyRetries:         "Rekeys scheduled again after a TEMPORARY_FAILURE or another failure.",
	stats.ChildSAsExpired:      "Child SAs deleted at their hard lifetime (time, bytes, packets).",
	stats.IKESAsExpired:        "IKE SAs deleted because neither rekey nor reauthentication succeeded in time.",
	stats.PeerAddressChanges:   "Peer address or port changes behind a NAT (RFC 7296 2.23).",
	stats.InboundDrained:       "Inbound SAs of replaced Child SAs removed after the drain period.",
	stats.ChildRekeysInitiated: "Rekeys of Child SAs iked started whose new SA replaced the old one.",
	stats.IKERekeysInitiated:   "Rekeys of IKE SAs iked started whose new SA replaced the old one.",
	stats.FragmentedMessages:   "IKE messages sent as fragments (RFC 7383).",
	stats.FragmentsSent:        "IKE fragments sent (first transmissions).",
	stats.FragmentsReceived:    "IKE fragments received that authenticated.",
	stats.Reassembled:          "IKE messages reassembled from fragments.",
	stats.LogsSuppressed:       "Log lines about unauthenticated datagrams left out by the rate limit.",
	stats.PanicsRecovered:      "Panics a worker recovered from (each ended the IKE SA at hand).",
	stats.StateWriteErrors:     "IKE SA states that could not be written to the state folder.",
	stats.StatesLost:           "IKE SA states a restart could not restore.",
	stats.SendsDropped:         "Datagrams not sent because the socket's buffer was full.",
	stats.InstallsAsync:        "Child SA installs a worker did not wait for (asynchronous SA API).",
	stats.InstallRetransmits:   "Retransmitted requests dropped while their Child SA's install was in flight.",
	stats.ResponsesDeferred:    "Responses held back while a peer's request waited for its Child SA's install.",
}

var counterDescs = func() (d [stats.NumCounters]*prometheus.Desc) {
	for c := range stats.NumCounters {
		d[c] = desc(c.String()+"_total", counterHelp[c])
	}
	return d
}()

var (
	failures    = desc("failures_total", "IKE and Child SA failures and dropped datagrams, by reason (authentication failures: authentication_failed, peer_id_mismatch, no_psk, cert_*, bad_signature, scheme_not_allowed, unsupported_scheme, no_credential).", "reason")
	halfOpen    = desc("half_open_ike_sas", "Half-open responder IKE SAs now (the COOKIE threshold compares with it).")
	ikeSAs      = desc("ike_sas", "IKE SAs by state.", "state")
	childSAs    = desc("child_sas", "Child SAs by state.", "state")
	queueFull   = desc("queue_full_drops_total", "Datagrams dropped because their worker's queue was full.")
	migrations  = desc("migrations_total", "IKE SAs moved between workers after SPU map changes.")
	wIKESAs     = desc("worker_ike_sas", "IKE SAs a worker holds.", "worker", "spu")
	wDatagrams  = desc("worker_datagrams_total", "Datagrams that arrived on a worker's sockets.", "worker", "spu")
	wHandedIn   = desc("worker_handed_in_total", "Datagrams other workers handed to a worker.", "worker", "spu")
	wSpudWait   = desc("spud_wait_seconds_total", "Time a worker spent blocked on SA API calls to spud (over spugate_iked_spud_calls_total: their mean latency).", "worker", "spu")
	wSpudCalls  = desc("spud_calls_total", "SA API calls to spud a worker waited for.", "worker", "spu")
	wInFlight   = desc("spud_calls_in_flight", "SA API calls a worker made without waiting (Child SA installs, removals) that spud has not answered yet.", "worker", "spu")
	reuse       = desc("reuseport_datagrams_total", "The SO_REUSEPORT selector's choices of a worker for IKE datagrams, by outcome.", "outcome")
	connIKE     = desc("conn_ike_sas", "Established IKE SAs of a connection (-metrics-per-tunnel).", "conn")
	connChild   = desc("conn_child_sas", "Installed Child SAs of a connection (-metrics-per-tunnel).", "conn")
	connOmitted = desc("conns_omitted", "Connections left out of the per-connection series by the -metrics-per-tunnel cap.")
)

// Collector is iked's prometheus.Collector.
type Collector struct {
	src       Source
	perTunnel int
	errs      prometheus.Counter
}

// New returns a collector of src, with per-connection series for at most
// perTunnel connections (0: none).
func New(src Source, perTunnel int) *Collector {
	return &Collector{src: src, perTunnel: perTunnel, errs: prometheus.NewCounter(prometheus.CounterOpts{
		Name: ns + "census_errors_total", Help: "Scrapes whose census of the workers failed (a worker did not answer); its series are missing from those scrapes."})}
}

// Describe sends every series' description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range counterDescs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{failures, halfOpen, ikeSAs, childSAs, queueFull, migrations, wIKESAs, wDatagrams,
		wHandedIn, wSpudWait, wSpudCalls, wInFlight, reuse} {
		ch <- d
	}
	c.errs.Describe(ch)
	if c.perTunnel > 0 {
		ch <- connIKE
		ch <- connChild
		ch <- connOmitted
	}
}

// Collect reads the counters and takes a census.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.src.Stats()
	for k := range stats.NumCounters {
		counter(counterDescs[k], float64(st.Get(k)))
	}
	for r := range stats.NumReasons {
		counter(failures, float64(st.Failures(r)), r.String())
	}
	gauge(halfOpen, float64(st.HalfOpen.Load()))
	defer c.errs.Collect(ch)
	cs, err := c.src.Census(c.perTunnel)
	if err != nil {
		c.errs.Inc()
		return
	}
	for s, n := range cs.IKESAs {
		gauge(ikeSAs, float64(n), sa.IKEState(s).String())
	}
	for s, n := range cs.ChildSAs {
		gauge(childSAs, float64(n), sa.ChildState(s).String())
	}
	counter(queueFull, float64(cs.QueueFullDrops))
	counter(migrations, float64(cs.Migrations))
	for _, w := range cs.Workers {
		id, spu := strconv.Itoa(w.ID), strconv.Itoa(w.SPU)
		gauge(wIKESAs, float64(w.IKESAs), id, spu)
		counter(wDatagrams, float64(w.Datagrams), id, spu)
		counter(wHandedIn, float64(w.HandedIn), id, spu)
		counter(wSpudWait, w.SpudWait.Seconds(), id, spu)
		counter(wSpudCalls, float64(w.SpudCalls), id, spu)
		gauge(wInFlight, float64(w.InstallsInFlight), id, spu)
	}
	if cs.Reuseport != nil {
		for i, v := range cs.Reuseport {
			counter(reuse, float64(v), reuseport.Counter(i).String())
		}
	}
	if c.perTunnel > 0 {
		for _, cc := range cs.Conns {
			gauge(connIKE, float64(cc.IKESAs), cc.Name)
			gauge(connChild, float64(cc.ChildSAs), cc.Name)
		}
		gauge(connOmitted, float64(cs.ConnsOmitted))
	}
}
