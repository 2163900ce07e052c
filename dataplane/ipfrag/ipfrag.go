// Package ipfrag fragments IPv4 and IPv6 packets into caller-provided
// buffers and reassembles fragments (of outer ESP packets, in spugate) from
// storage allocated once, with hard limits that a hostile sender cannot push
// past: datagrams in progress, bytes per datagram, fragments per datagram
// and a timeout. Every refused fragment is counted by Reason.
//
// A Reassembler belongs to one goroutine (its SPU). Fragment and
// Reassembler.Add allocate nothing.
package ipfrag

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// Errors of Fragment (fixed values: the per-packet path does not allocate).
var (
	ErrMalformed   = errors.New("ipfrag: not a valid IPv4 or IPv6 packet")
	ErrDF          = errors.New("ipfrag: IPv4 packet has DF set")
	ErrMTU         = errors.New("ipfrag: MTU too small to carry the headers and 8 bytes of data")
	ErrBuffers     = errors.New("ipfrag: not enough buffers, or a buffer smaller than the MTU")
	ErrAlreadyFrag = errors.New("ipfrag: IPv6 packet is already a fragment")
)

// Fits reports whether pkt (an IP packet) needs no fragmenting for mtu.
func Fits(pkt []byte, mtu int) bool { return len(pkt) <= mtu }

// Fragment splits the IP packet pkt (cut to its length) into fragments of
// at most mtu bytes, written into dst[0], dst[1], ... (each resliced to the
// fragment's length; each must have a capacity of at least mtu). IPv4
// fragments keep pkt's identification and honour DF; IPv6 fragments get a
// fragment header with identification id (RFC 8200 section 4.5). It returns
// the number of fragments.
func Fragment(dst [][]byte, pkt []byte, mtu int, id uint32) (int, error) {
	if len(pkt) < 1 {
		return 0, ErrMalformed
	}
	switch pkt[0] >> 4 {
	case 4:
		return fragment4(dst, pkt, mtu)
	case 6:
		return fragment6(dst, pkt, mtu, id)
	}
	return 0, ErrMalformed
}

