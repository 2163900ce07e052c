package steer

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"golang.org/x/sys/unix"
)

// ErrNotSteered is Classify's answer for a frame the steering program would
// have passed to the kernel: unparsable, IKE, link-local, no policy, or a
// policy or local address that changed since the program saw the frame.
var ErrNotSteered = errors.New("steer: classify: the steering program would not have redirected this frame")

// Lookups are the steering program's tables, as Classify reads them.
type Lookups interface {
	// IsLocal reports whether a (16 bytes, IPv4 as v4-mapped) is a local
	// tunnel endpoint (AddLocalAddr).
	IsLocal(a [16]byte) bool
	// Policy is the SPD's two-stage lookup of the program (spd_lookup):
	// the policy of (ifindex, destination) then (group, source).
	Policy(ifindex uint32, src, dst [16]byte, is6 bool) (id uint32, logical uint16, flags uint16, ok bool)
}

// Classify derives, for a frame the program redirected without metadata
// (CarrierNone), the Meta it would have written: the same parse, the same
// anchor (ESP and UDP-ESP by their SPI, ESP fragments by the outer
// addresses, cleartext by its policy's) and the same SPD lookup, done in Go, with the program's tables as
// lk holds them. It allocates nothing. queue is the rx queue the frame
// came on; PhysicalSPU stays 0 (the reader maps the logical SPU itself).
func Classify(frame []byte, ifindex uint32, queue int, fn *anchor.Function, lk Lookups) (Meta, error) {
	var p parsed
	if !p.parse(frame) {
		return Meta{}, ErrNotSteered
	}
	m := Meta{L3Offset: uint16(p.l3), L4Offset: uint16(p.l4), RxQueue: uint16(queue), Flags: p.flags}
	if lk.IsLocal(p.dst) {
		switch p.proto {
		case protoESP:
			m.Class = ClassESP
			if p.fragment {
				m.Class = ClassESPFragment
			} else if p.l4+8 > p.l3end {
				return Meta{}, ErrNotSteered
			}
		case protoUDP:
			m.Class = p.udpClass(frame)
		}
		switch m.Class {
		case ClassNone:
		case ClassESP:
			m.LogicalSPU = fn.LogicalSPI(binary.BigEndian.Uint32(frame[p.l4:]))
			return m, nil
		case ClassUDPESP:
			m.LogicalSPU = fn.LogicalSPI(binary.BigEndian.Uint32(frame[p.l4+8:]))
			return m, nil
		case ClassESPFragment:
			m.LogicalSPU = outerLogical(fn, &p)
			return m, nil
		default: // IKE and the like: the kernel's
			return Meta{}, ErrNotSteered
		}
	}
	if p.localScope() {
		return Meta{}, ErrNotSteered
	}
	id, logical, flags, ok := lk.Policy(ifindex, p.src, p.dst, p.flags&FlagIPv6 != 0)
	if !ok || flags&policyBypass != 0 {
		return Meta{}, ErrNotSteered
	}
	if l := fn.L(); l > 0 && int(logical) >= l {
		logical %= uint16(l)
	}
	m.Class, m.LogicalSPU, m.PolicyID = ClassCleartext, logical, id
	return m, nil
}

// classKernel is udpClass's verdict for UDP the kernel takes (IKE, NAT
// keepalives, malformed); ClassNone means not ours at all.
const classKernel Class = 0xff

const (
	protoUDP      = 17
	protoESP      = 50
	ipv4MF        = 0x2000
	ipv4Offset    = 0x1fff
	ipv6FragOff   = 0xfff8
	ipv6FragMF    = 0x0001
	ipv6MaxExtHdr = 8
)

// parsed is what the program's parse() learns, offsets from the frame start.
type parsed struct {
	src, dst [16]byte
	l3, l4   int
	l3end    int
	proto    uint8
	flags    MetaFlags
	fragment bool
}

func (p *parsed) parse(b []byte) bool {
	if len(b) < 14 {
		return false
	}
	off := 14
	et := binary.BigEndian.Uint16(b[12:14])
	if et == 0x8100 {
		if len(b) < 18 {
			return false
		}
		et = binary.BigEndian.Uint16(b[16:18])
		off = 18
		p.flags |= FlagVLAN
	}
	p.l3 = off
	switch et {
	case 0x0800:
		return p.parse4(b, off)
	case 0x86dd:
		return p.parse6(b, off)
	}
	return false
}

func (p *parsed) parse4(b []byte, off int) bool {
	if off+20 > len(b) || b[off]>>4 != 4 {
		return false
	}
	ihl := int(b[off]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(b[off+2:]))
	if ihl < 20 || tot < ihl || off+tot > len(b) {
		return false
	}
	p.src = netip.AddrFrom4([4]byte(b[off+12 : off+16])).As16()
	p.dst = netip.AddrFrom4([4]byte(b[off+16 : off+20])).As16()
	p.proto = b[off+9]
	p.l4 = off + ihl
	p.l3end = off + tot
	if ihl > 20 {
		p.flags |= FlagIPOptions
	}
	if binary.BigEndian.Uint16(b[off+6:])&(ipv4MF|ipv4Offset) != 0 {
		p.fragment = true
		p.flags |= FlagFragment
	}
	return true
}

