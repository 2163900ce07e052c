package sa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/ts"
	"github.com/spugate/spugate/ipsec"
)

// The binary state of an IKE SA is what iked persists of it: exactly the
// fields its JSON carries, in about a third of the bytes and decoded some
// twenty times faster, which is what a million IKE SAs read back at start
// need. Written by hand, without reflection; TestStateCodecComplete fails
// when a persisted field is added without being encoded here.
//
// Layout (version 1): the version byte, then the fields in the order of
// AppendBinary. Integers that are usually small are LEB128 varints (signed
// ones zigzag), SPIs fixed little-endian; a byte string or a list is its
// length (uvarint) then its bytes or elements; a bool set is a uvarint of
// bits; a time is 0 for the zero time, else 1+nanoseconds then seconds
// (signed) from the IKE SA's creation, which is itself from 1970: rekey and
// expiry times are whole seconds from it and take four bytes; an address is its length (0, 4 or 16, 16+1+len(zone) for an
// IPv6 address with a zone) then its bytes and zone. A new version is a
// new version byte: UnmarshalBinary keeps reading the older ones.
const (
	// StateVersion is the version byte that starts a binary state. It is
	// not '{', so that a reader can tell it from the JSON state.
	StateVersion byte = 1
)

// Flags of an IKESA.
const (
	fInitiator = 1 << iota
	fAnchored
	fNATLocal
	fNATRemote
	fFragSend
	fFragAccept
	fKeys
	fInFlight
	fIKEAll = 1<<iota - 1
)

// Flags of a ChildSA.
const (
	cNil = 1 << iota // a nil entry of Children (JSON's null)
	cInitiator
	cEncap
	cTrap
	cOutPending
	cRedundant
	cKeys
	cKeysAlg  // the keys' algorithms are the Child SA's
	cChildAll = 1<<iota - 1
)

// AppendBinary appends the IKE SA's persisted state to b in the binary
// form UnmarshalBinary reads (encoding.BinaryAppender). It never fails.
func (s *IKESA) AppendBinary(b []byte) ([]byte, error) {
	e := encoder{b: append(b, StateVersion)}
	var f uint64
	for _, x := range []struct {
		on  bool
		bit uint64
	}{{s.Initiator, fInitiator}, {s.Anchored, fAnchored}, {s.NATLocal, fNATLocal}, {s.NATRemote, fNATRemote},
		{s.FragSend, fFragSend}, {s.FragAccept, fFragAccept}, {s.Keys != nil, fKeys}, {s.InFlight != nil, fInFlight}} {
		if x.on {
			f |= x.bit
		}
	}
	e.uv(f)
	e.uv(uint64(s.UniqueID))
	e.str(s.ConnName)
	e.u64(s.SPIi)
	e.u64(s.SPIr)
	e.addrPort(s.Local)
	e.addrPort(s.Remote)
	e.v(int64(s.State))
	e.uv(uint64(s.Logical))
	e.proposal(&s.Proposal)
	if s.Keys != nil {
		k := s.Keys
		e.alg(&k.Alg)
		for _, x := range [...][]byte{k.SKd(), k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.SKpi(), k.SKpr()} {
			e.bytes(x)
		}
	}
	e.identity(&s.LocalID)
	e.identity(&s.RemoteID)
	e.str(s.AuthLocal)
	e.str(s.AuthRemote)
	e.uv(uint64(s.MsgIDOut))
	e.uv(uint64(s.MsgIDIn))
	e.uv(uint64(len(s.LastResponse)))
	for _, p := range s.LastResponse {
		e.bytes(p)
	}
	e.time(s.Created)
	e.base(s.Created)
	for _, t := range [...]time.Time{s.Established, s.RekeyAt, s.ReauthAt, s.ExpireAt, s.RekeyedUntil} {
		e.time(t)
	}
	e.uv(uint64(len(s.Children)))
	for _, c := range s.Children {
		e.child(c)
	}
	e.uv(uint64(len(s.Draining)))
	for i := range s.Draining {
		d := &s.Draining[i]
		e.u32(d.SPI)
		e.str(d.Name)
		e.time(d.Until)
	}
	if r := s.InFlight; r != nil {
		e.uv(uint64(r.MsgID))
		e.b = append(e.b, byte(r.Exchange))
		e.uv(uint64(len(r.Packets)))
		for _, p := range r.Packets {
			e.bytes(p)
		}
		e.str(r.Task)
		e.str(r.Reason)
		e.str(r.Child)
		e.uv(uint64(r.ReqID))
		e.u32(r.OldSPI)
		e.u32(r.SPI)
		e.u64(r.IKESPI)
		e.bytes(r.Nonce)
		e.uv(uint64(r.Group))
		e.bytes(r.KEPriv)
		e.uv(uint64(len(r.Props)))
		for i := range r.Props {
			e.proposal(&r.Props[i])
		}
		e.selectors(r.TSi)
		e.selectors(r.TSr)
		e.u32s(r.SPIs)
		e.u32s(r.Extra)
	}
	return e.b, nil
}

