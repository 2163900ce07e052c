package scenario

import (
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
	// Responders to measure: "iked", "charon".
	Responders []string
	// Initiators drive every responder: "charon" (strongSwan without its
	// load-tester plugin, which Debian does not ship: VICI initiations
	// with IKE SA reuse off) and "iked" (iked's load-initiator mode, with
	// spud, on gw-a).
	Initiators []string
	// Window is the number of initiations in flight.
	Window  int
	Timeout time.Duration
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
	// InitiatorFailed counts the IKE SAs iked's load run gave up on,
	// FirstFailure the first reason (iked as the initiator only).
	InitiatorFailed int    `json:"initiator_failed,omitempty"`
	FirstFailure    string `json:"first_failure,omitempty"`
	Error           string `json:"error,omitempty"`
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
	Runs   []IKERun   `json:"runs"`
	Ratios []IKERatio `json:"ratios,omitempty"`
	Notes  []string   `json:"notes,omitempty"`
}

func (c *IKE) defaults() {
	if c.Count == 0 {
		c.Count = 10000
	}
	if len(c.Auths) == 0 {
		c.Auths = []string{"psk", "ecdsa"}
	}
	if len(c.Responders) == 0 {
		c.Responders = []string{"iked", "charon"}
	}
	if c.CountIkedInitiator == 0 {
		c.CountIkedInitiator = 2000
	}
	if len(c.Initiators) == 0 {
		c.Initiators = []string{"charon", "iked"}
	}
	if c.Window == 0 {
		c.Window = 64
	}
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
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
