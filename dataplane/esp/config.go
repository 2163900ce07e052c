package esp

import (
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"

	"github.com/spugate/spugate/dataplane/replay"
)

// blockLen is the alignment of the encrypted part (RFC 4303 section 2.4:
// at least 4; the cipher block for CBC).
func blockLen(s ipsec.Suite) int {
	if s.AEAD() {
		return 4
	}
	return 16
}

// Direction says which way an SA carries packets.
type Direction uint8

// Directions.
const (
	Outbound Direction = iota + 1
	Inbound
)

var directionNames = [...]string{Outbound: "out", Inbound: "in"}

// String returns "out" or "in", as the SA API spells directions.
func (d Direction) String() string {
	if int(d) < len(directionNames) && directionNames[d] != "" {
		return directionNames[d]
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Mode is the ESP mode.
type Mode uint8

// Modes.
const (
	Tunnel Mode = iota
	Transport
)

var modeNames = [...]string{Tunnel: "tunnel", Transport: "transport"}

// String returns "tunnel" or "transport"; an unknown mode, which the SA
// treats as tunnel mode, says "tunnel".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return modeNames[Tunnel]
}

// DFPolicy says how the DF bit of an outer IPv4 header is set.
type DFPolicy uint8

// DF policies.
const (
	// DFCopy copies DF from an IPv4 inner packet and sets it for an IPv6
	// inner packet, as Linux XFRM does by default.
	DFCopy DFPolicy = iota
	// DFSet always sets DF.
	DFSet
	// DFClear never sets DF.
	DFClear
)

// ECNMode is the RFC 6040 encapsulation mode.
type ECNMode uint8

// ECN modes.
const (
	// ECNNormal copies the inner ECN field to the outer header (RFC 6040
	// section 4.1, normal mode).
	ECNNormal ECNMode = iota
	// ECNCompat sends Not-ECT outside (compatibility mode).
	ECNCompat
)

// Lifetime holds byte and packet limits; zero means no limit. Bytes count
// the inner packets (the plaintext IP packets protected by the SA).
// Time lifetimes belong to the control plane, which owns the clock.
type Lifetime struct {
	// SoftBytes and HardBytes limit the inner bytes: at the soft limit
	// the SA raises EventSoftLifetime, at the hard one it stops.
	SoftBytes, HardBytes uint64
	// SoftPackets and HardPackets limit the packets likewise.
	SoftPackets, HardPackets uint64
}

// Config is everything the data plane needs to know about one SA.
type Config struct {
	// SPI is the SPI of the SA's packets: ours for an inbound SA, the
	// peer's for an outbound one.
	SPI       uint32
	Direction Direction
	// Suite is the cipher suite; EncKey and IntegKey its keys (for AEAD
	// suites EncKey ends with the salt, and IntegKey is empty).
	Suite    ipsec.Suite
	EncKey   []byte
	IntegKey []byte
	// Mode is tunnel (the default) or transport.
	Mode Mode

	// Local and Remote are the outer addresses: ours and the peer's, in
	// either direction (an inbound SA's packets come from Remote to Local).
	// Both of one family. In transport mode they are the hosts' addresses.
	Local, Remote netip.Addr

	// UDPEncap wraps ESP in UDP (RFC 3948) with these ports (usually 4500).
	UDPEncap              bool
	LocalPort, RemotePort uint16
	// UDPZeroChecksum6 sends UDP-encapsulated ESP over IPv6 with a zero UDP
	// checksum (RFC 6935/6936; the peer must accept it) instead of computing it.
	UDPZeroChecksum6 bool

	// ESN turns on 64-bit extended sequence numbers (RFC 4303 section 2.2.1).
	ESN bool
	// ReplayWindow is the inbound anti-replay window size (0 means 1024,
	// ReplayOff turns anti-replay off).
	ReplayWindow int
	// SeqSoftLimit is the outbound sequence number at which the SA asks to
	// be rekeyed (EventSeqNearExhaustion); 0 means the default (see
	// DefaultSeqSoftLimit32 and DefaultSeqSoftLimit64).
	SeqSoftLimit uint64

	// Lifetime is the byte and packet limits.
	Lifetime Lifetime

	// LocalTS and RemoteTS are the negotiated traffic selectors: on
	// decapsulation the inner source must match one of RemoteTS and the
	// inner destination one of LocalTS. An empty list matches anything.
	LocalTS, RemoteTS []ipsec.Selector

	// DF is how the outer IPv4 header's DF bit is set.
	DF DFPolicy
	// PathMTU is the largest outer packet (0 means 1500).
	PathMTU int
	// FragmentTooBig fragments the outer packet instead of answering with
	// ICMP "too big" when an inner packet that may not be fragmented (DF
	// set, or IPv6) does not fit. Inner IPv4 packets without DF and IPv6
	// packets of at most 1280 bytes are always carried in fragments.
	FragmentTooBig bool

	// PadAlign is the alignment of the encrypted part (payload, padding,
	// pad length and next header): 4, 8 or 16; 0 means 16. AES-CBC needs
	// 16. GHASH and Poly1305 work on 16-byte blocks and the last partial
	// block costs a whole block of keystream, so aligning AEAD payloads to
	// 16 costs no cipher work (Go's AES-GCM seals 66 to 80 bytes in the
	// same time), only up to 12 more bytes on the wire. 4 is the minimum
	// of RFC 4303 section 2.4 and what Linux sends. See also SpeedPad.
	PadAlign int

	// SpeedPad is the most padding bytes Encap may add beyond PadAlign's to
	// make an AES-GCM packet's encrypted part (payload, padding, pad length,
	// next header) a multiple of 128 bytes; 0, the default, adds none, and
	// at most 112 can be useful. Go's AES-GCM assembly encrypts and hashes
	// eight blocks at a time and the rest one block at a time, serially, so
	// that 128 bytes cost less than 64 to 112: on the reference machine
	// (AMD EPYC, Go 1.26) sealing 80 bytes took 108 ns and 128 bytes 70 ns,
	// opening 82 ns and 56 ns. With SpeedPad 48 a 64-byte inner packet
	// (80 encrypted bytes) is sent as 128: 48 more bytes on the wire (an
	// IPv4 tunnel packet of 180 instead of 132 bytes) for about 35 ns less
	// to seal and 25 ns less to open, at both ends. RFC 4303 allows up to
	// 255 bytes of padding and every receiver must accept it. The padding
	// is skipped when it would exceed the path MTU or the caller's
	// tailroom. Other suites ignore it: ChaCha20-Poly1305's cost hardly
	// moves below 128 bytes, and AES-CBC with HMAC only pays for more.
	SpeedPad int

	// ECN is the RFC 6040 mode of encapsulation.
	ECN ECNMode
	// NoEncapDSCP sends DSCP 0 outside instead of copying the inner DSCP.
	NoEncapDSCP bool
	// DecapDSCP copies the outer DSCP into the inner packet on
	// decapsulation (the uniform model); by default the inner DSCP is kept.
	DecapDSCP bool
}

// Default outbound sequence number soft limits. Without ESN, 2^30 numbers
// before the end leave 100 s at 10 Mpps on one SA for the control plane to
// rekey; with ESN the space cannot be exhausted in practice, and 2^32 before
// the end mirrors the same margin at an absurd rate.
const (
	DefaultSeqSoftLimit32 = 1<<32 - 1<<30
	DefaultSeqSoftLimit64 = 1<<64 - 1<<32
)

// maxSelectors is the most selectors an SA takes on either side (it counts
// them in 16 bits).
const maxSelectors = 1<<16 - 1

// DefaultPathMTU is the path MTU assumed when Config.PathMTU is 0.
const DefaultPathMTU = 1500

func (c *Config) validate() error {
	id := fmt.Sprintf("esp: sa 0x%08x", c.SPI)
	if c.SPI < 256 {
		return fmt.Errorf("%s: SPI values 0..255 are reserved (RFC 4303 section 2.1)", id)
	}
	if c.Direction != Outbound && c.Direction != Inbound {
		return fmt.Errorf("%s: direction must be Outbound or Inbound", id)
	}
	if !c.Suite.Valid() {
		return fmt.Errorf("%s: unknown suite %d", id, c.Suite)
	}
	if len(c.EncKey) != c.Suite.EncKeyLen() {
		return fmt.Errorf("%s: %s needs a %d-byte encryption key (salt included), got %d bytes", id, c.Suite, c.Suite.EncKeyLen(), len(c.EncKey))
	}
	if len(c.IntegKey) != c.Suite.IntegKeyLen() {
		return fmt.Errorf("%s: %s needs a %d-byte integrity key, got %d bytes", id, c.Suite, c.Suite.IntegKeyLen(), len(c.IntegKey))
	}
	if c.Mode != Tunnel && c.Mode != Transport {
		return fmt.Errorf("%s: unknown mode %d", id, c.Mode)
	}
	if !c.Local.IsValid() || !c.Remote.IsValid() {
		return fmt.Errorf("%s: local and remote addresses are required", id)
	}
	if c.Local.Zone() != "" || c.Remote.Zone() != "" {
		return fmt.Errorf("%s: addresses with a zone are not supported", id)
	}
	if c.Local.Unmap().Is4() != c.Remote.Unmap().Is4() {
		return fmt.Errorf("%s: local %s and remote %s are of different families", id, c.Local, c.Remote)
	}
	if c.UDPEncap && (c.LocalPort == 0 || c.RemotePort == 0) {
		return fmt.Errorf("%s: UDP encapsulation needs both ports", id)
	}
	if c.ReplayWindow != 0 && c.ReplayWindow != ReplayOff && (c.ReplayWindow < replay.MinSize || c.ReplayWindow > replay.MaxSize) {
		return fmt.Errorf("%s: replay window %d out of range %d..%d (or %d: off)", id, c.ReplayWindow, replay.MinSize, replay.MaxSize, ReplayOff)
	}
	l := c.Lifetime
	if l.SoftBytes != 0 && l.HardBytes != 0 && l.SoftBytes > l.HardBytes {
		return fmt.Errorf("%s: soft byte lifetime %d exceeds hard %d", id, l.SoftBytes, l.HardBytes)
	}
	if l.SoftPackets != 0 && l.HardPackets != 0 && l.SoftPackets > l.HardPackets {
		return fmt.Errorf("%s: soft packet lifetime %d exceeds hard %d", id, l.SoftPackets, l.HardPackets)
	}
	if !c.ESN && c.SeqSoftLimit > 1<<32-1 {
		return fmt.Errorf("%s: sequence soft limit %d exceeds the 32-bit space", id, c.SeqSoftLimit)
	}
	if c.PathMTU != 0 && (c.PathMTU < iphdrMinMTU(c.Local) || c.PathMTU > 65535) {
		return fmt.Errorf("%s: path MTU %d out of range %d..65535", id, c.PathMTU, iphdrMinMTU(c.Local))
	}
	switch c.PadAlign {
	case 0, 16:
	case 4, 8:
		if !c.Suite.AEAD() {
			return fmt.Errorf("%s: %s needs 16-byte padding alignment, got %d", id, c.Suite, c.PadAlign)
		}
	default:
		return fmt.Errorf("%s: padding alignment %d is not 4, 8 or 16", id, c.PadAlign)
	}
	if c.SpeedPad < 0 || c.SpeedPad > maxSpeedPad {
		return fmt.Errorf("%s: speed padding %d out of range 0..%d", id, c.SpeedPad, maxSpeedPad)
	}
	if c.DF > DFClear {
		return fmt.Errorf("%s: unknown DF policy %d", id, c.DF)
	}
	if c.ECN > ECNCompat {
		return fmt.Errorf("%s: unknown ECN mode %d", id, c.ECN)
	}
	if len(c.LocalTS) > maxSelectors || len(c.RemoteTS) > maxSelectors {
		return fmt.Errorf("%s: %d local and %d remote selectors, at most %d each", id, len(c.LocalTS), len(c.RemoteTS), maxSelectors)
	}
	for i, s := range c.LocalTS {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%s: local selector %d: %w", id, i, err)
		}
	}
	for i, s := range c.RemoteTS {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%s: remote selector %d: %w", id, i, err)
		}
	}
	return nil
}

func iphdrMinMTU(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 576
	}
	return 1280
}

// ReplayOff as a Config's ReplayWindow turns anti-replay off (RFC 4303
// section 3.4.3 lets the receiver), as strongSwan's replay_window = 0 does.
const ReplayOff = -1
