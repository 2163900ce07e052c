package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/ipsec"
)

// EncodingPacked is DumpRequest.Encoding for sa.dump pages in the packed
// encoding (SADump.Packed): decoding an SA from JSON costs ~20 µs here
// (netip addresses and selectors through their text methods), which a
// million SAs do not afford; a packed SA takes well under one.
//
// The packed encoding of a page is its SAs one after the other, each a
// uvarint length and then its fields in the order AppendPackedSA writes
// them: integers as uvarints (varints where signed), strings and byte
// strings as a uvarint length and the bytes, addresses as a uvarint length
// and netip.Addr's binary form, a nil slice or map apart from an empty one
// by a count of 0 against n+1. A field added to SA or SAState goes at the
// end of the entry (TestPackedSACoversEveryField fails until it is): a
// decoder of an older build skips what follows the fields it knows, so
// the encoding keeps its name; a change that an older decoder would
// misread takes a new name, which an older spud refuses.
const EncodingPacked = "packed1"

// MaxPackedPage bounds the SAs of one packed page. It is MaxPage, though
// a packed page of them takes a few hundred kilobytes: spud looks a page
// up on the SPUs in one command each, which holds their packets back for
// as long; the round trips saved by larger pages are overlapped anyway
// (Client asks for the next page while its caller takes one).
const MaxPackedPage = MaxPage

var errPackedShort = errors.New("truncated")

// AppendPackedSA appends s in the packed encoding (EncodingPacked).
func AppendPackedSA(b []byte, s *SAState) []byte {
	// The entry's length is not known before it is written: room for a
	// short one, moved once if it is longer.
	start := len(b)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(s.SPI))
	b = appendString(b, string(s.Dir))
	b = appendAddr(b, s.Local)
	b = appendAddr(b, s.Remote)
	b = appendString(b, string(s.Mode))
	b = appendSuite(b, s.Suite)
	b = appendBytes(b, s.EncKey)
	b = appendBytes(b, s.IntegKey)
	b = appendBool(b, s.ESN)
	b = binary.AppendVarint(b, int64(s.ReplayWindow))
	if s.Encap == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(s.Encap.LocalPort))
		b = binary.AppendUvarint(b, uint64(s.Encap.RemotePort))
	}
	b = binary.AppendUvarint(b, uint64(s.ReqID))
	b = appendSelectors(b, s.LocalTS)
	b = appendSelectors(b, s.RemoteTS)
	b = binary.AppendUvarint(b, s.Lifetime.SoftBytes)
	b = binary.AppendUvarint(b, s.Lifetime.HardBytes)
	b = binary.AppendUvarint(b, s.Lifetime.SoftPackets)
	b = binary.AppendUvarint(b, s.Lifetime.HardPackets)
	b = appendString(b, s.Name)
	b = appendOptInt(b, s.Logical)
	b = binary.AppendVarint(b, int64(s.SPU))
	b = appendBool(b, s.Active)
	b = binary.AppendUvarint(b, s.Stats.Packets)
	b = binary.AppendUvarint(b, s.Stats.Bytes)
	b = binary.AppendUvarint(b, s.Stats.Seq)
	if s.Stats.Drops == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(s.Stats.Drops))+1)
		for k, v := range s.Stats.Drops {
			b = appendString(b, k)
			b = binary.AppendUvarint(b, v)
		}
	}
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	var hdr [binary.MaxVarintLen64]byte
	h := binary.PutUvarint(hdr[:], uint64(n))
	b = append(b, hdr[:h-1]...)
	copy(b[start+h:], b[start+1:start+1+n])
	copy(b[start:], hdr[:h])
	return b
}

// appendSuite writes the suite's keyword, not its number, which is this
// build's; empty for one that is not valid (JSON could not carry it).
func appendSuite(b []byte, s ipsec.Suite) []byte {
	if !s.Valid() {
		return append(b, 0)
	}
	return appendString(b, s.String())
}

// appendOptInt writes nil as 0 and v as v+1 (zigzag varint).
func appendOptInt(b []byte, v *int) []byte {
	if v == nil {
		return binary.AppendVarint(b, 0)
	}
	if *v >= 0 {
		return binary.AppendVarint(b, int64(*v)+1)
	}
	return binary.AppendVarint(b, int64(*v))
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBytes tells nil (0) from empty (1): JSON does (null and "").
func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	n := 0
	switch {
	case a.Is4():
		n = 4
	case a.IsValid():
		n = 16 + len(a.Zone())
	}
	b = binary.AppendUvarint(b, uint64(n))
	b, _ = a.AppendBinary(b) // never fails
	return b
}

