package esp

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"github.com/spugate/spugate/ipsec"

	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/dataplane/replay"
)

// Outer is what ParseOuter finds in front of an ESP packet.
type Outer struct {
	// SPI and Seq are the ESP header's fields (Seq: low 32 bits).
	SPI, Seq uint32
	// ESPOff is the offset of the ESP header; End is where the IP packet
	// ends (the IP length; Ethernet padding after it is excluded).
	ESPOff, End int
	// UDP is set for UDP-encapsulated ESP (RFC 3948), with its ports in
	// SrcPort and DstPort.
	UDP              bool
	SrcPort, DstPort uint16
	// HdrEnd is the end of the IP header chain (where ESP or UDP starts).
	HdrEnd int
	// NHOff is the offset of the byte naming ESP or UDP (transport mode
	// rewrites it).
	NHOff int
	// DS is the outer DS field (DSCP and ECN).
	DS byte
	// V6 is set for an IPv6 outer header.
	V6 bool
}

// ParseOuter parses the outer IP header (and UDP header) of an ESP packet p,
// which starts at its IP header, for the SA table's SPI lookup and for
// Decap. It allocates nothing and never reads past p.
func ParseOuter(p []byte) (o Outer, r Reason) {
	r = parseOuter(p, &o)
	return o, r
}