func fragment4(dst [][]byte, pkt []byte, mtu int) (int, error) {
	if len(pkt) < iphdr.IPv4MinLen {
		return 0, ErrMalformed
	}
	hl := int(pkt[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(pkt[2:4]))
	if hl < iphdr.IPv4MinLen || tot < hl || tot > len(pkt) {
		return 0, ErrMalformed
	}
	pkt = pkt[:tot]
	fo := binary.BigEndian.Uint16(pkt[6:8])
	if fo&iphdr.IPv4FlagDF != 0 && tot > mtu {
		return 0, ErrDF
	}
	if tot <= mtu {
		if len(dst) < 1 || cap(dst[0]) < tot {
			return 0, ErrBuffers
		}
		dst[0] = append(dst[0][:0], pkt...)
		return 1, nil
	}
	// Later fragments carry only the options with the copy flag (RFC 791).
	var later [iphdr.IPv4MaxLen]byte
	copy(later[:iphdr.IPv4MinLen], pkt[:iphdr.IPv4MinLen])
	lhl := iphdr.IPv4MinLen
	for o := iphdr.IPv4MinLen; o < hl; {
		t := pkt[o]
		if t == 0 { // end of options
			break
		}
		if t == 1 { // no-op
			o++
			continue
		}
		if o+1 >= hl || pkt[o+1] < 2 || o+int(pkt[o+1]) > hl {
			return 0, ErrMalformed
		}
		l := int(pkt[o+1])
		if t&0x80 != 0 {
			copy(later[lhl:], pkt[o:o+l])
			lhl += l
		}
		o += l
	}
	for lhl%4 != 0 {
		later[lhl] = 0
		lhl++
	}
	later[0] = 0x40 | byte(lhl/4)

	baseOff := int(fo&iphdr.IPv4OffsetMask) * 8
	lastMF := fo&iphdr.IPv4FlagMF != 0
	data := pkt[hl:]
	if (mtu-lhl)&^7 < 8 || (mtu-hl)&^7 < 8 {
		return 0, ErrMTU
	}
	n := 0
	for off := 0; off < len(data); n++ {
		h := pkt[:hl]
		if off > 0 {
			h = later[:lhl]
		}
		chunk := (mtu - len(h)) &^ 7
		mf := true
		if off+chunk >= len(data) {
			chunk = len(data) - off
			mf = lastMF
		}
		if n >= len(dst) || cap(dst[n]) < len(h)+chunk {
			return 0, ErrBuffers
		}
		f := dst[n][:len(h)+chunk]
		copy(f, h)
		copy(f[len(h):], data[off:off+chunk])
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		v := uint16((baseOff+off)/8) | fo&iphdr.IPv4FlagDF
		if mf {
			v |= iphdr.IPv4FlagMF
		}
		binary.BigEndian.PutUint16(f[6:8], v)
		iphdr.SetIPv4Checksum(f[:len(h)])
		dst[n] = f
		off += chunk
	}
	return n, nil
}

func fragment6(dst [][]byte, pkt []byte, mtu int, id uint32) (int, error) {
	if len(pkt) < iphdr.IPv6Len {
		return 0, ErrMalformed
	}
	tot := iphdr.IPv6Len + int(binary.BigEndian.Uint16(pkt[4:6]))
	if tot > len(pkt) {
		return 0, ErrMalformed
	}
	pkt = pkt[:tot]
	if tot <= mtu {
		if len(dst) < 1 || cap(dst[0]) < tot {
			return 0, ErrBuffers
		}
		dst[0] = append(dst[0][:0], pkt...)
		return 1, nil
	}
	info, ok := iphdr.IPv6Walk(pkt)
	if !ok {
		return 0, ErrMalformed
	}
	if info.FragOff != 0 {
		return 0, ErrAlreadyFrag
	}
	uf := info.Unfragmentable
	nh := pkt[info.UnfragNextHeaderOff]
	data := pkt[uf:]
	chunkMax := (mtu - uf - iphdr.IPv6FragLen) &^ 7
	if chunkMax < 8 {
		return 0, ErrMTU
	}
	n := 0
	for off := 0; off < len(data); n++ {
		chunk := chunkMax
		mf := true
		if off+chunk >= len(data) {
			chunk, mf = len(data)-off, false
		}
		flen := uf + iphdr.IPv6FragLen + chunk
		if n >= len(dst) || cap(dst[n]) < flen {
			return 0, ErrBuffers
		}
		f := dst[n][:flen]
		copy(f, pkt[:uf])
		f[info.UnfragNextHeaderOff] = iphdr.ProtoFragment
		binary.BigEndian.PutUint16(f[4:6], uint16(flen-iphdr.IPv6Len))
		fh := f[uf : uf+iphdr.IPv6FragLen]
		fh[0], fh[1] = nh, 0
		v := uint16(off) // a multiple of 8: offset in 8-byte units << 3
		if mf {
			v |= 1
		}
		binary.BigEndian.PutUint16(fh[2:4], v)
		binary.BigEndian.PutUint32(fh[4:8], id)
		copy(f[uf+iphdr.IPv6FragLen:], data[off:off+chunk])
		dst[n] = f
		off += chunk
	}
	return n, nil
}

// Reason says why the reassembler refused a fragment.
type Reason uint8

// The reasons, each an index into Stats.Drops.
const (
	// None: the fragment was taken (Held or Complete).
	None Reason = iota
	// Malformed: not a valid fragment (lengths, offsets, headers).
	Malformed
	// TooBig: the datagram would exceed MaxDatagramSize or 65535 bytes.
	TooBig
	// TooManyFragments: more fragments than MaxFragments for one datagram.
	TooManyFragments
	// Overlap: fragments overlap; the whole datagram is dropped (RFC 5722).
	Overlap
	// Duplicate: an exact copy of a fragment already held.
	Duplicate
	// Inconsistent: two last fragments, or data beyond the end.
	Inconsistent
	// Timeout: the datagram was not complete in time (counted per datagram).
	Timeout
	// Evicted: the datagram was dropped to make room for a new one (per datagram).
	Evicted
	// NumReasons is the number of reasons, the length of Stats.Drops.
	NumReasons
)

var reasonNames = [NumReasons]string{"none", "malformed", "too-big", "too-many-fragments", "overlap", "duplicate", "inconsistent", "timeout", "evicted"}

// String is the reason's name in logs and test failures
// ("too-many-fragments"), or "reason(N)" past NumReasons.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}
