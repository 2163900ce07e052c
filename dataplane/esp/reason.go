package esp

import "strconv"

// Reason says why a packet was dropped. It indexes the per-SA drop
// counters, and the SA table uses it for drops before an SA is found
// (UnknownSPI), so every drop in the data plane has a named cause.
type Reason uint8

// Drop reasons.
const (
	// None: the packet was not dropped.
	None Reason = iota
	// ShortPacket: too short for the headers it claims (outer IP, UDP, ESP, IV, ICV).
	ShortPacket
	// Malformed: an outer header is inconsistent (version, lengths, a wrong protocol).
	Malformed
	// UnknownSPI: no SA has this SPI (the SA table counts it), or the
	// packet's SPI is not this SA's.
	UnknownSPI
	// WrongDirection: encapsulation asked of an inbound SA or the reverse.
	WrongDirection
	// OuterFragment: an outer fragment reached decapsulation; reassemble first.
	OuterFragment
	// NotESP: a UDP datagram that is IKE (non-ESP marker) or a NAT keepalive.
	NotESP
	// BadICV: the integrity check failed.
	BadICV
	// Replay: the sequence number was already received.
	Replay
	// ReplayTooOld: the sequence number is left of the anti-replay window.
	ReplayTooOld
	// BadLength: the ciphertext is not a whole number of cipher blocks.
	BadLength
	// BadPadding: padding bytes are not 1, 2, 3, ... (RFC 4303 section 2.4).
	BadPadding
	// BadPadLength: the pad length exceeds the payload.
	BadPadLength
	// BadNextHeader: the next header does not fit the mode (tunnel: IPv4 or IPv6).
	BadNextHeader
	// Dummy: a dummy packet (next header 59, RFC 4303 section 2.6), dropped by design.
	Dummy
	// BadInner: the decrypted inner packet is not a valid IP packet.
	BadInner
	// TSMismatch: the inner packet is outside the SA's traffic selectors.
	TSMismatch
	// ECNDrop: outer CE on a not-ECT inner packet (RFC 6040 section 4.2).
	ECNDrop
	// HardLifetime: the SA reached a hard byte or packet lifetime.
	HardLifetime
	// SeqExhausted: the outbound sequence number space is used up.
	SeqExhausted
	// TooBig: the packet does not fit the path MTU once encapsulated and may
	// not be fragmented; an ICMP "too big" is due to its sender.
	TooBig
	// NoRoom: the caller's buffer has too little headroom or tailroom.
	NoRoom
	// NumReasons is the number of reasons, for sizing counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	None:           "none",
	ShortPacket:    "short_packet",
	Malformed:      "malformed",
	UnknownSPI:     "unknown_spi",
	WrongDirection: "wrong_direction",
	OuterFragment:  "outer_fragment",
	NotESP:         "not_esp",
	BadICV:         "bad_icv",
	Replay:         "replay",
	ReplayTooOld:   "replay_too_old",
	BadLength:      "bad_length",
	BadPadding:     "bad_padding",
	BadPadLength:   "bad_pad_length",
	BadNextHeader:  "bad_next_header",
	Dummy:          "dummy",
	BadInner:       "bad_inner",
	TSMismatch:     "ts_mismatch",
	ECNDrop:        "ecn_drop",
	HardLifetime:   "hard_lifetime",
	SeqExhausted:   "seq_exhausted",
	TooBig:         "too_big",
	NoRoom:         "no_room",
}

// String returns the reason's counter name (snake_case), as SA dumps
// show it.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Verdict says what the caller does with a packet after Encap or Decap.
type Verdict uint8

// Verdicts.
const (
	// Drop: discard the packet; Reason says why (already counted).
	Drop Verdict = iota
	// Forward: send the packet at buf[Off:Off+Len].
	Forward
	// Fragment: the ESP packet at buf[Off:Off+Len] exceeds the path MTU and
	// may be fragmented: split it with ipfrag to MTU bytes and send the pieces.
	Fragment
	// SendTooBig: the inner packet, left untouched at its original place,
	// is too big; answer its sender with WriteTooBig announcing MTU. The
	// packet itself is dropped and counted under TooBig.
	SendTooBig
)

var verdictNames = [...]string{Drop: "drop", Forward: "forward", Fragment: "fragment", SendTooBig: "send-too-big"}

// String names the verdict for logs and test failures.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}
