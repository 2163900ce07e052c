package esp

import (
	"encoding/binary"
	"github.com/spugate/spugate/ipsec"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// Result is the outcome of Encap or Decap on one packet.
type Result struct {
	// Off and Len locate the resulting packet in the caller's buffer: the
	// ESP packet (outer IP header first) after Encap, the inner packet
	// after Decap. For SendTooBig they locate the untouched inner packet.
	Off, Len int
	// Verdict and Reason (the embedded Outcome) say what to do with the
	// packet and why it was dropped.
	Outcome
	// MTU is the MTU to announce in the ICMP reply when Verdict is SendTooBig,
	// and the path MTU to cut the outer packet to when it is Fragment.
	MTU int
}

// Outcome is the verdict on a packet and the reason of a drop. It is a
// struct of its own, embedded in Result, so that Result has four fields:
// the compiler keeps a struct of at most four fields in registers, and
// one of five fields was returned through the stack and copied whole into
// the caller's variable, a wide load of bytes just stored field by field
// that stalls on store forwarding in every caller.
type Outcome struct {
	// Verdict says what the caller does with the packet.
	Verdict Verdict
	// Reason is set when Verdict is Drop or SendTooBig.
	Reason Reason
}

// Encap protects the IP packet at buf[off:off+n] in place, growing it
// towards the front (at most MaxHeadGrowth bytes; give Headroom so that an
// Ethernet header fits too) and the back (at most MaxTailGrowth bytes, within
// len(buf)). Bytes of buf past the IP packet's own length (Ethernet padding)
// are ignored. It allocates nothing. Owner only.
func (sa *SA) Encap(buf []byte, off, n int) Result {
	start, length, mtu, v, why := sa.encap(buf, off, n)
	sa.publish()
	return Result{Off: start, Len: length, Outcome: Outcome{Verdict: v, Reason: why}, MTU: mtu}
}

// encap is Encap without publishing the counters. It returns the fields
// of a Result as scalars: Result has more fields than the compiler keeps
// in registers, and copying it between stack temporaries cost a
// store-forwarding stall per copy (see decap).
func (sa *SA) encap(buf []byte, off, n int) (start, length, mtu int, v Verdict, why Reason) {
	if sa.dir != Outbound {
		return sa.encapDrop(WrongDirection)
	}
	if sa.expired {
		return sa.encapDrop(HardLifetime)
	}
	if off < 0 || n < 1 || off > len(buf) || n > len(buf)-off {
		return sa.encapDrop(Malformed)
	}
	p := buf[off : off+n]
	var (
		ds    byte // the inner DS field (DSCP and ECN)
		df    bool // the inner packet may not be fragmented
		v6    bool
		nh    byte // next header of the ESP trailer
		hl    int  // transport mode: header bytes that stay in front
		nhOff int  // transport mode: offset of the next-header byte to rewrite
	)
	switch p[0] >> 4 {
	case 4:
		if n < iphdr.IPv4MinLen {
			return sa.encapDrop(Malformed)
		}
		ihl := int(p[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(p[2:4]))
		if ihl < iphdr.IPv4MinLen || tot < ihl || tot > n {
			return sa.encapDrop(Malformed)
		}
		n = tot
		ds = p[1]
		df = p[6]&0x40 != 0
		nh = iphdr.ProtoIPv4
		if sa.mode == Transport {
			// RFC 4303 section 3.3: transport mode protects whole
			// datagrams only, never fragments.
			if binary.BigEndian.Uint16(p[6:8])&(iphdr.IPv4FlagMF|iphdr.IPv4OffsetMask) != 0 {
				return sa.encapDrop(Malformed)
			}
			hl, nhOff, nh = ihl, 9, p[9]
		}
	case 6:
		if n < iphdr.IPv6Len {
			return sa.encapDrop(Malformed)
		}
		tot := iphdr.IPv6Len + int(binary.BigEndian.Uint16(p[4:6]))
		if tot > n {
			return sa.encapDrop(Malformed)
		}
		n = tot
		ds = p[0]<<4 | p[1]>>4
		df, v6 = true, true
		nh = iphdr.ProtoIPv6
		if sa.mode == Transport {
			info, ok := iphdr.IPv6Walk(p[:n])
			if !ok || info.FragOff != 0 {
				return sa.encapDrop(Malformed)
			}
			hl, nhOff = info.Unfragmentable, info.UnfragNextHeaderOff
			nh = p[nhOff]
		}
	default:
		return sa.encapDrop(Malformed)
	}
	if sa.seq.Load() >= sa.seqMax() {
		sa.raise(EventSeqExhausted)
		return sa.encapDrop(SeqExhausted)
	}

	payLen := n - hl
	pad := -(payLen + 2) & int(sa.blkMask)
	ctLen := payLen + pad + 2
	grow := int(sa.udpLen) + espHdrLen + int(sa.ivLen)
	ipLen := hl
	if sa.mode == Tunnel {
		grow += int(sa.ipLen)
		ipLen = int(sa.ipLen)
	}
	outLen := n + grow + pad + 2 + icvLen
	if off < grow || len(buf)-off-n < pad+2+icvLen {
		return sa.encapDrop(NoRoom)
	}
	verdict := Forward
	if outLen > int(sa.pathMTU) {
		if !df || sa.has(flagFragBig) || (v6 && n <= iphdr.IPv6MinMTU) {
			verdict = Fragment
		} else {
			mtu = sa.innerMTU(ipLen, hl)
			if min := iphdr.IPv4MinMTU; !v6 && mtu < min {
				mtu = min
			} else if v6 && mtu < iphdr.IPv6MinMTU {
				mtu = iphdr.IPv6MinMTU
			}
			sa.count(TooBig)
			return off, n, mtu, SendTooBig, TooBig
		}
	}
	if sa.speedPad != 0 && verdict == Forward {
		extra := sa.extraPad(ctLen, outLen, len(buf)-off-n-(pad+2+icvLen))
		pad += extra
		ctLen += extra
		outLen += extra
	}
	w := sa.hot()
	seq := sa.seq.Load() + 1
	sa.seq.Store(seq)

	// The padding is 1, 2, 3, ... (RFC 4303 section 2.4). The first 16
	// bytes go in one fixed-size copy: the tailroom checked above holds
	// pad+2+icvLen >= 16 bytes, and whatever lands past the trailer is
	// overwritten by the ICV.
	t := buf[off+n : off+n+pad+2+icvLen]
	copy(t[:16], padBytes[:16])
	if pad > 16 {
		copy(t[16:pad], padBytes[16:pad])
	}
	t[pad] = byte(pad)
	t[pad+1] = nh

	start = off - grow
	proto := byte(iphdr.ProtoESP)
	if sa.udp {
		proto = iphdr.ProtoUDP
	}
	espOff := start + ipLen + int(sa.udpLen)
	if sa.mode == Tunnel {
		setDF := verdict != Fragment && (sa.df == DFSet || (sa.df == DFCopy && df))
		sa.writeOuter(w, buf[start:start+int(sa.ipLen)], outLen, ds, setDF)
	} else {
		h := buf[start : start+hl]
		copy(h, buf[off:off+hl])
		h[nhOff] = proto
		if v6 {
			binary.BigEndian.PutUint16(h[4:6], uint16(outLen-iphdr.IPv6Len))
		} else {
			binary.BigEndian.PutUint16(h[2:4], uint16(outLen))
			if verdict == Fragment {
				h[6] &^= 0x40
			}
			iphdr.SetIPv4Checksum(h)
		}
	}
	if sa.udp {
		u := buf[espOff-iphdr.UDPLen : espOff]
		binary.BigEndian.PutUint16(u[0:2], sa.lport)
		binary.BigEndian.PutUint16(u[2:4], sa.rport)
		binary.BigEndian.PutUint16(u[4:6], uint16(start+outLen-(espOff-iphdr.UDPLen)))
		u[6], u[7] = 0, 0
	}
	esp := buf[espOff : start+outLen]
	binary.BigEndian.PutUint32(esp[0:4], sa.spi)
	binary.BigEndian.PutUint32(esp[4:8], uint32(seq))
	sa.seal(w, esp, seq, ctLen)
	if sa.udp && !sa.v4outer && !sa.has(flagZeroCk6) {
		udpChecksum6(w, buf[espOff-iphdr.UDPLen:start+outLen])
	}

	sa.account(n)
	if seq >= sa.seqSoft {
		sa.raise(EventSeqNearExhaustion)
	}
	if verdict == Fragment {
		mtu = int(sa.pathMTU) // the size to cut the outer packet to
	}
	return start, outLen, mtu, verdict, None
}

// encapDrop counts a drop and returns encap's results for it.
func (sa *SA) encapDrop(r Reason) (start, length, mtu int, v Verdict, why Reason) {
	sa.count(r)
	return 0, 0, 0, Drop, r
}

// outerDS is the outer DS field for an inner one (RFC 6040 and RFC 2983).
func (sa *SA) outerDS(inner byte) byte {
	var ds byte
	if !sa.has(flagNoDSCP) {
		ds = inner &^ 3
	}
	if sa.ecn == ECNNormal {
		ds |= inner & 3
	}
	return ds
}

// writeOuter writes the tunnel-mode outer IP header into h.
func (sa *SA) writeOuter(w *warm, h []byte, outLen int, innerDS byte, setDF bool) {
	ds := sa.outerDS(innerDS)
	if sa.v4outer {
		// An array assignment copies the template inline; copy() of a
		// slice called memmove.
		*(*[iphdr.IPv4MinLen]byte)(h) = w.hdr4
		h = h[:iphdr.IPv4MinLen]
		var frag uint16
		if setDF {
			frag = iphdr.IPv4FlagDF
		}
		id := sa.ipID
		sa.ipID++
		h[1] = ds
		binary.BigEndian.PutUint16(h[2:4], uint16(outLen))
		binary.BigEndian.PutUint16(h[4:6], id)
		binary.BigEndian.PutUint16(h[6:8], frag)
		sum := w.hdrSum + uint64(ds) + uint64(outLen) + uint64(id) + uint64(frag)
		binary.BigEndian.PutUint16(h[10:12], ^iphdr.Fold(sum))
		return
	}
	*(*[iphdr.IPv6Len]byte)(h) = w.hdr6
	h = h[:iphdr.IPv6Len]
	h[0] = 0x60 | ds>>4
	h[1] = ds<<4 | w.hdr6[1]&0x0f
	binary.BigEndian.PutUint16(h[4:6], uint16(outLen-iphdr.IPv6Len))
}

// udpChecksum6 fills the checksum of the UDP datagram u over IPv6.
func udpChecksum6(w *warm, u []byte) {
	ck := iphdr.Checksum(u, w.hdrSum+uint64(len(u)))
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], ck)
}