func (p *parsed) parse6(b []byte, off int) bool {
	if off+40 > len(b) || b[off]>>4 != 6 {
		return false
	}
	plen := int(binary.BigEndian.Uint16(b[off+4:]))
	end := off + 40 + plen
	if plen == 0 || end > len(b) {
		return false
	}
	copy(p.src[:], b[off+8:off+24])
	copy(p.dst[:], b[off+24:off+40])
	p.flags |= FlagIPv6
	p.l3end = end
	nh := b[off+6]
	h := off + 40
	i := 0
	for ; i < ipv6MaxExtHdr; i++ {
		switch nh {
		case unix.IPPROTO_HOPOPTS, unix.IPPROTO_ROUTING, unix.IPPROTO_DSTOPTS:
			if h+2 > len(b) {
				return false
			}
			nh = b[h]
			h += (int(b[h+1]) + 1) * 8
		case unix.IPPROTO_FRAGMENT:
			if h+8 > len(b) {
				return false
			}
			nh = b[h]
			fo := binary.BigEndian.Uint16(b[h+2:])
			h += 8
			// Offset 0 without M is an atomic fragment: a whole packet.
			if fo&(ipv6FragOff|ipv6FragMF) != 0 {
				p.fragment = true
				p.flags |= FlagFragment
			}
			// After a non-first fragment's header comes data, not headers.
			if fo&ipv6FragOff != 0 {
				p.flags |= FlagIPOptions
				return p.done6(nh, h)
			}
		default:
			return p.done6(nh, h)
		}
		p.flags |= FlagIPOptions
		if h > p.l3end {
			return false
		}
	}
	switch nh {
	case unix.IPPROTO_HOPOPTS, unix.IPPROTO_ROUTING, unix.IPPROTO_DSTOPTS, unix.IPPROTO_FRAGMENT:
		return false
	}
	return p.done6(nh, h)
}

func (p *parsed) done6(nh uint8, h int) bool {
	if h > p.l3end {
		return false
	}
	p.proto, p.l4 = nh, h
	return true
}

// udpClass is the program's udp(): UDP-ESP to port 4500, the kernel's
// for IKE, markers, keepalives and anything malformed, ClassNone for other
// ports (which the SPD may still claim).
func (p *parsed) udpClass(b []byte) Class {
	if p.fragment || p.l4+8 > p.l3end {
		return classKernel
	}
	ulen := int(binary.BigEndian.Uint16(b[p.l4+4:]))
	if ulen < 8 || p.l4+ulen > p.l3end {
		return classKernel
	}
	switch binary.BigEndian.Uint16(b[p.l4+2:]) {
	case 500:
		return classKernel
	case 4500:
	default:
		return ClassNone
	}
	pl := ulen - 8
	// Keepalives (one byte), the non-ESP marker (four zero bytes) and
	// anything shorter than an ESP header are the kernel's.
	if pl < 8 || binary.LittleEndian.Uint32(b[p.l4+8:]) == 0 {
		return classKernel
	}
	return ClassUDPESP
}

// localScope is the program's local_scope(): link-local, multicast and
// broadcast are never steered.
func (p *parsed) localScope() bool {
	if p.flags&FlagIPv6 != 0 {
		return p.dst[0] == 0xff || (p.dst[0] == 0xfe && p.dst[1]&0xc0 == 0x80) ||
			(p.src[0] == 0xfe && p.src[1]&0xc0 == 0x80)
	}
	d, s := p.dst[12:], p.src[12:]
	return d[0]>>4 == 0xe || (d[0] == 0xff && d[1] == 0xff && d[2] == 0xff && d[3] == 0xff) ||
		(d[0] == 169 && d[1] == 254) || (s[0] == 169 && s[1] == 254)
}

func outerLogical(fn *anchor.Function, p *parsed) uint16 {
	return fn.Logical(netip.AddrFrom16(p.src), netip.AddrFrom16(p.dst))
}

// A Classifier is Classify over a Program's own tables and anchor
// configuration. It owns the scratch memory of its map lookups, so it
// belongs to one goroutine (one per SPU); any number may exist.
type Classifier struct {
	p *Program
	// The SPD answers of recent (interface, source, destination)s: two
	// bpf(2) lookups cost about a microsecond, a map lookup a few tens of
	// nanoseconds. Emptied when the Program's SPD changes (spdGen) and
	// when full, so it never grows past classifierCacheSize entries.
	cache map[spdKey]spdAnswer
	gen   uint64
	k4    lpmKey4
	k6    lpmKey6
	group uint32
	pol   policyValue
	attr  mapLookupAttr
}