// MarshalBinary returns the IKE SA's persisted state in binary form
// (encoding.BinaryMarshaler).
func (s *IKESA) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

func (e *encoder) child(c *ChildSA) {
	if c == nil {
		e.uv(cNil)
		return
	}
	var f uint64
	for _, x := range []struct {
		on  bool
		bit uint64
	}{{c.Initiator, cInitiator}, {c.Encap, cEncap}, {c.Trap, cTrap}, {c.OutPending, cOutPending},
		{c.Redundant, cRedundant}, {c.Keys != nil, cKeys}, {c.Keys != nil && c.Keys.Alg == c.Alg, cKeysAlg}} {
		if x.on {
			f |= x.bit
		}
	}
	e.uv(f)
	e.uv(uint64(c.UniqueID))
	e.str(c.Name)
	e.v(int64(c.State))
	e.uv(uint64(c.ReqID))
	e.u32(c.SPIIn)
	e.u32(c.SPIOut)
	e.alg(&c.Alg)
	if k := c.Keys; k != nil {
		if k.Alg != c.Alg {
			e.alg(&k.Alg)
		}
		e.bytes(k.EncrI())
		e.bytes(k.IntegI())
		e.bytes(k.EncrR())
		e.bytes(k.IntegR())
	}
	e.selectors(c.LocalTS)
	e.selectors(c.RemoteTS)
	e.uv(uint64(len(c.PolicyIDs)))
	for _, id := range c.PolicyIDs {
		e.uv(uint64(id))
	}
	e.u32(c.Replaces)
	e.uv(c.RekeyBytes)
	e.uv(c.RekeyPackets)
	e.time(c.Installed)
	e.time(c.RekeyAt)
	e.time(c.ExpireAt)
}

type encoder struct {
	b               []byte
	baseSec, baseNs int64
}

func (e *encoder) uv(x uint64) { e.b = binary.AppendUvarint(e.b, x) }
func (e *encoder) v(x int64)   { e.b = binary.AppendVarint(e.b, x) }
func (e *encoder) u32(x uint32) {
	e.b = binary.LittleEndian.AppendUint32(e.b, x)
}
func (e *encoder) u64(x uint64) {
	e.b = binary.LittleEndian.AppendUint64(e.b, x)
}
func (e *encoder) bytes(x []byte) { e.uv(uint64(len(x))); e.b = append(e.b, x...) }
func (e *encoder) str(x string)   { e.uv(uint64(len(x))); e.b = append(e.b, x...) }
func (e *encoder) flag(x bool) {
	if x {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// time writes t relative to the encoder's base (the IKE SA's creation):
// the times of an IKE SA are near it, often whole seconds from it.
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.uv(0)
		return
	}
	sec, ns := t.Unix()-e.baseSec, int64(t.Nanosecond())-e.baseNs
	if ns < 0 {
		ns += 1e9
		sec--
	}
	e.uv(uint64(ns) + 1)
	e.v(sec)
}

// base makes t the time the next ones are relative to.
func (e *encoder) base(t time.Time) {
	if !t.IsZero() {
		e.baseSec, e.baseNs = t.Unix(), int64(t.Nanosecond())
	}
}

func (e *encoder) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		e.uv(0)
	case a.Is4():
		e.uv(4)
		b := a.As4()
		e.b = append(e.b, b[:]...)
	default:
		z := a.Zone()
		if z == "" {
			e.uv(16)
		} else {
			e.uv(16 + 1 + uint64(len(z)))
		}
		b := a.As16()
		e.b = append(e.b, b[:]...)
		e.b = append(e.b, z...)
	}
}

func (e *encoder) addrPort(p netip.AddrPort) {
	e.addr(p.Addr())
	e.b = binary.LittleEndian.AppendUint16(e.b, p.Port())
}

