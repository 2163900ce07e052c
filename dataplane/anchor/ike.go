package anchor

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// An IKE SA is anchored on one logical SPU of its own, rather than on the
// hash of its endpoints alone, so that many IKE SAs between the same two
// addresses (a load generator, sites behind one carrier NAT) spread over
// every SPU. Its Child SAs and their policies are anchored on the same
// logical SPU. Every IKE datagram names that SPU with no lookup:
//
//   - An IKE_SA_INIT request (responder SPI zero) is anchored on
//     SipHash-2-4(hash key, anchor key ‖ initiator SPI) mod L (LogicalFirst):
//     keyed, so a peer cannot choose SPIs that pile IKE SAs onto one SPU;
//     retransmissions carry the same SPI and land on the same SPU.
//   - Every other datagram carries the SPI this side chose, whose top bits
//     hold the logical SPU (SPICodec.EncodeIKE): the responder SPI when the
//     sender is the original initiator (the I flag is set), else the
//     initiator SPI.
//
// The SO_REUSEPORT selector (bpf/reuseport.c) runs the same rule in the
// kernel; IKELogical is it in Go, for iked's hand-off when the selector
// could not choose and for the test that compares the two.

// ikeHeaderLen is the fixed IKE header (RFC 7296, section 3.1).
const ikeHeaderLen = 28

// ikeFlagInitiator is the I(nitiator) bit of the header's flags: set in
// every message the original initiator of the IKE SA sends.
const ikeFlagInitiator = 0x08

// EncodeIKE returns the IKE SPI with logical in its top bits (as Encode
// places it in an ESP SPI's top 32) and the low bits of low below. It fails
// if logical is out of range or the SPI's top 32 bits would be zero: a
// datagram on the NAT-T port that starts with four zero bytes is read as
// carrying the non-ESP marker, so no SPI of ours may start so.
func (c SPICodec) EncodeIKE(logical uint16, low uint64) (uint64, error) {
	if uint(logical) >= 1<<c.bits {
		return 0, fmt.Errorf("anchor: logical SPU %d out of range for %d logical SPUs", logical, 1<<c.bits)
	}
	spi := low
	if c.bits > 0 {
		spi = uint64(logical)<<(64-c.bits) | low&(1<<(64-c.bits)-1)
	}
	if spi>>32 == 0 {
		return 0, fmt.Errorf("anchor: IKE spi 0x%016x has its top 32 bits zero", spi)
	}
	return spi, nil
}

// LogicalIKE returns the logical SPU an IKE SPI of ours encodes.
func (c SPICodec) LogicalIKE(spi uint64) uint16 {
	return c.Logical(uint32(spi >> 32))
}

// AllocateIKE draws a random IKE SPI for logical from r (crypto/rand if
// nil). IKE SPIs are 64 bits: a collision with another IKE SA is left to
// the caller's table, as with any random SPI.
func (c SPICodec) AllocateIKE(logical uint16, r io.Reader) (uint64, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [8]byte
	for range spiAttempts {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("anchor: read random IKE SPI: %w", err)
		}
		spi, err := c.EncodeIKE(logical, binary.BigEndian.Uint64(b[:]))
		if err == nil {
			return spi, nil
		}
		if uint(logical) >= 1<<c.bits {
			return 0, err
		}
	}
	return 0, fmt.Errorf("anchor: no IKE SPI for logical SPU %d after %d draws", logical, spiAttempts)
}

// Codec returns the SPI codec of the function's L, which must be a power
// of two for SPIs to carry a logical SPU.
func (f *Function) Codec() (SPICodec, error) { return NewSPICodec(f.L()) }

// LogicalFirst returns the logical SPU of a new IKE SA between local and
// remote whose initiator chose the SPI spiI: SipHash-2-4 of the anchor key
// followed by the SPI's eight bytes as they travel (big-endian), mod L. It
// does not allocate.
func (f *Function) LogicalFirst(local, remote netip.Addr, spiI uint64) uint16 {
	if f.l == 0 {
		return 0
	}
	k := NewKey(local, remote)
	k0, k1 := f.key.Words()
	s := newSipState(k0, k1)
	s.compress(binary.LittleEndian.Uint64(k[0:8]))
	s.compress(binary.LittleEndian.Uint64(k[8:16]))
	s.compress(binary.LittleEndian.Uint64(k[16:24]))
	s.compress(binary.LittleEndian.Uint64(k[24:32]))
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], spiI)
	s.compress(binary.LittleEndian.Uint64(w[:]))
	s.compress(40 << 56)
	return uint16(s.finish() % f.l)
}

// Datagram classes of IKELogical, as the selector counts them.
const (
	ByResponderSPI = iota // the responder SPI, ours (the sender is the initiator)
	ByInitiatorSPI        // the initiator SPI, ours (the sender is the responder)
	ByFirstContact        // IKE_SA_INIT request: the hash with the initiator's SPI
	ByAddresses           // not an IKE header: the endpoints' hash
)

// IKELogical returns the logical SPU of an IKE datagram between local and
// remote, whose UDP payload is payload, and which rule chose it (By...).
// natt says the datagram came to the NAT-T port, where IKE follows four
// zero bytes (RFC 3948); anything else there (ESP in UDP, keepalives) and
// anything too short for an IKE header is anchored by the endpoints. It
// does not allocate.
func (f *Function) IKELogical(c SPICodec, local, remote netip.Addr, payload []byte, natt bool) (logical uint16, by int) {
	p := payload
	if natt {
		if len(p) < 4 || binary.BigEndian.Uint32(p) != 0 {
			return f.Logical(local, remote), ByAddresses
		}
		p = p[4:]
	}
	if len(p) < ikeHeaderLen {
		return f.Logical(local, remote), ByAddresses
	}
	spiI := binary.BigEndian.Uint64(p[0:8])
	spiR := binary.BigEndian.Uint64(p[8:16])
	if p[19]&ikeFlagInitiator != 0 {
		if spiR != 0 {
			return c.LogicalIKE(spiR), ByResponderSPI
		}
		if spiI != 0 {
			return f.LogicalFirst(local, remote, spiI), ByFirstContact
		}
	} else if spiI != 0 {
		return c.LogicalIKE(spiI), ByInitiatorSPI
	}
	return f.Logical(local, remote), ByAddresses
}