// seal encrypts and authenticates the ESP packet esp: header (SPI and
// sequence number already written), room for the IV, ctLen bytes of
// plaintext with its trailer, and room for the ICV.
func (sa *SA) seal(w *warm, esp []byte, seq uint64, ctLen int) {
	binary.BigEndian.PutUint32(w.seqHi[:], uint32(seq>>32))
	if sa.has(flagAEAD) {
		iv := esp[espHdrLen : espHdrLen+8]
		// RFC 4106 section 3.1 and RFC 7634 section 2: the IV must never
		// repeat under one key; the sequence number never does.
		binary.BigEndian.PutUint64(iv, seq)
		sa.sealAEAD(w, esp, ctLen)
		return
	}
	sa.ivFor(w, esp[espHdrLen:espHdrLen+16], seq)
	sa.sealCBC(w, esp, ctLen)
}

// sealAEAD seals with the IV already in the packet (also used by the
// known-answer tests, whose IVs are not sequence numbers).
func (sa *SA) sealAEAD(w *warm, esp []byte, ctLen int) {
	copy(w.nonce[ipsec.SaltLen:], esp[espHdrLen:espHdrLen+8])
	pt := esp[espHdrLen+8 : espHdrLen+8+ctLen]
	w.aead.Seal(pt[:0], w.nonce[:], pt, sa.aadFor(w, esp))
}

