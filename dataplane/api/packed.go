package api

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"unsafe"

	"github.com/spugate/spugate/internal/packed"
	"github.com/spugate/spugate/internal/unixrpc"
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

// EncodingPackedData is DumpRequest.Encoding for sa.dump pages of the
// packed encoding's SAs sent as the reply's data (unixrpc.DataFrame), not
// as base64 in its JSON (SADump.Packed), which cost a third more bytes and
// a pass over them on each side to escape, scan and unescape. The reply's
// body is an SADump with neither SAs nor Packed. A spud older than it
// refuses the encoding (CodeBadRequest), and Client asks for
// EncodingPacked then.
const EncodingPackedData = "packed1-data"

// MaxPackedPage bounds the SAs of one packed page: twice MaxPage, a
// megabyte or two. Fewer pages are fewer round trips, each several
// goroutine and thread wakeups in a row on either side, which a loaded
// machine makes milliseconds each: at a million SAs those, not the
// encoding, were most of a listing's wall time. spud looks a page up on
// the SPUs in one pass each, from its API's goroutine while they sleep
// (a command between batches, holding packets back meanwhile, while they
// work: 4096 SAs each, well under a millisecond).
const MaxPackedPage = 2 * MaxPage

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
// (SADump.Packed). A page's SAs share their allocations: their selectors,
// logical SPUs and encapsulations come from arrays of the page, their
// names from one string of it, their empty Drops maps are one map (read
// only), so that a page of thousands costs a few allocations, not several
// per SA (a non-empty Drops map, a zoned address each have theirs).
func DecodePackedSAs(b []byte, out []SAState) ([]SAState, error) {
	return decodePage(b, out, false)
}

// decodePage is DecodePackedSAs; owned says that nothing else holds b nor
// ever writes it (a frame's buffer that Client read), so that the page's
// string may be b itself rather than a copy.
func decodePage(b []byte, out []SAState, owned bool) ([]SAState, error) {
	n := packed.Entries(b)
	out = slices.Grow(out, n)
	d := packedReader{page: b, ints: make([]int, 0, n), sels: make([]ipsec.Selector, 0, 2*n)}
	if owned && len(b) > 0 {
		d.str = unsafe.String(&b[0], len(b))
	}
	for i := 0; len(b) > 0; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return out, fmt.Errorf("api: packed SA %d: %w", i, packed.ErrShort)
		}
		d.B, d.Err = b[k:k+int(l)], nil
		out = append(out, SAState{})
		d.sa(&out[len(out)-1])
		if d.Err != nil {
			return out[:len(out)-1], fmt.Errorf("api: packed SA %d: %w", i, d.Err)
		}
		// What follows the fields this build knows is a newer spud's.
		b = b[k+int(l):]
	}
	return out, nil
}

// packedReader reads an entry's fields; the first error sticks and the
// reads after it give zeros. The rest is the page's, shared by its SAs.
type packedReader struct {
	packed.Reader
	page   []byte            // the page, which every entry's B is a part of
	str    string            // the page as a string, made at its first name
	ints   []int             // the SAs' Logical
	sels   []ipsec.Selector  // their selectors
	encaps []Encap           // their Encap
	drops  map[string]uint64 // their empty Drops
}

func (d *packedReader) addr() netip.Addr {
	b := d.Raw(d.Uvarint())
	switch len(b) {
	case 0:
		return netip.Addr{}
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b))
	}
	var a netip.Addr
	if err := a.UnmarshalBinary(b); err != nil && d.Err == nil {
		d.Err = err
	}
	return a
}

// string reads a string as a part of the page's string, which the first
// non-empty one makes.
func (d *packedReader) string() string {
	b := d.Entry()
	if len(b) == 0 {
		return ""
	}
	// Every entry, and so b, is a part of page: its offset there is
	// what their capacities (to the page's end) differ by.
	off := cap(d.page) - cap(b)
	if off < 0 || off+len(b) > len(d.page) {
		return string(b)
	}
	if d.str == "" {
		d.str = string(d.page)
	}
	return d.str[off : off+len(b)]
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
	for _, s := range ipsec.Suites {
		if s.String() == string(b) {
			return s
		}
	}
	if d.Err == nil {
		d.Err = fmt.Errorf("unknown ESP suite %q", b)
	}
	return ipsec.SuiteInvalid
}

func (d *packedReader) selectors() []ipsec.Selector {
	n, isNil := d.Count()
	if isNil {
		return nil
	}
	if n == 0 {
		// Empty, not nil (nil[0:0:0] would be nil): they are told apart.
		return []ipsec.Selector{}
	}
	if len(d.sels)+n > cap(d.sels) {
		// The SAs before keep the array they have.
		d.sels = make([]ipsec.Selector, 0, max(n, 2*cap(d.sels)))
	}
	at := len(d.sels)
	for range n {
		d.sels = append(d.sels, ipsec.Selector{Proto: d.Byte(), From: d.addr(), To: d.addr(), FromPort: d.U16(), ToPort: d.U16()})
	}
	return d.sels[at:len(d.sels):len(d.sels)]
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
	if len(d.ints) == cap(d.ints) {
		d.ints = make([]int, 0, max(16, 2*cap(d.ints)))
	}
	d.ints = append(d.ints, int(v))
	return &d.ints[len(d.ints)-1]
}

