package traffic

import (
	"encoding/binary"
	"errors"
)

// PayloadLen is the size of the header the generator writes at the start
// of every UDP payload: marker (2), flow (2), sequence (6), time (8). It is
// what fits in a 60-byte frame (64 with the FCS) after Ethernet, IPv4 and
// UDP headers.
const PayloadLen = 18

// Marker starts every payload, so that the sink tells its packets from
// anything else sent to its port.
const Marker = 0x5b9e

// MaxSeq is the largest sequence number a payload carries (48 bits).
const MaxSeq = 1<<48 - 1

// Payload is the decoded header of a benchmark packet.
type Payload struct {
	Flow uint16
	Seq  uint64 // 48 bits
	Time int64  // Clock nanoseconds when the generator sent it
}

// Put writes p into b, which must hold PayloadLen bytes.
func (p Payload) Put(b []byte) {
	_ = b[PayloadLen-1]
	binary.BigEndian.PutUint16(b[0:], Marker)
	binary.BigEndian.PutUint16(b[2:], p.Flow)
	binary.BigEndian.PutUint16(b[4:], uint16(p.Seq>>32))
	binary.BigEndian.PutUint32(b[6:], uint32(p.Seq))
	binary.BigEndian.PutUint64(b[10:], uint64(p.Time))
}

// Errors of ParsePayload.
var (
	ErrShortPayload = errors.New("traffic: payload shorter than 18 bytes")
	ErrNoMarker     = errors.New("traffic: payload without the benchmark marker")
)

// ParsePayload decodes the header at the start of b.
func ParsePayload(b []byte) (Payload, error) {
	if len(b) < PayloadLen {
		return Payload{}, ErrShortPayload
	}
	if binary.BigEndian.Uint16(b[0:]) != Marker {
		return Payload{}, ErrNoMarker
	}
	return Payload{
		Flow: binary.BigEndian.Uint16(b[2:]),
		Seq:  uint64(binary.BigEndian.Uint16(b[4:]))<<32 | uint64(binary.BigEndian.Uint32(b[6:])),
		Time: int64(binary.BigEndian.Uint64(b[10:])),
	}, nil
}