// aadFor returns the AAD of RFC 4106 section 5 / RFC 7634 section 2.1 for
// the ESP packet esp, whose SPI is the SA's (written by Encap, checked by
// Decap before the ICV): without ESN the packet's own SPI and sequence
// number; with ESN, built in w.aad with the high half kept in w.seqHi.
func (sa *SA) aadFor(w *warm, esp []byte) []byte {
	if sa.has(flagESN) {
		copy(w.aad[4:8], w.seqHi[:])
		copy(w.aad[8:12], esp[4:8])
		return w.aad[:12]
	}
	return esp[:8]
}

func (sa *SA) sealCBC(w *warm, esp []byte, ctLen int) {
	iv := esp[espHdrLen : espHdrLen+16]
	pt := esp[espHdrLen+16 : espHdrLen+16+ctLen]
	w.cbc.iv.SetIV(iv)
	w.cbc.mode.CryptBlocks(pt, pt)
	sum := sa.cbcICV(w, esp[:espHdrLen+16+ctLen])
	copy(esp[espHdrLen+16+ctLen:], sum[:icvLen])
}

// cbcICV computes HMAC-SHA-256 over the authenticated part of the packet
// and, with ESN, the high sequence bits appended as RFC 4303 section
// 3.3.2.1 prescribes (sent nowhere, only hashed).
func (sa *SA) cbcICV(w *warm, authed []byte) []byte {
	c := w.cbc
	c.mac.Reset()
	c.mac.Write(authed)
	if sa.has(flagESN) {
		c.mac.Write(w.seqHi[:])
	}
	return c.mac.Sum(c.macSum[:0])
}
