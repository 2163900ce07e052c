package ikectl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/spugate/spugate/internal/packed"
)

// EncodingPacked is SAsRequest.Encoding for sas.list pages in the packed
// encoding (SAs.Packed): decoding an IKE SA with its Child SA from JSON
// costs spuctl ~15 µs (addresses, times and every field through
// reflection), 15 s for a million; a packed one takes a few hundred
// nanoseconds.
//
// A packed page is its IKE SAs one after the other, each a uvarint length
// and then its fields in the order AppendPackedIKESA writes them, its
// Child SAs each with a length of their own: integers as uvarints
// (varints where signed), strings as a uvarint length and the bytes,
// addresses with ports as a uvarint length and netip.AddrPort's binary
// form, times as 0 for the zero time or 1 and their Unix seconds and
// nanoseconds, a nil slice apart from an empty one by a count of 0 against
// n+1. A field added to IKESA or ChildSA goes at the end of its entry
// (TestPackedIKESACoversEveryField fails until it is): a decoder of an
// older build skips what follows the fields it knows; a change that an
// older decoder would misread takes a new name, which an older iked
// refuses.
const EncodingPacked = "packed1"

// EncodingPackedData is SAsRequest.Encoding for sas.list pages of packed
// IKE SAs sent as the reply's data (unixrpc.DataFrame), not as base64 in
// its JSON (SAs.Packed): the reply's body is an SAs with neither IKESAs
// nor Packed. An iked older than it refuses the encoding, and Client asks
// for EncodingPacked then.
const EncodingPackedData = "packed1-data"

// AppendPackedIKESA appends s in the packed encoding (EncodingPacked).
func AppendPackedIKESA(b []byte, s *IKESA) []byte {
	return packed.AppendEntry(b, func(b []byte) []byte {
		b = packed.AppendString(b, s.Conn)
		b = binary.AppendUvarint(b, uint64(s.UniqueID))
		b = packed.AppendString(b, s.State)
		b = packed.AppendBool(b, s.Initiator)
		b = packed.AppendString(b, s.SPIi)
		b = packed.AppendString(b, s.SPIr)
		b = appendAddrPort(b, s.Local)
		b = appendAddrPort(b, s.Remote)
		b = packed.AppendString(b, s.LocalID)
		b = packed.AppendString(b, s.RemoteID)
		b = packed.AppendString(b, s.Proposal)
		b = packed.AppendBool(b, s.NATLocal)
		b = packed.AppendBool(b, s.NATRemote)
		b = appendTime(b, s.Established)
		b = binary.AppendVarint(b, int64(s.RekeyIn))
		b = binary.AppendVarint(b, int64(s.Worker))
		b = binary.AppendVarint(b, int64(s.SPU))
		b = binary.AppendVarint(b, int64(s.Logical))
		b = packed.AppendCount(b, len(s.Children), s.Children == nil)
		for i := range s.Children {
			b = appendPackedChild(b, &s.Children[i])
		}
		b = binary.AppendUvarint(b, uint64(s.Counters.MsgIDOut))
		b = binary.AppendUvarint(b, uint64(s.Counters.MsgIDIn))
		b = packed.AppendString(b, s.AuthLocal)
		b = packed.AppendString(b, s.AuthRemote)
		return packed.AppendBool(b, s.Fragmentation)
	})
}

