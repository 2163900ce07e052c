package api

import (
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
)

// Dir is the direction of an SA or a policy, seen from this gateway.
type Dir string

const (
	In  Dir = "in"  // In: received from the peer (we chose the SPI)
	Out Dir = "out" // Out: sent to the peer (the peer chose the SPI)
)

// Mode is the IPsec mode of an SA.
type Mode string

const (
	Tunnel    Mode = "tunnel"    // Tunnel: the whole inner packet is protected, behind an outer header
	Transport Mode = "transport" // Transport: the packet's own header stays, its payload is protected
)

// Lifetime limits of an SA in bytes and packets of its traffic. Zero is
// unlimited. The time limits belong to iked, which owns the clock of rekeys.
type Lifetime struct {
	SoftBytes   uint64 `json:"soft_bytes,omitempty"`   // lifetime.soft after this many bytes (iked rekeys)
	HardBytes   uint64 `json:"hard_bytes,omitempty"`   // stop passing traffic after this many bytes
	SoftPackets uint64 `json:"soft_packets,omitempty"` // lifetime.soft after this many packets (iked rekeys)
	HardPackets uint64 `json:"hard_packets,omitempty"` // stop passing traffic after this many packets
}

// Encap is UDP encapsulation of ESP (RFC 3948). Ports are the outer UDP
// ports of packets this SA sends (out) or receives (in), from this side.
type Encap struct {
	LocalPort  uint16 `json:"local_port"`  // this gateway's UDP port
	RemotePort uint16 `json:"remote_port"` // the peer's UDP port
}

// SA is one direction of a Child SA as installed in the data plane.
type SA struct {
	SPI uint32 `json:"spi"` // at least 256 (RFC 4303)
	Dir Dir    `json:"dir"` // in or out
	// Local and Remote are the tunnel endpoints: this gateway's address and
	// the peer's. They decide the anchor SPU of an outbound SA installed
	// without Logical.
	Local  netip.Addr `json:"local"`
	Remote netip.Addr `json:"remote"` // the peer's address
	// Logical is the logical SPU to anchor on: its IKE SA's, so that the
	// IKE SAs between two addresses spread over the SPUs. nil is the hash
	// of Local and Remote, as before anchors were per IKE SA. An inbound
	// SA is always anchored on the logical SPU its SPI encodes (where the
	// steering program sends its packets): Logical, if given, must agree.
	// Dumps fill it with the logical SPU the SA is anchored on.
	Logical *int        `json:"logical,omitempty"`
	Mode    Mode        `json:"mode"`  // tunnel or transport
	Suite   ipsec.Suite `json:"suite"` // strongSwan's keyword: "aes128gcm16"
	// EncKey includes the 4-byte salt for the AEAD suites (RFC 4106, 7634).
	EncKey   []byte `json:"enc_key"`
	IntegKey []byte `json:"integ_key,omitempty"` // for the suites without AEAD only
	ESN      bool   `json:"esn,omitempty"`       // 64-bit extended sequence numbers (RFC 4303)
	// ReplayWindow in packets for inbound SAs: 0 means the default (1024),
	// -1 turns anti-replay off (iked's replay_window: 0, as strongSwan's),
	// else 32..65536.
	ReplayWindow int    `json:"replay_window,omitempty"`
	Encap        *Encap `json:"encap,omitempty"` // UDP encapsulation, nil for plain ESP
	// ReqID ties the SAs of one Child SA to its policies, as in XFRM: the
	// outbound policies with this ReqID use the newest outbound SA with it.
	ReqID uint32 `json:"reqid"`
	// LocalTS and RemoteTS: what the peer may send into (in) or what we send
	// through (out) this SA.
	LocalTS  []ipsec.Selector `json:"local_ts,omitempty"`
	RemoteTS []ipsec.Selector `json:"remote_ts,omitempty"` // see LocalTS
	Lifetime Lifetime         `json:"lifetime,omitempty"`  // byte and packet limits
	// Name is for people: the connection/child it belongs to.
	Name string `json:"name,omitempty"`
}

