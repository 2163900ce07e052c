package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MetaSize is the size of the metadata the steering program writes just
// before every frame it redirects (struct spugate_meta).
const MetaSize = 20

// MetaMagic opens the metadata, so that userspace can tell it is there
// (SPUGATE_META_MAGIC, the bytes "SPG1"). It changes with the layout.
const MetaMagic = 0x31475053

// Class is what the steering program found a redirected frame to be.
type Class uint8

// The classes of enum spugate_class.
const (
	ClassNone        Class = 0 // not steered: the program never writes it in Meta
	ClassESP         Class = 1 // IP protocol 50 to a local tunnel endpoint
	ClassUDPESP      Class = 2 // ESP in UDP 4500 (RFC 3948) to a local endpoint
	ClassCleartext   Class = 3 // matched the SPD on a protected interface
	ClassESPFragment Class = 4 // an IP fragment of an ESP packet, to reassemble
)

var classNames = [...]string{"none", "esp", "udp-esp", "cleartext", "esp-fragment"}

// String is the class's name in logs ("udp-esp"), or "class(N)" for a
// value the program does not write.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// MetaFlags are the SPUGATE_META_* bits.
type MetaFlags uint8

// The bits of MetaFlags, as bpf/include/spugate.h defines them: what the
// program saw of the outer headers, so that the reader need not look again.
const (
	FlagIPv6      MetaFlags = 0x01 // the outer header is IPv6
	FlagVLAN      MetaFlags = 0x02 // one 802.1Q tag follows the MAC addresses
	FlagIPOptions MetaFlags = 0x04 // IPv4 options or IPv6 extension headers
	FlagFragment  MetaFlags = 0x08 // the packet is an IP fragment
)

// Meta is the steering program's note in front of a redirected frame.
//
// Layout (20 bytes, host byte order, which is little-endian: the program
// and its reader run on one machine):
//
//	offset size field
//	     0    4 magic         MetaMagic
//	     4    2 logical SPU   the anchor, < L
//	     6    2 physical SPU  spu_map[logical] when the frame was steered
//	     8    4 policy id     cleartext: the SPD policy that matched; else 0
//	    12    2 L3 offset     the IP header: 14, or 18 after an 802.1Q tag
//	    14    2 L4 offset     the first byte after the IP header chain
//	                          (the ESP header for ESP, the UDP header for
//	                          UDP-ESP, the fragment data for fragments)
//	    16    2 rx queue      the queue the frame arrived on
//	    18    1 class         Class
//	    19    1 flags         MetaFlags
type Meta struct {
	LogicalSPU  uint16
	PhysicalSPU uint16
	PolicyID    uint32
	L3Offset    uint16
	L4Offset    uint16
	RxQueue     uint16
	Class       Class
	Flags       MetaFlags
}

// Errors of ParseMeta. They are values, so the per-packet path allocates
// nothing.
var (
	ErrMetaShort = errors.New("steer: metadata: fewer than 20 bytes before the frame")
	ErrNoMeta    = errors.New("steer: metadata: no magic: the frame did not come through the steering program")
	ErrBadMeta   = errors.New("steer: metadata: inconsistent class or offsets")
)

// ParseMeta reads the metadata from the last MetaSize bytes of b, which
// are the bytes just before the frame (in an AF_XDP UMEM in copy mode:
// umem[addr-MetaSize : addr] for a descriptor at addr). It checks the magic
// and that class and offsets make sense, and allocates nothing.
//
// The magic tells a frame the program wrote from one it did not; it cannot
// tell this frame's metadata from a previous frame's left in the same UMEM
// chunk, so a reader that may see frames from elsewhere (another XDP
// program) should clear the magic before recycling the chunk.
func ParseMeta(b []byte) (Meta, error) {
	if len(b) < MetaSize {
		return Meta{}, ErrMetaShort
	}
	b = b[len(b)-MetaSize:]
	if binary.LittleEndian.Uint32(b[0:4]) != MetaMagic {
		return Meta{}, ErrNoMeta
	}
	m := Meta{
		LogicalSPU:  binary.LittleEndian.Uint16(b[4:6]),
		PhysicalSPU: binary.LittleEndian.Uint16(b[6:8]),
		PolicyID:    binary.LittleEndian.Uint32(b[8:12]),
		L3Offset:    binary.LittleEndian.Uint16(b[12:14]),
		L4Offset:    binary.LittleEndian.Uint16(b[14:16]),
		RxQueue:     binary.LittleEndian.Uint16(b[16:18]),
		Class:       Class(b[18]),
		Flags:       MetaFlags(b[19]),
	}
	if m.Class == ClassNone || m.Class > ClassESPFragment {
		return Meta{}, ErrBadMeta
	}
	wantL3 := uint16(14)
	if m.Flags&FlagVLAN != 0 {
		wantL3 = 18
	}
	minIP := uint16(20)
	if m.Flags&FlagIPv6 != 0 {
		minIP = 40
	}
	if m.L3Offset != wantL3 || m.L4Offset < m.L3Offset+minIP {
		return Meta{}, ErrBadMeta
	}
	return m, nil
}

// Put writes m with the magic into the first MetaSize bytes of b, as the
// steering program would; for tests and fakes of the AF_XDP path.
func (m *Meta) Put(b []byte) {
	_ = b[MetaSize-1]
	binary.LittleEndian.PutUint32(b[0:4], MetaMagic)
	binary.LittleEndian.PutUint16(b[4:6], m.LogicalSPU)
	binary.LittleEndian.PutUint16(b[6:8], m.PhysicalSPU)
	binary.LittleEndian.PutUint32(b[8:12], m.PolicyID)
	binary.LittleEndian.PutUint16(b[12:14], m.L3Offset)
	binary.LittleEndian.PutUint16(b[14:16], m.L4Offset)
	binary.LittleEndian.PutUint16(b[16:18], m.RxQueue)
	b[18] = byte(m.Class)
	b[19] = byte(m.Flags)
}