func appendSelectors(b []byte, ts []ipsec.Selector) []byte {
	if ts == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(ts))+1)
	for _, t := range ts {
		b = append(b, t.Proto)
		b = appendAddr(b, t.From)
		b = appendAddr(b, t.To)
		b = binary.AppendUvarint(b, uint64(t.FromPort))
		b = binary.AppendUvarint(b, uint64(t.ToPort))
	}
	return b
}

// DecodePackedSAs appends to out the SAs of a page in the packed encoding
// (SADump.Packed).
func DecodePackedSAs(b []byte, out []SAState) ([]SAState, error) {
	for i := 0; len(b) > 0; i++ {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return out, fmt.Errorf("api: packed SA %d: %w", i, errPackedShort)
		}
		d := packedReader{b: b[k : k+int(n)]}
		out = append(out, SAState{})
		d.sa(&out[len(out)-1])
		if d.err != nil {
			return out[:len(out)-1], fmt.Errorf("api: packed SA %d: %w", i, d.err)
		}
		// What follows the fields this build knows is a newer spud's.
		b = b[k+int(n):]
	}
	return out, nil
}

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros.
type packedReader struct {
	b   []byte
	err error
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

func (d *packedReader) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *packedReader) raw(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *packedReader) string() string { return string(d.raw(d.uvarint())) }

func (d *packedReader) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	return append([]byte{}, d.raw(n-1)...)
}

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

func (d *packedReader) addr() netip.Addr {
	var a netip.Addr
	if err := a.UnmarshalBinary(d.raw(d.uvarint())); err != nil && d.err == nil {
		d.err = err
	}
	return a
}

// dir and mode return the constants rather than a string a field.
func (d *packedReader) dir() Dir {
	switch b := d.raw(d.uvarint()); string(b) {
	case string(In):
		return In
	case string(Out):
		return Out
	default:
		return Dir(b)
	}
}

func (d *packedReader) mode() Mode {
	switch b := d.raw(d.uvarint()); string(b) {
	case string(Tunnel):
		return Tunnel
	case string(Transport):
		return Transport
	default:
		return Mode(b)
	}
}

func (d *packedReader) suite() ipsec.Suite {
	b := d.raw(d.uvarint())
	if len(b) == 0 {
		return ipsec.SuiteInvalid
	}
	s, err := ipsec.ParseSuite(string(b))
	if err != nil && d.err == nil {
		d.err = err
	}
	return s
}

func (d *packedReader) u16() uint16 {
	v := d.uvarint()
	if v > 0xffff {
		d.fail()
	}
	return uint16(v)
}

func (d *packedReader) u32() uint32 {
	v := d.uvarint()
	if v > 0xffffffff {
		d.fail()
	}
	return uint32(v)
}

func (d *packedReader) selectors() []ipsec.Selector {
	n, isNil := d.count()
	if isNil {
		return nil
	}
	ts := make([]ipsec.Selector, n)
	for i := range ts {
		ts[i] = ipsec.Selector{Proto: d.byte(), From: d.addr(), To: d.addr(), FromPort: d.u16(), ToPort: d.u16()}
	}
	return ts
}

// optInt reads what appendOptInt wrote.
func (d *packedReader) optInt() *int {
	v := d.varint()
	if v == 0 {
		return nil
	}
	if v > 0 {
		v--
	}
	n := int(v)
	return &n
}

func (d *packedReader) sa(s *SAState) {
	s.SPI = d.u32()
	s.Dir = d.dir()
	s.Local = d.addr()
	s.Remote = d.addr()
	s.Mode = d.mode()
	s.Suite = d.suite()
	s.EncKey = d.bytes()
	s.IntegKey = d.bytes()
	s.ESN = d.byte() != 0
	s.ReplayWindow = int(d.varint())
	if d.byte() != 0 {
		s.Encap = &Encap{LocalPort: d.u16(), RemotePort: d.u16()}
	}
	s.ReqID = d.u32()
	s.LocalTS = d.selectors()
	s.RemoteTS = d.selectors()
	s.Lifetime = Lifetime{SoftBytes: d.uvarint(), HardBytes: d.uvarint(), SoftPackets: d.uvarint(), HardPackets: d.uvarint()}
	s.Name = d.string()
	s.Logical = d.optInt()
	s.SPU = int(d.varint())
	s.Active = d.byte() != 0
	s.Stats.Packets = d.uvarint()
	s.Stats.Bytes = d.uvarint()
	s.Stats.Seq = d.uvarint()
	if n, isNil := d.count(); !isNil {
		s.Stats.Drops = make(map[string]uint64, n)
		for range n {
			k := d.string()
			s.Stats.Drops[k] = d.uvarint()
		}
	}
}