func (e *encoder) alg(a *suite.Algorithms) {
	e.b = append(e.b, byte(a.Protocol))
	e.uv(uint64(a.Encr))
	e.v(int64(a.EncrKeyBits))
	e.uv(uint64(a.Integ))
	e.uv(uint64(a.PRF))
	e.uv(uint64(a.Group))
	e.flag(a.ESN)
}

func (e *encoder) proposal(p *suite.Proposal) {
	e.b = append(e.b, p.Number, byte(p.Protocol))
	e.bytes(p.SPI)
	e.uv(uint64(len(p.Transforms)))
	for i := range p.Transforms {
		t := &p.Transforms[i]
		e.b = append(e.b, byte(t.Type))
		e.uv(uint64(t.ID))
		e.uv(uint64(t.KeyLength))
		e.uv(uint64(len(t.Attributes)))
		for j := range t.Attributes {
			a := &t.Attributes[j]
			e.uv(uint64(a.Type))
			e.flag(a.TV)
			e.bytes(a.Value)
		}
	}
}

// identity writes the text of an identity as 0 when it is its data (an
// FQDN, an RFC 822 address), else as its length plus one and its bytes.
func (e *encoder) identity(id *config.Identity) {
	e.b = append(e.b, id.Type)
	e.bytes(id.Data)
	if id.Text == string(id.Data) {
		e.uv(0)
		return
	}
	e.uv(uint64(len(id.Text)) + 1)
	e.b = append(e.b, id.Text...)
}

func (e *encoder) selectors(ss []ipsec.Selector) {
	e.uv(uint64(len(ss)))
	for i := range ss {
		s := &ss[i]
		e.b = append(e.b, s.Proto)
		e.addr(s.From)
		e.addr(s.To)
		e.uv(uint64(s.FromPort))
		e.uv(uint64(s.ToPort))
	}
}

func (e *encoder) u32s(xs []uint32) {
	e.uv(uint64(len(xs)))
	for _, x := range xs {
		e.u32(x)
	}
}

// ErrStateVersion is the error of a binary state of a version this iked
// does not know (written by a newer one).
var ErrStateVersion = errors.New("unknown version")

