package scenario

import (
	"fmt"
	"time"

	"github.com/spugate/spugate/bench/system"
)

// IKE is scenario 4: how fast a responder sets up IKE SAs (each with its
// Child SA) for one initiator, with PSK and with ECDSA certificates: IKE
// SAs per second, the time to reach the count, and the responder's memory
// per tunnel.
type IKE struct {
	// Count is the IKE SAs charon initiates per responder and method;
	// CountIkedInitiator those iked initiates (iked's load-initiator mode,
	// a smaller default so that the standard set stays within its time).
	Count              int
	CountIkedInitiator int
	Auths              []string
	// Responders to measure: "iked" (with spud, ike_anchor tunnel),
	// "iked:ike-sa" (ike_anchor ike-sa: one peer's IKE SAs spread over
	// every worker), "charon" (its userspace ESP, kernel-libipsec) and
	// "charon:fake" (load-tester's fake kernel: Child SAs negotiated and
	// installed nowhere, charon's pure IKE cost).
	Responders []string
	// Initiators drive every responder: "load-tester" (strongSwan's IKE
	// load generator, built from Debian's source package by
	// deploy/load-tester.sh on demand; PSK only), "charon" (VICI
	// initiations with IKE SA reuse off) and "iked" (iked's
	// load-initiator mode, with spud, on gw-a).
	Initiators []string
	// Window is the number of initiations in flight.
	Window int
	// Timeout bounds the setup of one run (zero: 120 s, or 50 ms per IKE
	// SA when that is longer); a run that hits it goes on with the IKE
	// SAs up by then (memory, hold) and is marked failed.
	Timeout time.Duration
	// Hold keeps each run's tunnels that long after the setup, then reads
	// the responder's tables and memory again (zero: no hold).
	Hold time.Duration
	// ChildRekey is the rekey_time of iked's load initiator's Child SAs
	// (zero: none, the default), with rand_time a third of it: a hold
	// longer than it rekeys each tunnel's Child SA, the responder
	// answering CREATE_CHILD_SA.
	ChildRekey time.Duration
}