func appendPackedChild(b []byte, c *ChildSA) []byte {
	return packed.AppendEntry(b, func(b []byte) []byte {
		b = packed.AppendString(b, c.Name)
		b = binary.AppendUvarint(b, uint64(c.UniqueID))
		b = packed.AppendString(b, c.State)
		b = binary.AppendUvarint(b, uint64(c.ReqID))
		b = binary.AppendUvarint(b, uint64(c.SPIIn))
		b = binary.AppendUvarint(b, uint64(c.SPIOut))
		b = packed.AppendString(b, c.Suite)
		b = packed.AppendString(b, c.Proposal)
		b = packed.AppendBool(b, c.Encap)
		b = appendStrings(b, c.LocalTS)
		b = appendStrings(b, c.RemoteTS)
		b = appendTime(b, c.Installed)
		b = binary.AppendVarint(b, int64(c.RekeyIn))
		b = binary.AppendVarint(b, int64(c.ExpireIn))
		b = binary.AppendUvarint(b, c.BytesIn)
		b = binary.AppendUvarint(b, c.PacketsIn)
		b = binary.AppendUvarint(b, c.BytesOut)
		b = binary.AppendUvarint(b, c.PktsOut)
		b = binary.AppendVarint(b, int64(c.SPU))
		b = packed.AppendCount(b, len(c.Policies), c.Policies == nil)
		for _, p := range c.Policies {
			b = binary.AppendUvarint(b, uint64(p))
		}
		return packed.AppendBool(b, c.Trap)
	})
}

func appendStrings(b []byte, l []string) []byte {
	b = packed.AppendCount(b, len(l), l == nil)
	for _, s := range l {
		b = packed.AppendString(b, s)
	}
	return b
}

func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return append(b, 0)
	}
	// MarshalBinary's bytes, without its slice: the address's, then the
	// port's two.
	n := 4
	if ip := a.Addr(); !ip.Is4() {
		n = 16 + len(ip.Zone())
	}
	b = binary.AppendUvarint(b, uint64(n+2))
	b, _ = a.AppendBinary(b) // never fails
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// DecodePackedIKESAs appends to out the IKE SAs of a page in the packed
// encoding (SAs.Packed). A page's IKE SAs share their allocations: their
// strings are parts of one string of the page, their Child SAs, traffic
// selectors and policies come from arrays of the page, so that a page of
// thousands costs a few allocations, not a dozen per IKE SA.
func DecodePackedIKESAs(b []byte, out []IKESA) ([]IKESA, error) {
	return decodePage(b, out, false)
}

// decodePage is DecodePackedIKESAs; owned says that nothing else holds b
// nor ever writes it (a frame's buffer that Client read), so that the
// page's string may be b itself rather than a copy.
func decodePage(b []byte, out []IKESA, owned bool) ([]IKESA, error) {
	n := packed.Entries(b)
	out = slices.Grow(out, n)
	pg := &pageArena{page: b, children: make([]ChildSA, 0, n), strs: make([]string, 0, 2*n)}
	if owned && len(b) > 0 {
		pg.str = unsafe.String(&b[0], len(b))
	}
	d := packedReader{pg: pg}
	for i := 0; len(b) > 0; i++ {
		d.B, d.Err = b, nil
		e := d.Entry()
		if d.Err != nil {
			return out, fmt.Errorf("ikectl: packed IKE SA %d: %w", i, d.Err)
		}
		b = d.B
		d.B = e
		out = append(out, IKESA{})
		d.ikeSA(&out[len(out)-1])
		if d.Err != nil {
			return out[:len(out)-1], fmt.Errorf("ikectl: packed IKE SA %d: %w", i, d.Err)
		}
	}
	return out, nil
}

// pageArena is what a page's IKE SAs share.
type pageArena struct {
	page     []byte // the page, which every entry is a part of
	str      string // the page as a string, made at its first string
	children []ChildSA
	strs     []string
	policies []uint32
}

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros.
type packedReader struct {
	packed.Reader
	pg *pageArena
}

// string reads a string as a part of the page's string.
func (d *packedReader) string() string {
	b := d.Entry()
	if len(b) == 0 {
		return ""
	}
	// Every entry, and so b, is a part of the page: its offset there is
	// what their capacities (to the page's end) differ by.
	p := d.pg
	off := cap(p.page) - cap(b)
	if off < 0 || off+len(b) > len(p.page) {
		return string(b)
	}
	if p.str == "" {
		p.str = string(p.page)
	}
	return p.str[off : off+len(b)]
}