// UnmarshalBinary replaces s with the persisted state of an IKE SA that
// AppendBinary wrote (encoding.BinaryUnmarshaler); the ciphers are
// rebuilt by RestoreCiphers. A truncated, overlong or otherwise malformed
// state is an error naming the part it failed in, never a panic, and what
// it allocates is bounded by len(b). The decoded IKE SA shares no memory
// with b. On an error s is left zero.
func (s *IKESA) UnmarshalBinary(b []byte) error {
	if len(b) == 0 {
		return errors.New("ike sa state: empty")
	}
	if b[0] != StateVersion {
		return fmt.Errorf("ike sa state: version %d: %w (this iked reads %d)", b[0], ErrStateVersion, StateVersion)
	}
	d := decoder{b: b[1:], n: len(b)}
	// Decoded in place: the kept byte strings are found by their address.
	*s = IKESA{}
	r := s
	d.what = "flags"
	f := d.uv()
	if f&^fIKEAll != 0 {
		d.fail(fmt.Sprintf("unknown flags %#x", f&^fIKEAll))
	}
	r.Initiator, r.Anchored, r.NATLocal, r.NATRemote = f&fInitiator != 0, f&fAnchored != 0, f&fNATLocal != 0, f&fNATRemote != 0
	r.FragSend, r.FragAccept = f&fFragSend != 0, f&fFragAccept != 0
	d.what = "header"
	r.UniqueID = d.u32v()
	r.ConnName = d.str()
	r.SPIi = d.u64()
	r.SPIr = d.u64()
	d.what = "addresses"
	r.Local = d.addrPort()
	r.Remote = d.addrPort()
	d.what = "state"
	r.State = IKEState(d.state())
	r.Logical = uint16(d.uvMax(math.MaxUint16))
	d.what = "proposal"
	d.proposal(&r.Proposal)
	r.Proposal = r.Proposal.Share()
	if f&fKeys != 0 {
		d.what = "keys"
		// The keys copy their parts into a buffer of their own.
		var a suite.Algorithms
		d.alg(&a)
		var x [7][]byte
		for i := range x {
			x[i] = d.bytes()
		}
		k, err := suite.NewIKEKeys(a, x[0], x[1], x[2], x[3], x[4], x[5], x[6])
		if err != nil {
			d.fail(err.Error())
		}
		r.Keys = k
	}
	d.what = "identities"
	d.identity(&r.LocalID)
	d.identity(&r.RemoteID)
	r.AuthLocal = d.str()
	r.AuthRemote = d.str()
	d.what = "message IDs"
	r.MsgIDOut = d.u32v()
	r.MsgIDIn = d.u32v()
	d.what = "cached response"
	if n := d.count(1); n > 0 {
		r.LastResponse = make([][]byte, n)
		for i := range r.LastResponse {
			r.LastResponse[i] = d.own()
		}
	}
	d.what = "times"
	r.Created = d.time()
	d.base(r.Created)
	for _, t := range [...]*time.Time{&r.Established, &r.RekeyAt, &r.ReauthAt, &r.ExpireAt, &r.RekeyedUntil} {
		*t = d.time()
	}
	d.what = "Child SAs"
	if n := d.count(1); n > 0 {
		r.Children = make([]*ChildSA, n)
		for i := range r.Children {
			r.Children[i] = d.child()
		}
	}
	d.what = "draining SAs"
	if n := d.count(6); n > 0 {
		r.Draining = make([]DrainingSA, n)
		for i := range r.Draining {
			x := &r.Draining[i]
			x.SPI = d.u32()
			x.Name = d.str()
			x.Until = d.time()
		}
	}
	if f&fInFlight != 0 {
		d.what = "request in flight"
		q := &InFlight{}
		q.MsgID = d.u32v()
		q.Exchange = message.ExchangeType(d.u8())
		if n := d.count(1); n > 0 {
			q.Packets = make([][]byte, n)
			for i := range q.Packets {
				q.Packets[i] = d.own()
			}
		}
		q.Task = d.str()
		q.Reason = d.str()
		q.Child = d.str()
		q.ReqID = d.u32v()
		q.OldSPI = d.u32()
		q.SPI = d.u32()
		q.IKESPI = d.u64()
		d.keep(&q.Nonce)
		q.Group = suite.GroupID(d.uvMax(math.MaxUint16))
		d.keep(&q.KEPriv)
		if n := d.count(4); n > 0 {
			q.Props = make([]suite.Proposal, n)
			for i := range q.Props {
				d.proposal(&q.Props[i])
			}
		}
		q.TSi = d.selectors()
		q.TSr = d.selectors()
		q.SPIs = d.u32s()
		q.Extra = d.u32s()
		r.InFlight = q
	}
	if d.err == nil && d.off != len(d.b) {
		d.what = "end"
		d.fail(fmt.Sprintf("%d bytes after the state", len(d.b)-d.off))
	}
	if d.err != nil {
		*s = IKESA{}
		return d.err
	}
	d.copyKept()
	return nil
}

func (d *decoder) child() *ChildSA {
	f := d.uv()
	if f == cNil {
		return nil
	}
	if f&^cChildAll != 0 || f&cNil != 0 || f&(cKeys|cKeysAlg) == cKeysAlg {
		d.fail(fmt.Sprintf("unknown Child SA flags %#x", f))
		return nil
	}
	c := &ChildSA{}
	c.Initiator, c.Encap, c.Trap = f&cInitiator != 0, f&cEncap != 0, f&cTrap != 0
	c.OutPending, c.Redundant = f&cOutPending != 0, f&cRedundant != 0
	c.UniqueID = d.u32v()
	c.Name = d.str()
	c.State = ChildState(d.state())
	c.ReqID = d.u32v()
	c.SPIIn = d.u32()
	c.SPIOut = d.u32()
	d.alg(&c.Alg)
	if f&cKeys != 0 {
		a := c.Alg
		if f&cKeysAlg == 0 {
			d.alg(&a)
		}
		ei, ii, er, ir := d.bytes(), d.bytes(), d.bytes(), d.bytes()
		k, err := suite.NewChildKeys(a, ei, ii, er, ir)
		if err != nil {
			d.fail(err.Error())
		}
		c.Keys = k
	}
	c.LocalTS = d.childSelectors()
	c.RemoteTS = d.childSelectors()
	if n := d.count(1); n > 0 {
		c.PolicyIDs = make([]uint32, n)
		for i := range c.PolicyIDs {
			c.PolicyIDs[i] = d.u32v()
		}
	}
	c.Replaces = d.u32()
	c.RekeyBytes = d.uv()
	c.RekeyPackets = d.uv()
	c.Installed = d.time()
	c.RekeyAt = d.time()
	c.ExpireAt = d.time()
	return c
}