// Validate checks an SA's fields against each other.
func (s *SA) Validate() error {
	if s.SPI < 256 {
		return fmt.Errorf("sa spi 0x%08x: SPIs below 256 are reserved (RFC 4303)", s.SPI)
	}
	name := saName(s.SPI) // formatted only into an error
	if s.Dir != In && s.Dir != Out {
		return fmt.Errorf("%s: direction %q, want in or out", name, s.Dir)
	}
	if !s.Local.IsValid() || !s.Remote.IsValid() {
		return fmt.Errorf("%s: missing tunnel endpoint", name)
	}
	if s.Local.Is4() != s.Remote.Is4() {
		return fmt.Errorf("%s: endpoints %s and %s are of different families", name, s.Local, s.Remote)
	}
	if s.Mode != Tunnel && s.Mode != Transport {
		return fmt.Errorf("%s: mode %q, want tunnel or transport", name, s.Mode)
	}
	if !s.Suite.Valid() {
		return fmt.Errorf("%s: no ESP suite (have %v)", name, ipsec.Suites)
	}
	enc, integ := s.Suite.EncKeyLen(), s.Suite.IntegKeyLen()
	if len(s.EncKey) != enc {
		return fmt.Errorf("%s: suite %s needs a %d-byte encryption key, got %d", name, s.Suite, enc, len(s.EncKey))
	}
	if len(s.IntegKey) != integ {
		return fmt.Errorf("%s: suite %s needs a %d-byte integrity key, got %d", name, s.Suite, integ, len(s.IntegKey))
	}
	if s.ReplayWindow < -1 || s.ReplayWindow > 65536 {
		return fmt.Errorf("%s: replay window %d out of range (-1..65536)", name, s.ReplayWindow)
	}
	if s.Logical != nil && *s.Logical < 0 {
		return fmt.Errorf("%s: logical SPU %d is negative", name, *s.Logical)
	}
	if s.Encap != nil && (s.Encap.LocalPort == 0 || s.Encap.RemotePort == 0) {
		return fmt.Errorf("%s: UDP encapsulation needs both ports", name)
	}
	if err := validateSelectors(s.LocalTS, s.RemoteTS); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// saName names an SA in Validate's errors, formatted only into one: a
// valid SA costs no text.
type saName uint32

func (n saName) String() string { return fmt.Sprintf("sa spi 0x%08x", uint32(n)) }

// validateSelectors checks each selector of both lists.
func validateSelectors(local, remote []ipsec.Selector) error {
	for _, ts := range [2][]ipsec.Selector{local, remote} {
		for _, t := range ts {
			if err := t.Validate(); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateLogical checks the SA's explicit logical SPU, if any, against
// the data plane's l logical SPUs.
func (s *SA) ValidateLogical(l int) error {
	return checkLogical(func() string { return fmt.Sprintf("sa spi 0x%08x %s", s.SPI, s.Dir) }, s.Logical, l)
}

// checkLogical refuses a logical SPU outside 0..l-1, naming its owner
// (name is called for the error only).
func checkLogical(name func() string, logical *int, l int) error {
	if logical != nil && (*logical < 0 || *logical >= l) {
		return fmt.Errorf("%s: logical SPU %d out of range (0..%d)", name(), *logical, l-1)
	}
	return nil
}

// Redacted is a copy of the SA without key material, for logs and dumps to
// anyone but the owner.
func (s SA) Redacted() SA {
	if len(s.EncKey) > 0 {
		s.EncKey = []byte{}
	}
	if len(s.IntegKey) > 0 {
		s.IntegKey = []byte{}
	}
	return s
}

// Action of a policy.
type Action string

const (
	Protect Action = "protect" // Protect: through the outbound SA of the policy's ReqID
	Bypass  Action = "bypass"  // Bypass: forwarded in the clear
	Discard Action = "discard" // Discard: dropped
)

// Policy is an outbound security policy: cleartext from LocalTS to RemoteTS
// arriving on a protected interface goes through the outbound SA of ReqID.
type Policy struct {
	ID     uint32 `json:"id"`     // chosen by the data plane on add when 0
	ReqID  uint32 `json:"reqid"`  // the Child SA whose outbound SA protects: required for protect
	Action Action `json:"action"` // protect, bypass or discard
	// Local and Remote are the tunnel endpoints the policy's SAs use: they
	// decide its anchor SPU when Logical is nil, the same as its SAs'.
	Local  netip.Addr `json:"local"`
	Remote netip.Addr `json:"remote"` // see Local
	// Logical is the logical SPU to anchor on, its outbound SAs' (their
	// IKE SA's); nil is the hash of Local and Remote for protect, 0 for
	// bypass and discard. Cleartext it matches is steered there. Dumps
	// fill it with the logical SPU the policy is anchored on.
	Logical  *int             `json:"logical,omitempty"`
	LocalTS  []ipsec.Selector `json:"local_ts"`  // the cleartext's sources
	RemoteTS []ipsec.Selector `json:"remote_ts"` // the cleartext's destinations
	// Interfaces on which cleartext is matched; empty means every protected
	// interface of the data plane.
	Interfaces []string `json:"interfaces,omitempty"`
	Name       string   `json:"name,omitempty"` // for people: the connection/child it belongs to
}

// Validate checks a policy.
func (p *Policy) Validate() error {
	name := policyName{p} // formatted only into an error
	switch p.Action {
	case Protect, Bypass, Discard:
	default:
		return fmt.Errorf("%s: action %q, want protect, bypass or discard", name, p.Action)
	}
	if p.Action == Protect {
		if !p.Local.IsValid() || !p.Remote.IsValid() || p.Local.Is4() != p.Remote.Is4() {
			return fmt.Errorf("%s: protect needs tunnel endpoints of one family", name)
		}
		if p.ReqID == 0 {
			return fmt.Errorf("%s: protect needs a reqid", name)
		}
	}
	if p.Logical != nil && *p.Logical < 0 {
		return fmt.Errorf("%s: logical SPU %d is negative", name, *p.Logical)
	}
	if len(p.LocalTS) == 0 || len(p.RemoteTS) == 0 {
		return fmt.Errorf("%s: needs local and remote selectors", name)
	}
	if err := validateSelectors(p.LocalTS, p.RemoteTS); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// policyName names a policy in errors, formatted only into one.
type policyName struct{ p *Policy }

func (n policyName) String() string {
	if n.p.Name != "" {
		return fmt.Sprintf("policy %d (%s)", n.p.ID, n.p.Name)
	}
	return fmt.Sprintf("policy %d", n.p.ID)
}

// ValidateLogical checks the policy's explicit logical SPU, if any, against
// the data plane's l logical SPUs.
func (p *Policy) ValidateLogical(l int) error {
	return checkLogical(policyName{p}.String, p.Logical, l)
}

// Logical returns l as the Logical field of an SA, a policy or an SPI
// request, which is nil when not given.
func Logical(l int) *int { return &l }