// parseOuter fills *o; a pointer, so that the per-packet path does not copy
// the struct around.
func parseOuter(p []byte, o *Outer) Reason {
	if len(p) < 1 {
		return ShortPacket
	}
	var proto byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < iphdr.IPv4MinLen {
			return ShortPacket
		}
		ihl := int(p[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < iphdr.IPv4MinLen || tot < ihl || tot > len(p) {
			return Malformed
		}
		if binary.BigEndian.Uint16(p[6:8])&(iphdr.IPv4FlagMF|iphdr.IPv4OffsetMask) != 0 {
			return OuterFragment
		}
		o.End, o.HdrEnd, o.NHOff, o.DS = tot, ihl, 9, p[1]
		proto = p[9]
	case 6:
		if len(p) < iphdr.IPv6Len {
			return ShortPacket
		}
		tot := iphdr.IPv6Len + int(binary.BigEndian.Uint16(p[4:6]))
		if tot > len(p) {
			return Malformed
		}
		info, ok := iphdr.IPv6Walk(p[:tot])
		if !ok {
			return Malformed
		}
		if info.FragOff != 0 {
			return OuterFragment
		}
		o.End, o.HdrEnd, o.NHOff, o.DS, o.V6 = tot, info.Off, info.NextHeaderOff, p[0]<<4|p[1]>>4, true
		proto = info.Proto
	default:
		return Malformed
	}
	o.ESPOff = o.HdrEnd
	switch proto {
	case iphdr.ProtoESP:
	case iphdr.ProtoUDP:
		u := p[o.HdrEnd:o.End]
		if len(u) < iphdr.UDPLen+1 {
			return ShortPacket
		}
		ul := int(binary.BigEndian.Uint16(u[4:6]))
		if ul < iphdr.UDPLen+1 || ul > len(u) {
			return Malformed
		}
		o.End = o.HdrEnd + ul
		pl := u[iphdr.UDPLen:ul]
		// RFC 3948 section 2.2: a lone 0xff is a NAT keepalive; a
		// zero SPI is the non-ESP marker of IKE.
		if len(pl) == 1 && pl[0] == 0xff {
			return NotESP
		}
		if len(pl) >= 4 && binary.BigEndian.Uint32(pl) == 0 {
			return NotESP
		}
		o.UDP = true
		o.SrcPort = binary.BigEndian.Uint16(u[0:2])
		o.DstPort = binary.BigEndian.Uint16(u[2:4])
		o.ESPOff += iphdr.UDPLen
	default:
		return Malformed
	}
	if o.End-o.ESPOff < espHdrLen {
		return ShortPacket
	}
	o.SPI = binary.BigEndian.Uint32(p[o.ESPOff:])
	o.Seq = binary.BigEndian.Uint32(p[o.ESPOff+4:])
	return None
}

// Decap verifies and decrypts the ESP packet at buf[off:off+n] (starting
// at its outer IP header) in place and returns where the inner packet is
// (tunnel mode) or the rebuilt packet (transport mode). The anti-replay
// window moves only for packets whose ICV verified. It allocates nothing.
// Owner only.
func (sa *SA) Decap(buf []byte, off, n int) Result {
	start, length, why := sa.decap(buf, off, n, nil)
	sa.publish()
	if why != None {
		return Result{Outcome: Outcome{Verdict: Drop, Reason: why}}
	}
	return Result{Off: start, Len: length, Outcome: Outcome{Verdict: Forward}}
}

// DecapOuter is Decap for a caller that has parsed the outer headers
// already, as the SA table does to find the SA by SPI: o is what
// ParseOuter returned for the packet starting at buf[off], and the packet
// is not parsed again. It allocates nothing. Owner only.
func (sa *SA) DecapOuter(buf []byte, off int, o *Outer) Result {
	start, length, why := sa.decap(buf, off, 0, o)
	sa.publish()
	if why != None {
		return Result{Outcome: Outcome{Verdict: Drop, Reason: why}}
	}
	return Result{Off: start, Len: length, Outcome: Outcome{Verdict: Forward}}
}

// decap is Decap without publishing the counters; it returns the inner
// packet's place, or the reason of a drop (already counted). Scalars, not
// a Result: Result has more fields than the compiler keeps in registers,
// and each copy of one between stack temporaries (a wide load of bytes
// just stored field by field) stalled on store forwarding; the copies
// cost more than the rest of the ESP framing.
//
// The packet is buf[off:off+n], parsed here, when given is nil; otherwise
// given is the caller's parse of the packet starting at buf[off]
// (DecapOuter), and n is unused. One function for both rather than a shared tail: the call to
// it cost Decap a few percent.
func (sa *SA) decap(buf []byte, off, n int, given *Outer) (start, length int, why Reason) {
	if sa.dir != Inbound {
		return sa.decapDrop(WrongDirection)
	}
	if sa.expired {
		return sa.decapDrop(HardLifetime)
	}
	// A local copy, not a pointer to the caller's: the fields stay where
	// the compiler put them when decap parsed every packet itself, and
	// Decap costs what it did.
	var o Outer
	var p []byte
	if given == nil {
		if off < 0 || n < 0 || off > len(buf) || n > len(buf)-off {
			return sa.decapDrop(Malformed)
		}
		p = buf[off : off+n]
		if why := parseOuter(p, &o); why != None {
			return sa.decapDrop(why)
		}
	} else {
		o = *given
		if off < 0 || off > len(buf) || o.End > len(buf)-off || o.NHOff < 0 || o.NHOff >= o.HdrEnd ||
			o.ESPOff < o.HdrEnd || o.End-o.ESPOff < espHdrLen {
			// Not ParseOuter's for this packet: a drop, not a panic.
			return sa.decapDrop(Malformed)
		}
		p = buf[off : off+o.End]
	}
	esp := p[o.ESPOff:o.End]
	ctLen := len(esp) - espHdrLen - int(sa.ivLen) - icvLen
	if ctLen < 2 {
		return sa.decapDrop(ShortPacket)
	}
	if ctLen&int(sa.blkMask) != 0 && !sa.has(flagAEAD) {
		return sa.decapDrop(BadLength)
	}
	if o.SPI != sa.spi {
		return sa.decapDrop(UnknownSPI)
	}
	seq := uint64(o.Seq)
	if sa.has(flagESN) {
		var ok bool
		if seq, ok = sa.win.InferSeq(o.Seq); !ok {
			return sa.decapDrop(ReplayTooOld)
		}
	}
	if !sa.has(flagNoReplay) {
		switch sa.win.Check(seq) {
		case replay.Duplicate:
			return sa.decapDrop(Replay)
		case replay.TooOld:
			return sa.decapDrop(ReplayTooOld)
		}
	}
	w := sa.hot()
	binary.BigEndian.PutUint32(w.seqHi[:], uint32(seq>>32))
	if !sa.open(w, esp, ctLen) {
		return sa.decapDrop(BadICV)
	}
	ivLen := int(sa.ivLen)
	pt := esp[espHdrLen+ivLen : espHdrLen+ivLen+ctLen]
	padLen := int(pt[ctLen-2])
	nh := pt[ctLen-1]
	if padLen+2 > ctLen {
		return sa.decapDrop(BadPadLength)
	}
	payLen := ctLen - 2 - padLen
	if !padOK(pt, padLen) {
		return sa.decapDrop(BadPadding)
	}
	// With anti-replay off the window still follows the highest number,
	// which ESN needs for the high bits.
	if sa.win.Update(seq) != replay.OK && !sa.has(flagNoReplay) {
		return sa.decapDrop(Replay)
	}
	if nh == iphdr.ProtoNoNext {
		return sa.decapDrop(Dummy)
	}
	payOff := off + o.ESPOff + espHdrLen + int(sa.ivLen)
	if sa.mode == Tunnel {
		start = payOff
		length, why = sa.finishTunnel(buf, payOff, payLen, nh, o.DS)
	} else {
		start, length, why = sa.finishTransport(buf, off, &o, payOff, payLen, nh)
	}
	if why != None {
		return sa.decapDrop(why)
	}
	sa.account(length)
	return start, length, None
}

// decapDrop counts a drop and returns decap's results for it.
func (sa *SA) decapDrop(r Reason) (start, length int, why Reason) {
	sa.count(r)
	return 0, 0, r
}

// padTail[k] is what the last 16 bytes of the encrypted part (padding,
// pad length, next header) hold, as two little-endian words, when the
// padding is k <= 14 bytes long, and the mask of the padding bytes.
var padTail = func() (t [15]struct{ want, mask [2]uint64 }) {
	for k := range t {
		var want, mask [16]byte
		for i := 0; i < k; i++ {
			want[14-k+i] = byte(i + 1)
			mask[14-k+i] = 0xff
		}
		t[k].want = [2]uint64{binary.LittleEndian.Uint64(want[:8]), binary.LittleEndian.Uint64(want[8:])}
		t[k].mask = [2]uint64{binary.LittleEndian.Uint64(mask[:8]), binary.LittleEndian.Uint64(mask[8:])}
	}
	return t
}()

// padOK reports whether the padLen bytes before the 2-byte trailer at the
// end of pt (the decrypted part) are 1, 2, 3, ... (RFC 4303 section 2.4).
// Up to 14 bytes (most padding at 16-byte alignment) are checked with two
// masked word compares of the last 16 bytes, not a call to memequal. The
// words are the halves of the last 16-byte block, which the ciphers wrote
// whole when pt's length is a multiple of 16, so the loads do not straddle
// two recent stores (a store-forwarding stall).
func padOK(pt []byte, padLen int) bool {
	if padLen <= 14 && len(pt) >= 16 {
		t := &padTail[padLen]
		w := pt[len(pt)-16:]
		return binary.LittleEndian.Uint64(w[:8])&t.mask[0] == t.want[0] &&
			binary.LittleEndian.Uint64(w[8:])&t.mask[1] == t.want[1]
	}
	return bytes.Equal(pt[len(pt)-2-padLen:len(pt)-2], padBytes[:padLen])
}

// open authenticates and decrypts esp in place; ctLen is the ciphertext's
// length (without IV and ICV). w.seqHi holds the inferred high bits.
func (sa *SA) open(w *warm, esp []byte, ctLen int) bool {
	if sa.has(flagAEAD) {
		*(*[8]byte)(w.nonce[ipsec.SaltLen:]) = *(*[8]byte)(esp[espHdrLen:])
		ct := esp[espHdrLen+8 : espHdrLen+8+ctLen+icvLen]
		_, err := w.aead.Open(ct[:0], w.nonce[:], ct, sa.aadFor(w, esp))
		return err == nil
	}
	return sa.openCBC(w, esp, ctLen)
}

// openCBC is open for the CBC suites: HMAC first, then decryption.
func (sa *SA) openCBC(w *warm, esp []byte, ctLen int) bool {
	authed := esp[:espHdrLen+16+ctLen]
	sum := sa.cbcICV(w, authed)
	if subtle.ConstantTimeCompare(sum[:icvLen], esp[espHdrLen+16+ctLen:espHdrLen+16+ctLen+icvLen]) != 1 {
		return false
	}
	ct := esp[espHdrLen+16 : espHdrLen+16+ctLen]
	w.cbc.iv.SetIV(esp[espHdrLen : espHdrLen+16])
	w.cbc.mode.CryptBlocks(ct, ct)
	return true
}

// ECN codepoints.
const (
	notECT = 0
	ect1   = 1
	ect0   = 2
	ce     = 3
)

// decapECN combines the outer and inner ECN fields as RFC 6040 section 4.2
// (figure 4) says; ok is false when the packet must be dropped.
func decapECN(outer, inner byte) (byte, bool) {
	switch {
	case outer == ce:
		if inner == notECT {
			return 0, false
		}
		return ce, true
	case outer == ect1 && inner == ect0:
		return ect1, true
	}
	return inner, true
}

// finishTunnel checks the inner packet at buf[payOff:payOff+payLen] and
// applies RFC 6040; it returns the inner packet's length or why to drop it
// (not yet counted).
func (sa *SA) finishTunnel(buf []byte, payOff, payLen int, nh, outerDS byte) (int, Reason) {
	p := buf[payOff : payOff+payLen]
	var innerLen int
	switch nh {
	case iphdr.ProtoIPv4:
		if payLen < iphdr.IPv4MinLen || p[0]>>4 != 4 {
			return 0, BadInner
		}
		ihl := int(p[0]&0xf) * 4
		innerLen = int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < iphdr.IPv4MinLen || innerLen < ihl || innerLen > payLen {
			return 0, BadInner
		}
		ds, ok := sa.decapDS(outerDS, p[1])
		if !ok {
			return 0, ECNDrop
		}
		if ds != p[1] {
			old := binary.BigEndian.Uint16(p[0:2])
			p[1] = ds
			ck := iphdr.UpdateChecksum16(binary.BigEndian.Uint16(p[10:12]), old, binary.BigEndian.Uint16(p[0:2]))
			binary.BigEndian.PutUint16(p[10:12], ck)
		}
	case iphdr.ProtoIPv6:
		if payLen < iphdr.IPv6Len || p[0]>>4 != 6 {
			return 0, BadInner
		}
		innerLen = iphdr.IPv6Len + int(binary.BigEndian.Uint16(p[4:6]))
		if innerLen > payLen {
			return 0, BadInner
		}
		in := p[0]<<4 | p[1]>>4
		ds, ok := sa.decapDS(outerDS, in)
		if !ok {
			return 0, ECNDrop
		}
		p[0] = 0x60 | ds>>4
		p[1] = ds<<4 | p[1]&0x0f
	default:
		return 0, BadNextHeader
	}
	// TFC padding (RFC 4303 section 2.7) may follow the inner packet.
	p = p[:innerLen]
	if sa.ts != nil && !sa.tsAllowed(p) {
		return 0, TSMismatch
	}
	return innerLen, None
}

// decapDS returns the inner DS field to forward.
func (sa *SA) decapDS(outer, inner byte) (byte, bool) {
	e, ok := decapECN(outer&3, inner&3)
	if !ok {
		return 0, false
	}
	dscp := inner &^ 3
	if sa.has(flagDecDSCP) {
		dscp = outer &^ 3
	}
	return dscp | e, true
}

// finishTransport moves the outer IP header chain forward onto the payload
// and makes it announce the payload's protocol and length.
// It returns the packet's place or why to drop it (not yet counted).
func (sa *SA) finishTransport(buf []byte, off int, o *Outer, payOff, payLen int, nh byte) (start, length int, why Reason) {
	switch nh {
	case iphdr.ProtoIPv4, iphdr.ProtoIPv6:
		// An IP packet inside a transport-mode SA would be a tunnel the
		// peer did not negotiate.
		return 0, 0, BadNextHeader
	}
	hl := o.HdrEnd
	start = payOff - hl
	copy(buf[start:payOff], buf[off:off+hl])
	h := buf[start:payOff]
	h[o.NHOff] = nh
	total := hl + payLen
	if o.V6 {
		binary.BigEndian.PutUint16(h[4:6], uint16(total-iphdr.IPv6Len))
	} else {
		binary.BigEndian.PutUint16(h[2:4], uint16(total))
		iphdr.SetIPv4Checksum(h)
	}
	p := buf[start : start+total]
	if sa.ts != nil && !sa.tsAllowed(p) {
		return 0, 0, TSMismatch
	}
	return start, total, None
}
