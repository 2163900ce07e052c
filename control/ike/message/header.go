package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the length of the IKE header (RFC 7296 section 3.1): the
// first payload starts there, and the header's Length counts it.
const HeaderLen = 28

// Version is the version octet of IKEv2 messages: major 2, minor 0.
const Version uint8 = 0x20

// MaxPayloads bounds the payloads of one chain (the cleartext chain, or the
// chain inside SK), so that a hostile message is cheap to reject. Real
// messages carry a dozen or two.
const MaxPayloads = 128

// Header is the fixed IKE header (RFC 7296 section 3.1).
type Header struct {
	SPIi, SPIr uint64
	// NextPayload is the type of the first payload; Encode fills it in.
	NextPayload PayloadType
	Version     uint8 // Version if zero when encoding
	Exchange    ExchangeType
	Flags       Flags
	MessageID   uint32
	// Length is the length of the whole message; Encode fills it in.
	Length uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the I flag is set (the sender is the
// original initiator of the IKE SA).
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// String summarises the header for logs: exchange, direction, message ID
// and both SPIs, e.g. "IKE_AUTH response 1 (SPIs ..._i ..._r)".
func (h Header) String() string {
	dir := "request"
	if h.IsResponse() {
		dir = "response"
	}
	return fmt.Sprintf("%s %s %d (SPIs %016x_i %016x_r)", h.Exchange, dir, h.MessageID, h.SPIi, h.SPIr)
}

// MajorVersionError reports a header whose major version is not 2; the
// receiver answers an IKE_SA_INIT request with INVALID_MAJOR_VERSION.
type MajorVersionError struct{ Version uint8 }

// Error names the version received (the high nibble of the version byte).
func (e *MajorVersionError) Error() string {
	return fmt.Sprintf("ike: header: major version %d, want 2", e.Version>>4)
}

// DecodeHeader reads the IKE header at the start of b without looking at
// the payloads: enough to find the IKE SA a datagram belongs to. It checks
// the major version and that the Length field equals len(b).
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, fmt.Errorf("ike: header: message of %d bytes below minimum %d", len(b), HeaderLen)
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:])
	h.SPIr = binary.BigEndian.Uint64(b[8:])
	h.NextPayload = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:])
	h.Length = binary.BigEndian.Uint32(b[24:])
	if h.Version>>4 != 2 {
		return h, &MajorVersionError{h.Version}
	}
	if uint64(h.Length) != uint64(len(b)) {
		return h, fmt.Errorf("ike: header: length field %d but datagram of %d bytes", h.Length, len(b))
	}
	return h, nil
}

func (h *Header) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], h.SPIi)
	binary.BigEndian.PutUint64(b[8:], h.SPIr)
	b[16] = byte(h.NextPayload)
	v := h.Version
	if v == 0 {
		v = Version
	}
	b[17] = v
	b[18] = byte(h.Exchange)
	b[19] = byte(h.Flags)
	binary.BigEndian.PutUint32(b[20:], h.MessageID)
	binary.BigEndian.PutUint32(b[24:], h.Length)
}

// ErrESP is returned by StripNonESPMarker for a UDP 4500 datagram that
// carries ESP, not IKE.
var ErrESP = errors.New("ike: datagram on port 4500 is ESP (no non-ESP marker)")

// StripNonESPMarker removes the four zero bytes that precede an IKE message
// on UDP port 4500 (RFC 3948 section 2.2, RFC 7296 section 2.23). A
// datagram without them is ESP (ErrESP); the one-byte 0xFF NAT-keepalive
// is reported as ErrESP too, since it is not IKE either.
func StripNonESPMarker(b []byte) ([]byte, error) {
	if len(b) < 4 || binary.BigEndian.Uint32(b) != 0 {
		return nil, ErrESP
	}
	return b[4:], nil
}

// AddNonESPMarker returns the datagram to send on port 4500 for an encoded
// IKE message.
func AddNonESPMarker(msg []byte) []byte {
	out := make([]byte, 4+len(msg))
	copy(out[4:], msg)
	return out
}