func (d *packedReader) strings() []string {
	n, isNil := d.Count()
	if isNil {
		return nil
	}
	p := d.pg
	if len(p.strs)+n > cap(p.strs) {
		// The IKE SAs before keep the array they have.
		p.strs = make([]string, 0, max(n, 2*cap(p.strs)))
	}
	at := len(p.strs)
	for range n {
		p.strs = append(p.strs, d.string())
	}
	return p.strs[at:len(p.strs):len(p.strs)]
}

func (d *packedReader) addrPort() netip.AddrPort {
	b := d.Entry()
	switch len(b) {
	case 0:
		return netip.AddrPort{}
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), binary.LittleEndian.Uint16(b[4:]))
	case 18:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b)), binary.LittleEndian.Uint16(b[16:]))
	}
	var a netip.AddrPort
	if err := a.UnmarshalBinary(b); err != nil && d.Err == nil {
		d.Err = err
	}
	return a
}

func (d *packedReader) time() time.Time {
	if !d.Bool() {
		return time.Time{}
	}
	sec := d.Varint()
	ns := d.Uvarint()
	if ns >= 1e9 {
		d.Fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(ns))
}

func (d *packedReader) ikeSA(s *IKESA) {
	s.Conn = d.string()
	s.UniqueID = d.U32()
	s.State = d.string()
	s.Initiator = d.Bool()
	s.SPIi = d.string()
	s.SPIr = d.string()
	s.Local = d.addrPort()
	s.Remote = d.addrPort()
	s.LocalID = d.string()
	s.RemoteID = d.string()
	s.Proposal = d.string()
	s.NATLocal = d.Bool()
	s.NATRemote = d.Bool()
	s.Established = d.time()
	s.RekeyIn = time.Duration(d.Varint())
	s.Worker = int(d.Varint())
	s.SPU = int(d.Varint())
	s.Logical = int(d.Varint())
	if n, isNil := d.Count(); !isNil {
		p := d.pg
		if len(p.children)+n > cap(p.children) {
			p.children = make([]ChildSA, 0, max(n, 2*cap(p.children)))
		}
		at := len(p.children)
		p.children = p.children[:at+n]
		s.Children = p.children[at : at+n : at+n]
		for i := range s.Children {
			e := d.Entry()
			if d.Err != nil {
				return
			}
			c := packedReader{Reader: packed.Reader{B: e}, pg: p}
			c.childSA(&s.Children[i])
			if c.Err != nil {
				d.Err = c.Err
				return
			}
		}
	}
	s.Counters.MsgIDOut = d.U32()
	s.Counters.MsgIDIn = d.U32()
	s.AuthLocal = d.string()
	s.AuthRemote = d.string()
	s.Fragmentation = d.Bool()
}

func (d *packedReader) childSA(c *ChildSA) {
	c.Name = d.string()
	c.UniqueID = d.U32()
	c.State = d.string()
	c.ReqID = d.U32()
	c.SPIIn = d.U32()
	c.SPIOut = d.U32()
	c.Suite = d.string()
	c.Proposal = d.string()
	c.Encap = d.Bool()
	c.LocalTS = d.strings()
	c.RemoteTS = d.strings()
	c.Installed = d.time()
	c.RekeyIn = time.Duration(d.Varint())
	c.ExpireIn = time.Duration(d.Varint())
	c.BytesIn = d.Uvarint()
	c.PacketsIn = d.Uvarint()
	c.BytesOut = d.Uvarint()
	c.PktsOut = d.Uvarint()
	c.SPU = int(d.Varint())
	if n, isNil := d.Count(); !isNil {
		p := d.pg
		if p.policies == nil || len(p.policies)+n > cap(p.policies) {
			p.policies = make([]uint32, 0, max(n, 64, 2*cap(p.policies)))
		}
		at := len(p.policies)
		for range n {
			p.policies = append(p.policies, d.U32())
		}
		c.Policies = p.policies[at:len(p.policies):len(p.policies)]
	}
	c.Trap = d.Bool()
}
