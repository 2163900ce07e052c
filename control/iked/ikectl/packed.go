package ikectl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

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

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros.
type packedReader struct {
	packed.Reader
	// strs keeps one copy of each short string of a page (states,
	// connection names, proposals, identities), which repeat.
	strs map[string]string
}

// maxInterned bounds the strings a page's reader keeps.
const maxInterned = 1024

func (d *packedReader) string() string {
	b := d.Entry()
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
func (d *packedReader) unique() string { return string(d.Entry()) }

func (d *packedReader) strings() []string {
	n, isNil := d.Count()
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
	b := d.Entry()
	if len(b) == 0 {
		return a
	}
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
	s.SPIi = d.unique()
	s.SPIr = d.unique()
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
		s.Children = make([]ChildSA, n)
		for i := range s.Children {
			e := d.Entry()
			if d.Err != nil {
				return
			}
			c := packedReader{Reader: packed.Reader{B: e}, strs: d.strs}
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
		c.Policies = make([]uint32, n)
		for i := range c.Policies {
			c.Policies[i] = d.U32()
		}
	}
	c.Trap = d.Bool()
}