func (d *packedReader) encap() *Encap {
	if len(d.encaps) == cap(d.encaps) {
		d.encaps = make([]Encap, 0, max(16, 2*cap(d.encaps)))
	}
	d.encaps = append(d.encaps, Encap{LocalPort: d.U16(), RemotePort: d.U16()})
	return &d.encaps[len(d.encaps)-1]
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
		s.Encap = d.encap()
	}
	s.ReqID = d.U32()
	s.LocalTS = d.selectors()
	s.RemoteTS = d.selectors()
	s.Lifetime = Lifetime{SoftBytes: d.Uvarint(), HardBytes: d.Uvarint(), SoftPackets: d.Uvarint(), HardPackets: d.Uvarint()}
	s.Name = d.string()
	s.Logical = d.optInt()
	s.SPU = int(d.Varint())
	s.Active = d.Byte() != 0
	s.Stats.Packets = d.Uvarint()
	s.Stats.Bytes = d.Uvarint()
	s.Stats.Seq = d.Uvarint()
	switch n, isNil := d.Count(); {
	case isNil:
	case n == 0:
		if d.drops == nil {
			d.drops = map[string]uint64{}
		}
		s.Stats.Drops = d.drops
	default:
		s.Stats.Drops = make(map[string]uint64, n)
		for range n {
			k := d.string()
			s.Stats.Drops[k] = d.Uvarint()
		}
	}
}

// The packed sa.stats (SAStatsRequest.Packed): the SAs named one after
// the other, each its SPI (uvarint), its direction (the string) and its
// remote (an address as in an SA, none for an inbound SA); the reply's
// data (unixrpc.DataFrame) is one entry per SA named, in that order, each
// framed by its length as a packed SA: found (a byte), then if found the
// packets, bytes and sequence number (uvarints) and the drops (a count,
// then name and count each). iked asks for a page of list-sas' counters
// this way: in JSON, 8,192 SAs' names and counters cost each side more
// than the page itself.

// AppendPackedSAID appends id as SAStatsRequest.Packed holds it.
func AppendPackedSAID(b []byte, id SAID) []byte {
	b = binary.AppendUvarint(b, uint64(id.SPI))
	b = packed.AppendString(b, string(id.Dir))
	return appendAddr(b, id.Remote)
}

// DecodePackedSAIDs appends to out the SAs a packed sa.stats request
// names, at most most of them (more is an error).
func DecodePackedSAIDs(b []byte, out []SAID, most int) ([]SAID, error) {
	d := packedReader{Reader: packed.Reader{B: b}}
	for len(d.B) > 0 {
		if len(out) == most {
			return out, fmt.Errorf("more than %d SAs asked", most)
		}
		out = append(out, SAID{SPI: d.U32(), Dir: d.dir(), Remote: d.addr()})
		if d.Err != nil {
			return out[:len(out)-1], fmt.Errorf("api: packed SA id %d: %w", len(out)-1, d.Err)
		}
	}
	return out, nil
}

// AppendPackedStats appends an SA's sa.stats answer: its counters if
// found.
func AppendPackedStats(b []byte, found bool, st *SAStats) []byte {
	return packed.AppendEntry(b, func(b []byte) []byte {
		if !found {
			return append(b, 0)
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, st.Packets)
		b = binary.AppendUvarint(b, st.Bytes)
		b = binary.AppendUvarint(b, st.Seq)
		b = packed.AppendCount(b, len(st.Drops), st.Drops == nil)
		for k, v := range st.Drops {
			b = packed.AppendString(b, k)
			b = binary.AppendUvarint(b, v)
		}
		return b
	})
}

// DecodePackedStats fills in the answers of a packed sa.stats reply: the
// Found and Stats of each of out, in order. An empty Drops reads nil, as
// it marshals (omitempty).
func DecodePackedStats(b []byte, out []SAStatsEntry) error {
	d := packedReader{}
	for i := range out {
		d.B, d.Err = b, nil
		e := d.Entry()
		if d.Err != nil {
			return fmt.Errorf("api: packed stats %d of %d: %w", i, len(out), d.Err)
		}
		b = d.B
		d.B = e
		x := &out[i]
		x.Found, x.Stats = d.Bool(), SAStats{}
		if x.Found {
			x.Stats.Packets, x.Stats.Bytes, x.Stats.Seq = d.Uvarint(), d.Uvarint(), d.Uvarint()
			if n, _ := d.Count(); n > 0 {
				x.Stats.Drops = make(map[string]uint64, n)
				for range n {
					k := string(d.Entry())
					x.Stats.Drops[k] = d.Uvarint()
				}
			}
		}
		if d.Err != nil {
			return fmt.Errorf("api: packed stats %d of %d: %w", i, len(out), d.Err)
		}
	}
	if len(b) > 0 {
		return fmt.Errorf("api: packed stats: %d bytes after the %d answers", len(b), len(out))
	}
	return nil
}

// AnswerSAStats is the reply to an sa.stats request: lookup answers the
// SAs it names (those of SAs, or of Packed decoded), and the answers go
// back in the request's encoding, JSON (SAStatsReply) or packed (as the
// reply's data). spud's handler uses it, and so do the fakes of tests.
func AnswerSAStats(req *SAStatsRequest, lookup func([]SAID) ([]SAStatsEntry, error)) (any, error) {
	if req.Packed == nil {
		es, err := lookup(req.SAs)
		if err != nil {
			return nil, err
		}
		return SAStatsReply{SAs: es}, nil
	}
	if len(req.SAs) > 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s: SAs named both in sas and packed", OpSAStats)
	}
	ids, err := DecodePackedSAIDs(req.Packed, make([]SAID, 0, min(len(req.Packed)/6, MaxQuery)), MaxQuery)
	if err != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s: %w", OpSAStats, err)
	}
	es, err := lookup(ids)
	if err != nil {
		return nil, err
	}
	if len(es) != len(ids) {
		return nil, fmt.Errorf("%s: %d answers to %d SAs", OpSAStats, len(es), len(ids))
	}
	b := make([]byte, 0, 16*len(es))
	for i := range es {
		b = AppendPackedStats(b, es[i].Found, &es[i].Stats)
	}
	return unixrpc.WithData{Data: b}, nil
}