// classifierCacheSize bounds each Classifier's SPD cache (about 90 bytes an
// entry: some 360 KiB per SPU).
const classifierCacheSize = 4096

type spdKey struct {
	ifindex  uint32
	src, dst [16]byte
}

type spdAnswer struct {
	id             uint32
	logical, flags uint16
	ok             bool
}

// NewClassifier returns a Classifier for one goroutine.
func (p *Program) NewClassifier() *Classifier {
	return &Classifier{p: p, cache: make(map[spdKey]spdAnswer, classifierCacheSize)}
}

// Classify is the package's Classify with the program's tables; ErrNotSteered
// before SetConfig. It allocates nothing, and costs two bpf(2) map lookups
// for cleartext whose addresses are not in its cache.
func (c *Classifier) Classify(frame []byte, ifindex uint32, queue int) (Meta, error) {
	fn := c.p.fn.Load()
	if fn == nil {
		return Meta{}, ErrNotSteered
	}
	return Classify(frame, ifindex, queue, fn, c)
}

// IsLocal reads the Program's copy of local_addrs.
func (c *Classifier) IsLocal(a [16]byte) bool {
	m := c.p.local.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a]
	return ok
}

// Policy answers as spd_lookup does, from the cache or the SPD maps.
func (c *Classifier) Policy(ifindex uint32, src, dst [16]byte, is6 bool) (uint32, uint16, uint16, bool) {
	if gen := c.p.spdGen.Load(); gen != c.gen || len(c.cache) >= classifierCacheSize {
		clear(c.cache)
		c.gen = gen
	}
	k := spdKey{ifindex, src, dst}
	if a, ok := c.cache[k]; ok {
		return a.id, a.logical, a.flags, a.ok
	}
	var a spdAnswer
	a.id, a.logical, a.flags, a.ok = c.lookupPolicy(ifindex, src, dst, is6)
	c.cache[k] = a
	return a.id, a.logical, a.flags, a.ok
}

// lookupPolicy reads the SPD maps as spd_lookup does.
func (c *Classifier) lookupPolicy(ifindex uint32, src, dst [16]byte, is6 bool) (uint32, uint16, uint16, bool) {
	m := &c.p.maps
	if is6 {
		c.k6 = lpmKey6{prefixlen: 32 + 128, id: ifindex, addr: dst}
		if !c.lookup(m.Spd6Dst, unsafe.Pointer(&c.k6), unsafe.Pointer(&c.group)) {
			return 0, 0, 0, false
		}
		c.k6 = lpmKey6{prefixlen: 32 + 128, id: c.group, addr: src}
		if !c.lookup(m.Spd6Src, unsafe.Pointer(&c.k6), unsafe.Pointer(&c.pol)) {
			return 0, 0, 0, false
		}
	} else {
		c.k4 = lpmKey4{prefixlen: 32 + 32, id: ifindex, addr: [4]byte(dst[12:16])}
		if !c.lookup(m.Spd4Dst, unsafe.Pointer(&c.k4), unsafe.Pointer(&c.group)) {
			return 0, 0, 0, false
		}
		c.k4 = lpmKey4{prefixlen: 32 + 32, id: c.group, addr: [4]byte(src[12:16])}
		if !c.lookup(m.Spd4Src, unsafe.Pointer(&c.k4), unsafe.Pointer(&c.pol)) {
			return 0, 0, 0, false
		}
	}
	return c.pol.id, c.pol.logical, c.pol.flags, true
}

// lpmKey4 and lpmKey6 are struct spugate_spd{4,6}_{dst,src}_key.
type lpmKey4 struct {
	prefixlen uint32
	id        uint32
	addr      [4]byte
}

type lpmKey6 struct {
	prefixlen uint32
	id        uint32
	addr      [16]byte
}

// policyValue is struct spugate_policy.
type policyValue struct {
	id      uint32
	logical uint16
	flags   uint16
}

// mapLookupAttr is the BPF_MAP_LOOKUP_ELEM part of union bpf_attr.
type mapLookupAttr struct {
	mapFD uint32
	_     uint32
	key   uint64
	value uint64
	flags uint64
}

const bpfMapLookupElem = 1 // BPF_MAP_LOOKUP_ELEM

// lookup looks key up in m into value with the bpf syscall itself:
// cilium/ebpf's Lookup marshals through interfaces, which allocates, and
// this runs per packet. key and value point into c, on the heap, where the
// garbage collector never moves them while the kernel reads the addresses.
func (c *Classifier) lookup(m *ebpf.Map, key, value unsafe.Pointer) bool {
	c.attr = mapLookupAttr{mapFD: uint32(m.FD()), key: uint64(uintptr(key)), value: uint64(uintptr(value))}
	_, _, e := unix.Syscall(unix.SYS_BPF, bpfMapLookupElem, uintptr(unsafe.Pointer(&c.attr)), unsafe.Sizeof(c.attr))
	return e == 0
}