// decoder reads a binary state; its first error sticks, and every read
// after it returns zero values, so the decoding code checks once.
type decoder struct {
	b    []byte
	off  int
	n    int    // the length of the state, for errors
	what string // the part being read, for errors
	err  error
	// baseSec and baseNs are the time others are relative to.
	baseSec, baseNs int64
	// kept are the byte strings copyKept copies, keptLen their length.
	kept    [32]*[]byte
	nKept   int
	keptLen int
}

// state reads a state (IKEState, ChildState): a number that fits their
// int8.
func (d *decoder) state() int8 {
	v := d.intv()
	if v < math.MinInt8 || v > math.MaxInt8 {
		d.fail(fmt.Sprintf("state %d out of range", v))
		return 0
	}
	return int8(v)
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("ike sa state: %s: %s (at byte %d of %d)", d.what, why, d.off+1, d.n)
	}
	d.off = len(d.b)
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(fmt.Sprintf("truncated: %d bytes needed, %d left", n, len(d.b)-d.off))
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.off += n
	return x
}

func (d *decoder) v() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad or truncated varint")
		return 0
	}
	d.off += n
	return x
}

func (d *decoder) uvMax(max uint64) uint64 {
	x := d.uv()
	if x > max {
		d.fail(fmt.Sprintf("%d out of range (at most %d)", x, max))
		return 0
	}
	return x
}

func (d *decoder) u32v() uint32 { return uint32(d.uvMax(math.MaxUint32)) }

// intv reads a signed varint into an int (states, key lengths).
func (d *decoder) intv() int { return int(d.v()) }

// count reads the length of a list whose elements take at least min bytes
// each: a count the rest of the state cannot hold is an error before
// anything is allocated for it.
func (d *decoder) count(min int) int {
	x := d.uv()
	if left := uint64(len(d.b) - d.off); x > left/uint64(min) {
		d.fail(fmt.Sprintf("%d elements, more than the %d bytes left hold", x, left))
		return 0
	}
	return int(x)
}

// bytes reads a byte string; it is b's until copied.
func (d *decoder) bytes() []byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	return d.take(n)
}

// keep reads a byte string into *p, which copyKept then copies with the
// others into one allocation: identities, nonces live as long as the
// IKE SA (or its rekey), and one allocation costs less than a dozen, at
// start-up and in memory. Each is capped, so that an append to one cannot
// run into the next.
func (d *decoder) keep(p *[]byte) {
	*p = d.bytes()
	switch {
	case len(*p) == 0:
	case d.nKept < len(d.kept):
		d.kept[d.nKept] = p
		d.nKept++
		d.keptLen += len(*p)
	default:
		*p = append([]byte(nil), *p...) // past the fixed list: its own copy
	}
}