// IKERun is one responder and authentication method.
type IKERun struct {
	Responder   string `json:"responder"`
	Initiator   string `json:"initiator"`
	Auth        string `json:"auth"`
	Count       int    `json:"count"`
	Established int    `json:"established"`
	// WithChild is how many of the responder's established IKE SAs had
	// their Child SA installed at the end (list-sas).
	WithChild int           `json:"with_child"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Rate      float64       `json:"ike_sas_per_s"`
	// Before and After are the responder's memory with no IKE SA and
	// with Established of them.
	Before    system.Memory `json:"memory_before"`
	After     system.Memory `json:"memory_after"`
	PerTunnel float64       `json:"rss_per_tunnel_bytes"`
	// DataPlane is, for iked, spud's growth per tunnel: iked keeps the
	// IKE SAs, spud the Child SAs (charon keeps both, its ESP being in
	// the same process).
	DataPlanePerTunnel float64 `json:"dataplane_rss_per_tunnel_bytes,omitempty"`
	// DataPlaneBefore is spud's memory with no tunnel (iked).
	DataPlaneBefore system.Memory `json:"dataplane_memory_before,omitzero"`
	// InitiatorFailed counts the IKE SAs iked's load run gave up on,
	// FirstFailure the first reason (iked as the initiator only).
	InitiatorFailed int    `json:"initiator_failed,omitempty"`
	FirstFailure    string `json:"first_failure,omitempty"`

	// LiveIKESAs and LiveChildSAs are what the responder holds at the end,
	// read from its SA table (iked's list-sas, charon's list-sas):
	// established IKE SAs, and their installed Child SAs.
	LiveIKESAs   int `json:"live_ike_sas"`
	LiveChildSAs int `json:"live_child_sas"`
	// DataPlaneSAs and DataPlanePolicies are spud's at the end (two SAs,
	// inbound and outbound, per tunnel; spu.list), DataPlaneSPUSAs its SAs
	// per physical SPU.
	DataPlaneSAs      int   `json:"dataplane_sas,omitempty"`
	DataPlanePolicies int   `json:"dataplane_policies,omitempty"`
	DataPlaneSPUSAs   []int `json:"dataplane_spu_sas,omitempty"`
	// CPUPerSA is the responder's CPU time (user + system, /proc/PID/stat)
	// over the run per established IKE SA, in milliseconds: iked's or
	// charon's; DataPlaneCPUPerSA spud's, InitiatorCPUPerSA the
	// initiator's (load-tester's, for the record).
	CPUPerSA          float64 `json:"cpu_ms_per_ike_sa,omitempty"`
	DataPlaneCPUPerSA float64 `json:"dataplane_cpu_ms_per_ike_sa,omitempty"`
	InitiatorCPUPerSA float64 `json:"initiator_cpu_ms_per_ike_sa,omitempty"`
	// Cores is the responder's CPU time over the run's wall time: above 1,
	// more than one core worked for it (iked's workers are goroutines,
	// whose own CPU time the kernel does not count).
	Cores float64 `json:"responder_cores,omitempty"`
	// Workers are iked's IKE workers at the end: the IKE SAs each holds
	// and the datagrams each received during the run.
	Workers []IKEWorker `json:"workers,omitempty"`

	// Deciles are the setup rate (IKE SAs per second) over each tenth of
	// the IKE SAs established, in order; FirstRate and LastRate the rate
	// over the first and the last RateWindow of them (10,000, or a tenth
	// of a smaller run): a setup cost that grows with the table shows as
	// LastRate below FirstRate. Curve is the setup, a point per percent.
	Deciles    []float64  `json:"setup_rate_by_decile,omitempty"`
	RateWindow int        `json:"rate_window,omitempty"`
	FirstRate  float64    `json:"first_rate,omitempty"`
	LastRate   float64    `json:"last_rate,omitempty"`
	Curve      []IKEPoint `json:"curve,omitempty"`
	// DecileCPU, FirstCPU and LastCPU are the responder's CPU per IKE SA
	// (ms; iked's and spud's, or charon's) over the same spans: unlike the
	// rates, they hardly move when other work takes the machine's CPUs.
	DecileCPU []float64 `json:"cpu_ms_per_ike_sa_by_decile,omitempty"`
	FirstCPU  float64   `json:"first_cpu_ms_per_ike_sa,omitempty"`
	LastCPU   float64   `json:"last_cpu_ms_per_ike_sa,omitempty"`
	// StateBytes is iked's state folder at the end (on tmpfs: memory
	// besides its RSS), StatePerTunnel per live IKE SA.
	StateBytes     uint64  `json:"state_bytes,omitempty"`
	StatePerTunnel float64 `json:"state_per_tunnel_bytes,omitempty"`
	// Failures are the responder's failure counters that grew during the
	// setup (iked's); InitiatorRounds the load runs iked's initiator took
	// to reach Count, its failed IKE SAs being started again.
	Failures        map[string]uint64 `json:"failures,omitempty"`
	InitiatorRounds int               `json:"initiator_rounds,omitempty"`
	// InitiatorLost counts the load runs iked lost track of (its
	// connection moved to another worker when spud's SPU map changed).
	InitiatorLost int `json:"initiator_lost_runs,omitempty"`
	// InitiatorRSS is the initiator's RSS at the end (its spud's
	// included for iked): both ends share the machine's memory.
	InitiatorRSS uint64 `json:"initiator_rss_bytes,omitempty"`
	// Hold is the tunnels after the scenario's hold time.
	Hold  *IKEHold `json:"hold,omitempty"`
	Error string   `json:"error,omitempty"`
}

// IKEWorker is one of iked's IKE workers in a run.
type IKEWorker struct {
	ID     int `json:"id"`
	SPU    int `json:"spu"`
	IKESAs int `json:"ike_sas"`
	// Datagrams arrived on its sockets during the run, HandedIn were
	// passed to it by another worker.
	Datagrams uint64 `json:"datagrams"`
	HandedIn  uint64 `json:"handed_in"`
	// SpudWaitMS is the time it spent blocked on SA API calls during the
	// run, in milliseconds.
	SpudWaitMS float64 `json:"spud_wait_ms"`
}

// IKECPURatio is a responder's CPU per IKE SA (iked with spud) over
// charon's pure IKE cost (charon:fake) under the same initiator and method.
type IKECPURatio struct {
	Initiator string  `json:"initiator"`
	Auth      string  `json:"auth"`
	Responder string  `json:"responder"`
	CPU       float64 `json:"cpu_ms_per_ike_sa"`
	Charon    float64 `json:"charon_fake_cpu_ms_per_ike_sa"`
	Ratio     float64 `json:"ratio"`
}

// IKERatio is iked's setup rate over charon's as responders for one
// method, both driven by the same initiator.
type IKERatio struct {
	Initiator string  `json:"initiator"`
	Auth      string  `json:"auth"`
	Iked      float64 `json:"iked_per_s"`
	Charon    float64 `json:"charon_per_s"`
	Ratio     float64 `json:"ratio"`
}

// IKEResults are scenario 4's results.
type IKEResults struct {
	Runs      []IKERun      `json:"runs"`
	Ratios    []IKERatio    `json:"ratios,omitempty"`
	CPURatios []IKECPURatio `json:"cpu_ratios,omitempty"`
	Notes     []string      `json:"notes,omitempty"`
}

func (c *IKE) defaults() {
	if c.Count == 0 {
		c.Count = 10000
	}
	if len(c.Auths) == 0 {
		c.Auths = []string{"psk", "ecdsa"}
	}
	if len(c.Responders) == 0 {
		c.Responders = []string{RespIked, RespIkedIKESA, RespCharonFake, RespCharon}
	}
	if c.CountIkedInitiator == 0 {
		c.CountIkedInitiator = 2000
	}
	if len(c.Initiators) == 0 {
		c.Initiators = []string{InitLoadTester, "iked"}
	}
	if c.Window == 0 {
		c.Window = 64
	}
}

// timeout is how long a run of n IKE SAs may take to set them up.
func (c *IKE) timeout(n int) time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return max(120*time.Second, time.Duration(n)*50*time.Millisecond)
}

// Responder and initiator names.
const (
	RespIked         = "iked"
	RespIkedIKESA    = "iked:ike-sa"
	RespCharon       = "charon"
	RespCharonFake   = "charon:fake"
	InitLoadTester   = "load-tester"
	loadTesterNoAuth = "load-tester authenticates with psk only here (upstream's signs with its compiled-in RSA key)"
)

// responderKind splits a responder name into its daemon and its variant:
// iked's ike_anchor, or charon's kernel interface ("libipsec", "fake").
func responderKind(name string) (daemon, variant string, err error) {
	switch name {
	case RespIked:
		return "iked", "tunnel", nil
	case RespIkedIKESA:
		return "iked", "ike-sa", nil
	case RespCharon:
		return "charon", "libipsec", nil
	case RespCharonFake:
		return "charon", "fake", nil
	}
	return "", "", fmt.Errorf("unknown responder %q (%s, %s, %s, %s)", name, RespIked, RespIkedIKESA, RespCharon, RespCharonFake)
}

// IKECPURatios sets each iked responder's CPU per IKE SA (iked + spud)
// against charon:fake's under the same initiator and method.
func IKECPURatios(runs []IKERun) []IKECPURatio {
	type key struct{ ini, auth string }
	base := map[key]float64{}
	for _, r := range runs {
		if r.Responder == RespCharonFake && r.Error == "" && r.CPUPerSA > 0 {
			base[key{r.Initiator, r.Auth}] = r.CPUPerSA
		}
	}
	var out []IKECPURatio
	for _, r := range runs {
		d, _, err := responderKind(r.Responder)
		c := base[key{r.Initiator, r.Auth}]
		if err != nil || d != "iked" || r.Error != "" || r.CPUPerSA <= 0 || c <= 0 {
			continue
		}
		cpu := r.CPUPerSA + r.DataPlaneCPUPerSA
		out = append(out, IKECPURatio{Initiator: r.Initiator, Auth: r.Auth, Responder: r.Responder, CPU: cpu, Charon: c, Ratio: cpu / c})
	}
	return out
}

// count is the IKE SAs an initiator sets up per responder and method.
func (c *IKE) count(initiator string) int {
	if initiator == "iked" {
		return c.CountIkedInitiator
	}
	return c.Count
}

// IKERatios pairs iked's and charon's rates as responders per initiator
// and method: only runs with the same initiator are compared.
func IKERatios(runs []IKERun) []IKERatio {
	type key struct{ resp, ini, auth string }
	rate := map[key]float64{}
	var order [][2]string
	seen := map[[2]string]bool{}
	for _, r := range runs {
		ini := r.Initiator
		if ini == "" {
			ini = "charon"
		}
		if r.Error == "" && r.Rate > 0 {
			rate[key{r.Responder, ini, r.Auth}] = r.Rate
		}
		if k := [2]string{ini, r.Auth}; !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	var out []IKERatio
	for _, k := range order {
		i, c := rate[key{"iked", k[0], k[1]}], rate[key{"charon", k[0], k[1]}]
		if i > 0 && c > 0 {
			out = append(out, IKERatio{Initiator: k[0], Auth: k[1], Iked: i, Charon: c, Ratio: i / c})
		}
	}
	return out
}
