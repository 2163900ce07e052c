package api

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/internal/packed"
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

// AppendPackedSA appends s in the packed encoding (EncodingPacked).
func AppendPackedSA(b []byte, s *SAState) []byte {
	// The entry's length is not known before it is written: room for a
	// short one, moved once if it is longer.
	start := len(b)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(s.SPI))
	b = packed.AppendString(b, string(s.Dir))
	b = appendAddr(b, s.Local)
	b = appendAddr(b, s.Remote)
	b = packed.AppendString(b, string(s.Mode))
	b = appendSuite(b, s.Suite)
	b = packed.AppendBytes(b, s.EncKey)
	b = packed.AppendBytes(b, s.IntegKey)
	b = packed.AppendBool(b, s.ESN)
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
	b = packed.AppendString(b, s.Name)
	b = appendOptInt(b, s.Logical)
	b = binary.AppendVarint(b, int64(s.SPU))
	b = packed.AppendBool(b, s.Active)
	b = binary.AppendUvarint(b, s.Stats.Packets)
	b = binary.AppendUvarint(b, s.Stats.Bytes)
	b = binary.AppendUvarint(b, s.Stats.Seq)
	if s.Stats.Drops == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(s.Stats.Drops))+1)
		for k, v := range s.Stats.Drops {
			b = packed.AppendString(b, k)
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
	return packed.AppendString(b, s.String())
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
			return out, fmt.Errorf("api: packed SA %d: %w", i, packed.ErrShort)
		}
		d := packedReader{packed.Reader{B: b[k : k+int(n)]}}
		out = append(out, SAState{})
		d.sa(&out[len(out)-1])
		if d.Err != nil {
			return out[:len(out)-1], fmt.Errorf("api: packed SA %d: %w", i, d.Err)
		}
		// What follows the fields this build knows is a newer spud's.
		b = b[k+int(n):]
	}
	return out, nil
}

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros.
type packedReader struct{ packed.Reader }

func (d *packedReader) addr() netip.Addr {
	var a netip.Addr
	if err := a.UnmarshalBinary(d.Raw(d.Uvarint())); err != nil && d.Err == nil {
		d.Err = err
	}
	return a
}

// dir and mode return the constants rather than a string a field.
func (d *packedReader) dir() Dir {
	switch b := d.Raw(d.Uvarint()); string(b) {
	case string(In):
		return In
	case string(Out):
		return Out
	default:
		return Dir(b)
	}
}

func (d *packedReader) mode() Mode {
	switch b := d.Raw(d.Uvarint()); string(b) {
	case string(Tunnel):
		return Tunnel
	case string(Transport):
		return Transport
	default:
		return Mode(b)
	}
}

func (d *packedReader) suite() ipsec.Suite {
	b := d.Raw(d.Uvarint())
	if len(b) == 0 {
		return ipsec.SuiteInvalid
	}
	s, err := ipsec.ParseSuite(string(b))
	if err != nil && d.Err == nil {
		d.Err = err
	}
	return s
}

func (d *packedReader) selectors() []ipsec.Selector {
	n, isNil := d.Count()
	if isNil {
		return nil
	}
	ts := make([]ipsec.Selector, n)
	for i := range ts {
		ts[i] = ipsec.Selector{Proto: d.Byte(), From: d.addr(), To: d.addr(), FromPort: d.U16(), ToPort: d.U16()}
	}
	return ts
}

// optInt reads what appendOptInt wrote.
func (d *packedReader) optInt() *int {
	v := d.Varint()
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
	s.SPI = d.U32()
	s.Dir = d.dir()
	s.Local = d.addr()
	s.Remote = d.addr()
	s.Mode = d.mode()
	s.Suite = d.suite()
	s.EncKey = d.Bytes()
	s.IntegKey = d.Bytes()
	s.ESN = d.Byte() != 0
	s.ReplayWindow = int(d.Varint())
	if d.Byte() != 0 {
		s.Encap = &Encap{LocalPort: d.U16(), RemotePort: d.U16()}
	}
	s.ReqID = d.U32()
	s.LocalTS = d.selectors()
	s.RemoteTS = d.selectors()
	s.Lifetime = Lifetime{SoftBytes: d.Uvarint(), HardBytes: d.Uvarint(), SoftPackets: d.Uvarint(), HardPackets: d.Uvarint()}
	s.Name = d.String()
	s.Logical = d.optInt()
	s.SPU = int(d.Varint())
	s.Active = d.Byte() != 0
	s.Stats.Packets = d.Uvarint()
	s.Stats.Bytes = d.Uvarint()
	s.Stats.Seq = d.Uvarint()
	if n, isNil := d.Count(); !isNil {
		s.Stats.Drops = make(map[string]uint64, n)
		for range n {
			k := d.String()
			s.Stats.Drops[k] = d.Uvarint()
		}
	}
}
