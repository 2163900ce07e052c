package scenario

import (
	"time"

	"github.com/spugate/spugate/bench/system"
)

// IKE is scenario 4: how fast a responder sets up IKE SAs (each with its
// Child SA) for one initiator, with PSK and with ECDSA certificates: IKE
// SAs per second, the time to reach Count, and the responder's memory per
// tunnel.
type IKE struct {
	Count int
	Auths []string
	// Responders to measure: "iked", "charon".
	Responders []string
	// Initiator drives every responder: "charon" (strongSwan without its
	// load-tester plugin, which Debian does not ship: VICI initiations with
	// IKE SA reuse off).
	Initiator string
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
	Error              string  `json:"error,omitempty"`
}

// IKERatio is iked's setup rate over charon's for one method.
type IKERatio struct {
	Auth   string  `json:"auth"`
	Iked   float64 `json:"iked_per_s"`
	Charon float64 `json:"charon_per_s"`
	Ratio  float64 `json:"ratio"`
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
	if c.Initiator == "" {
		c.Initiator = "charon"
	}
	if c.Window == 0 {
		c.Window = 64
	}
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
}

// IKERatios pairs iked's and charon's rates per method.
func IKERatios(runs []IKERun) []IKERatio {
	rate := map[[2]string]float64{}
	var auths []string
	for _, r := range runs {
		if r.Error == "" && r.Rate > 0 {
			rate[[2]string{r.Responder, r.Auth}] = r.Rate
		}
		if len(auths) == 0 || auths[len(auths)-1] != r.Auth {
			auths = append(auths, r.Auth)
		}
	}
	var out []IKERatio
	seen := map[string]bool{}
	for _, a := range auths {
		if seen[a] {
			continue
		}
		seen[a] = true
		i, c := rate[[2]string{"iked", a}], rate[[2]string{"charon", a}]
		if i > 0 && c > 0 {
			out = append(out, IKERatio{Auth: a, Iked: i, Charon: c, Ratio: i / c})
		}
	}
	return out
}
