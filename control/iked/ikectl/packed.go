package ikectl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
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

var errPackedShort = errors.New("truncated")

// AppendPackedIKESA appends s in the packed encoding (EncodingPacked).
func AppendPackedIKESA(b []byte, s *IKESA) []byte {
	return appendEntry(b, func(b []byte) []byte {
		b = appendString(b, s.Conn)
		b = binary.AppendUvarint(b, uint64(s.UniqueID))
		b = appendString(b, s.State)
		b = appendBool(b, s.Initiator)
		b = appendString(b, s.SPIi)
		b = appendString(b, s.SPIr)
		b = appendAddrPort(b, s.Local)
		b = appendAddrPort(b, s.Remote)
		b = appendString(b, s.LocalID)
		b = appendString(b, s.RemoteID)
		b = appendString(b, s.Proposal)
		b = appendBool(b, s.NATLocal)
		b = appendBool(b, s.NATRemote)
		b = appendTime(b, s.Established)
		b = binary.AppendVarint(b, int64(s.RekeyIn))
		b = binary.AppendVarint(b, int64(s.Worker))
		b = binary.AppendVarint(b, int64(s.SPU))
		b = binary.AppendVarint(b, int64(s.Logical))
		b = appendCount(b, len(s.Children), s.Children == nil)
		for i := range s.Children {
			b = appendPackedChild(b, &s.Children[i])
		}
		b = binary.AppendUvarint(b, uint64(s.Counters.MsgIDOut))
		b = binary.AppendUvarint(b, uint64(s.Counters.MsgIDIn))
		b = appendString(b, s.AuthLocal)
		b = appendString(b, s.AuthRemote)
		return appendBool(b, s.Fragmentation)
	})
}

func appendPackedChild(b []byte, c *ChildSA) []byte {
	return appendEntry(b, func(b []byte) []byte {
		b = appendString(b, c.Name)
		b = binary.AppendUvarint(b, uint64(c.UniqueID))
		b = appendString(b, c.State)
		b = binary.AppendUvarint(b, uint64(c.ReqID))
		b = binary.AppendUvarint(b, uint64(c.SPIIn))
		b = binary.AppendUvarint(b, uint64(c.SPIOut))
		b = appendString(b, c.Suite)
		b = appendString(b, c.Proposal)
		b = appendBool(b, c.Encap)
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
		b = appendCount(b, len(c.Policies), c.Policies == nil)
		for _, p := range c.Policies {
			b = binary.AppendUvarint(b, uint64(p))
		}
		return appendBool(b, c.Trap)
	})
}

// appendEntry appends what fields writes behind its length. The length is
// not known before: room for a short one, moved once if it is longer.
func appendEntry(b []byte, fields func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0)
	b = fields(b)
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	b = append(b, l[:k-1]...)
	copy(b[start+k:], b[start+1:start+1+n])
	copy(b[start:], l[:k])
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, l []string) []byte {
	b = appendCount(b, len(l), l == nil)
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

func appendCount(b []byte, n int, isNil bool) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return append(b, 0)
	}
	v, _ := a.MarshalBinary()
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
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
// encoding (SAs.Packed).
func DecodePackedIKESAs(b []byte, out []IKESA) ([]IKESA, error) {
	d := packedReader{strs: map[string]string{}}
	for i := 0; len(b) > 0; i++ {
		d.b, d.err = b, nil
		e := d.entry()
		if d.err != nil {
			return out, fmt.Errorf("ikectl: packed IKE SA %d: %w", i, d.err)
		}
		b = d.b
		d.b = e
		out = append(out, IKESA{})
		d.ikeSA(&out[len(out)-1])
		if d.err != nil {
			return out[:len(out)-1], fmt.Errorf("ikectl: packed IKE SA %d: %w", i, d.err)
		}
	}
	return out, nil
}

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros.
type packedReader struct {
	b   []byte
	err error
	// strs keeps one copy of each short string of a page (states,
	// connection names, proposals, identities), which repeat.
	strs map[string]string
}

// entry reads a length and returns that many bytes, what follows it left
// in d.b.
func (d *packedReader) entry() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	e := d.b[:n]
	d.b = d.b[n:]
	return e
}