// own reads a byte string into an allocation of its own: a cached response
// or a request is replaced by the next exchange, and shared with the keys
// it would stay until they go.
func (d *decoder) own() []byte {
	p := d.bytes()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// copyKept gives the byte strings read by keep their single allocation:
// none stays b's.
func (d *decoder) copyKept() {
	if d.nKept == 0 {
		return
	}
	slab := make([]byte, d.keptLen)
	for _, p := range d.kept[:d.nKept] {
		n := copy(slab, *p)
		*p, slab = slab[:n:n], slab[n:]
	}
}

func (d *decoder) str() string {
	n := d.count(1)
	if n == 0 {
		return ""
	}
	return string(d.take(n))
}

func (d *decoder) flag() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

// maxUnix bounds the seconds of a time: far past any year JSON can write
// (9999), and far from where time.Time's arithmetic overflows.
const maxUnix = 1 << 60

func (d *decoder) time() time.Time {
	h := d.uv()
	if h == 0 {
		return time.Time{}
	}
	if h > 1e9 {
		d.fail(fmt.Sprintf("time with %d nanoseconds", h-1))
		return time.Time{}
	}
	dsec := d.v()
	if dsec > maxUnix || dsec < -maxUnix {
		d.fail(fmt.Sprintf("time %d seconds away", dsec))
		return time.Time{}
	}
	sec, ns := d.baseSec+dsec, d.baseNs+int64(h-1)
	if ns >= 1e9 {
		ns -= 1e9
		sec++
	}
	if sec > maxUnix || sec < -maxUnix {
		d.fail(fmt.Sprintf("time %d seconds from 1970", sec))
		return time.Time{}
	}
	return time.Unix(sec, ns)
}

func (d *decoder) base(t time.Time) {
	if !t.IsZero() {
		d.baseSec, d.baseNs = t.Unix(), int64(t.Nanosecond())
	}
}

func (d *decoder) addr() netip.Addr {
	n := d.uv()
	switch {
	case n == 0:
		return netip.Addr{}
	case n == 4:
		if p := d.take(4); p != nil {
			return netip.AddrFrom4([4]byte(p))
		}
	case n == 16:
		if p := d.take(16); p != nil {
			return netip.AddrFrom16([16]byte(p))
		}
	case n > 17 && n-17 <= uint64(len(d.b)-d.off):
		p, z := d.take(16), d.take(int(n-17))
		if p != nil && z != nil {
			return netip.AddrFrom16([16]byte(p)).WithZone(string(z))
		}
	default:
		d.fail(fmt.Sprintf("address of %d bytes", n))
	}
	return netip.Addr{}
}

func (d *decoder) addrPort() netip.AddrPort {
	a := d.addr()
	var port uint16
	if p := d.take(2); p != nil {
		port = binary.LittleEndian.Uint16(p)
	}
	return netip.AddrPortFrom(a, port)
}

func (d *decoder) alg(a *suite.Algorithms) {
	a.Protocol = suite.Protocol(d.u8())
	a.Encr = suite.EncrID(d.uvMax(math.MaxUint16))
	a.EncrKeyBits = d.intv()
	a.Integ = suite.IntegID(d.uvMax(math.MaxUint16))
	a.PRF = suite.PRFID(d.uvMax(math.MaxUint16))
	a.Group = suite.GroupID(d.uvMax(math.MaxUint16))
	a.ESN = d.flag()
}

func (d *decoder) proposal(p *suite.Proposal) {
	p.Number = d.u8()
	p.Protocol = suite.Protocol(d.u8())
	d.keep(&p.SPI)
	if n := d.count(4); n > 0 {
		p.Transforms = make([]suite.Transform, n)
		for i := range p.Transforms {
			t := &p.Transforms[i]
			t.Type = suite.TransformType(d.u8())
			t.ID = uint16(d.uvMax(math.MaxUint16))
			t.KeyLength = uint16(d.uvMax(math.MaxUint16))
			if n := d.count(3); n > 0 {
				t.Attributes = make([]suite.Attribute, n)
				for j := range t.Attributes {
					a := &t.Attributes[j]
					a.Type = uint16(d.uvMax(math.MaxUint16))
					a.TV = d.flag()
					d.keep(&a.Value)
				}
			}
		}
	}
}

func (d *decoder) identity(id *config.Identity) {
	id.Type = d.u8()
	d.keep(&id.Data)
	switch n := d.uv(); {
	case n == 0:
		id.Text = string(id.Data)
	case n-1 > uint64(len(d.b)-d.off):
		d.fail(fmt.Sprintf("identity text of %d bytes, %d left", n-1, len(d.b)-d.off))
	default:
		id.Text = string(d.take(int(n - 1)))
	}
}

func (d *decoder) selectors() []ipsec.Selector {
	n := d.count(5)
	if n == 0 {
		return nil
	}
	ss := make([]ipsec.Selector, n)
	for i := range ss {
		s := &ss[i]
		s.Proto = d.u8()
		s.From = d.addr()
		s.To = d.addr()
		s.FromPort = uint16(d.uvMax(math.MaxUint16))
		s.ToPort = uint16(d.uvMax(math.MaxUint16))
	}
	return ss
}

// childSelectors reads a Child SA's selectors, shared with the Child SAs
// that have the same (ts.Share): a million restored tunnels of a few
// connections do not each hold a copy.
func (d *decoder) childSelectors() []ipsec.Selector {
	if ss := d.selectors(); ss != nil {
		return ts.Share(ss)
	}
	return nil
}

func (d *decoder) u32s() []uint32 {
	n := d.count(4)
	if n == 0 {
		return nil
	}
	xs := make([]uint32, n)
	for i := range xs {
		xs[i] = d.u32()
	}
	return xs
}