func (d *packedReader) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *packedReader) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *packedReader) fail() {
	if d.err == nil {
		d.err = errPackedShort
	}
	d.b = nil
}

func (d *packedReader) bool() bool {
	if len(d.b) == 0 {
		d.fail()
		return false
	}
	v := d.b[0] != 0
	d.b = d.b[1:]
	return v
}

func (d *packedReader) u32() uint32 {
	v := d.uvarint()
	if v > 0xffffffff {
		d.fail()
	}
	return uint32(v)
}

// maxInterned bounds the strings a page's reader keeps.
const maxInterned = 1024

func (d *packedReader) string() string {
	b := d.entry()
	if len(b) > 64 {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.strs) < maxInterned {
		d.strs[s] = s
	}
	return s
}

// unique reads a string that no other entry shares (an SPI).
func (d *packedReader) unique() string { return string(d.entry()) }

// count reads a count written as n+1, 0 for nil; it is bounded by the
// bytes left (every element takes one at least).
func (d *packedReader) count() (n int, isNil bool) {
	c := d.uvarint()
	if c == 0 {
		return 0, true
	}
	if c-1 > uint64(len(d.b)) {
		d.fail()
		return 0, true
	}
	return int(c - 1), false
}

func (d *packedReader) strings() []string {
	n, isNil := d.count()
	if isNil {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

func (d *packedReader) addrPort() netip.AddrPort {
	var a netip.AddrPort
	b := d.entry()
	if len(b) == 0 {
		return a
	}
	if err := a.UnmarshalBinary(b); err != nil && d.err == nil {
		d.err = err
	}
	return a
}

func (d *packedReader) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	sec := d.varint()
	ns := d.uvarint()
	if ns >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(ns))
}

func (d *packedReader) ikeSA(s *IKESA) {
	s.Conn = d.string()
	s.UniqueID = d.u32()
	s.State = d.string()
	s.Initiator = d.bool()
	s.SPIi = d.unique()
	s.SPIr = d.unique()
	s.Local = d.addrPort()
	s.Remote = d.addrPort()
	s.LocalID = d.string()
	s.RemoteID = d.string()
	s.Proposal = d.string()
	s.NATLocal = d.bool()
	s.NATRemote = d.bool()
	s.Established = d.time()
	s.RekeyIn = time.Duration(d.varint())
	s.Worker = int(d.varint())
	s.SPU = int(d.varint())
	s.Logical = int(d.varint())
	if n, isNil := d.count(); !isNil {
		s.Children = make([]ChildSA, n)
		for i := range s.Children {
			e := d.entry()
			if d.err != nil {
				return
			}
			c := packedReader{b: e, strs: d.strs}
			c.childSA(&s.Children[i])
			if c.err != nil {
				d.err = c.err
				return
			}
		}
	}
	s.Counters.MsgIDOut = d.u32()
	s.Counters.MsgIDIn = d.u32()
	s.AuthLocal = d.string()
	s.AuthRemote = d.string()
	s.Fragmentation = d.bool()
}

func (d *packedReader) childSA(c *ChildSA) {
	c.Name = d.string()
	c.UniqueID = d.u32()
	c.State = d.string()
	c.ReqID = d.u32()
	c.SPIIn = d.u32()
	c.SPIOut = d.u32()
	c.Suite = d.string()
	c.Proposal = d.string()
	c.Encap = d.bool()
	c.LocalTS = d.strings()
	c.RemoteTS = d.strings()
	c.Installed = d.time()
	c.RekeyIn = time.Duration(d.varint())
	c.ExpireIn = time.Duration(d.varint())
	c.BytesIn = d.uvarint()
	c.PacketsIn = d.uvarint()
	c.BytesOut = d.uvarint()
	c.PktsOut = d.uvarint()
	c.SPU = int(d.varint())
	if n, isNil := d.count(); !isNil {
		c.Policies = make([]uint32, n)
		for i := range c.Policies {
			c.Policies[i] = d.u32()
		}
	}
	c.Trap = d.bool()
}
