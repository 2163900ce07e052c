package ipfrag

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// Config bounds a Reassembler. Its memory, allocated once by New, is about
// MaxDatagrams * (MaxDatagramSize + 256 + 4*MaxFragments) bytes.
type Config struct {
	// MaxDatagrams is the number of datagrams in progress at once
	// (default 64). When all are busy, the oldest is evicted.
	MaxDatagrams int
	// MaxDatagramSize is the largest reassembled packet, headers included
	// (default 16384; at most 65535+40 for IPv6).
	MaxDatagramSize int
	// MaxFragments is the most fragments one datagram may have (default 64).
	MaxFragments int
	// Timeout is how long a datagram may take to complete (default 5 s;
	// RFC 8200 allows 60 s, but an ESP gateway's fragments arrive together).
	Timeout time.Duration
}

// hdrRoom is the room for the first fragment's header in front of the
// data; longer IPv6 unfragmentable parts are refused.
const hdrRoom = 256

type span struct{ off, end uint32 }

type slot struct {
	used     bool
	v6       bool
	proto    uint8
	id       uint32
	src, dst [16]byte
	born     int64 // nanoseconds
	hdrLen   int   // 0 until the first fragment arrived
	nhOff    int   // IPv6: where the next header naming the fragment header was (relative to the header)
	nh       uint8 // IPv6: the fragment header's next header
	total    int   // data length, -1 until the last fragment arrived
	got      int   // data bytes held
	spans    []span
	buf      []byte
}

// Reassembler reassembles IPv4 and IPv6 fragments. Owner goroutine only,
// except Stats.
type Reassembler struct {
	cfg     Config
	timeout int64
	slots   []slot
	drops   [NumReasons]atomic.Uint64
	done    atomic.Uint64
}

// New allocates a Reassembler with all its storage.
func New(cfg Config) (*Reassembler, error) {
	if cfg.MaxDatagrams == 0 {
		cfg.MaxDatagrams = 64
	}
	if cfg.MaxDatagramSize == 0 {
		cfg.MaxDatagramSize = 16384
	}
	if cfg.MaxFragments == 0 {
		cfg.MaxFragments = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxDatagrams < 1 || cfg.MaxDatagrams > 1<<16 {
		return nil, fmt.Errorf("ipfrag: MaxDatagrams %d out of range 1..65536", cfg.MaxDatagrams)
	}
	if cfg.MaxDatagramSize < 576 || cfg.MaxDatagramSize > 65535+iphdr.IPv6Len {
		return nil, fmt.Errorf("ipfrag: MaxDatagramSize %d out of range 576..65575", cfg.MaxDatagramSize)
	}
	if cfg.MaxFragments < 2 || cfg.MaxFragments > 8192 {
		return nil, fmt.Errorf("ipfrag: MaxFragments %d out of range 2..8192", cfg.MaxFragments)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("ipfrag: negative timeout %v", cfg.Timeout)
	}
	r := &Reassembler{cfg: cfg, timeout: int64(cfg.Timeout), slots: make([]slot, cfg.MaxDatagrams)}
	for i := range r.slots {
		r.slots[i].buf = make([]byte, hdrRoom+cfg.MaxDatagramSize)
		r.slots[i].spans = make([]span, 0, cfg.MaxFragments)
	}
	return r, nil
}

// Stats is a snapshot of a Reassembler's counters.
type Stats struct {
	Reassembled uint64
	Drops       [NumReasons]uint64
}

// Stats returns the counters; safe from any goroutine.
func (r *Reassembler) Stats() Stats {
	var s Stats
	s.Reassembled = r.done.Load()
	for i := range s.Drops {
		s.Drops[i] = r.drops[i].Load()
	}
	return s
}

func (r *Reassembler) count(why Reason) {
	c := &r.drops[why]
	c.Store(c.Load() + 1)
}

// Status is the outcome of Add.
type Status uint8

// The statuses Add returns; only Dropped comes with a Reason other than
// None, except that a Duplicate is Held (the datagram goes on without it).
const (
	// Held: the fragment was stored; the datagram is not complete yet.
	Held Status = iota
	// Complete: Add returned the whole datagram.
	Complete
	// Dropped: the fragment was refused (and maybe its datagram); see the reason.
	Dropped
)

// fragInfo is what parsing a fragment yields.
type fragInfo struct {
	v6       bool
	proto    uint8
	id       uint32
	src, dst [16]byte
	hdrLen   int // header bytes before the data (IPv4 header, or IPv6 up to and including the fragment header)
	keepLen  int // header bytes to keep for the datagram (IPv4 header, or IPv6 unfragmentable part)
	nhOff    int // IPv6: offset of the next-header byte that names the fragment header
	nh       uint8
	off      int
	mf       bool
	data     []byte
	hdr      []byte // the header to keep: IPv4 header or IPv6 unfragmentable part
}

// Add offers the IP packet pkt (cut to its length or with padding after it)
// at time now (nanoseconds, any monotonic origin). A packet that is not a
// fragment comes back as it is with Complete. When pkt completes a
// datagram, Add returns it with Complete: the slice points into the
// Reassembler's storage and stays valid until the next call to Add or
// Expire. It allocates nothing.
func (r *Reassembler) Add(pkt []byte, now int64) ([]byte, Status, Reason) {
	var fi fragInfo
	whole, why := parseFragment(pkt, &fi)
	if why != None {
		r.count(why)
		return nil, Dropped, why
	}
	if whole != nil {
		return whole, Complete, None
	}
	s := r.find(&fi, now)
	if s == nil {
		s = r.alloc(&fi, now)
	}
	return r.insert(s, &fi)
}

func parseFragment(pkt []byte, fi *fragInfo) ([]byte, Reason) {
	if len(pkt) < 1 {
		return nil, Malformed
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < iphdr.IPv4MinLen {
			return nil, Malformed
		}
		hl := int(pkt[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(pkt[2:4]))
		if hl < iphdr.IPv4MinLen || tot < hl || tot > len(pkt) {
			return nil, Malformed
		}
		pkt = pkt[:tot]
		fo := binary.BigEndian.Uint16(pkt[6:8])
		if fo&(iphdr.IPv4FlagMF|iphdr.IPv4OffsetMask) == 0 {
			return pkt, None
		}
		fi.proto = pkt[9]
		fi.id = uint32(binary.BigEndian.Uint16(pkt[4:6]))
		copy(fi.src[:4], pkt[12:16])
		copy(fi.dst[:4], pkt[16:20])
		fi.hdrLen, fi.keepLen = hl, hl
		fi.off = int(fo&iphdr.IPv4OffsetMask) * 8
		fi.mf = fo&iphdr.IPv4FlagMF != 0
		fi.data = pkt[hl:]
		fi.hdr = pkt[:hl]
	case 6:
		if len(pkt) < iphdr.IPv6Len {
			return nil, Malformed
		}
		tot := iphdr.IPv6Len + int(binary.BigEndian.Uint16(pkt[4:6]))
		if tot > len(pkt) {
			return nil, Malformed
		}
		pkt = pkt[:tot]
		// Find the fragment header, remembering the byte that names it.
		proto, off, nhOff := pkt[6], iphdr.IPv6Len, 6
		for i := 0; proto != iphdr.ProtoFragment; i++ {
			if !iphdr.IsIPv6ExtHeader(proto) || i == 8 {
				return pkt, None // not a fragment
			}
			if off+8 > len(pkt) {
				return nil, Malformed
			}
			hlen := (int(pkt[off+1]) + 1) * 8
			if off+hlen > len(pkt) {
				return nil, Malformed
			}
			proto, nhOff = pkt[off], off
			off += hlen
		}
		if off+iphdr.IPv6FragLen > len(pkt) || off > hdrRoom {
			return nil, Malformed
		}
		fh := pkt[off : off+iphdr.IPv6FragLen]
		fo := binary.BigEndian.Uint16(fh[2:4])
		fi.v6 = true
		fi.nh = fh[0]
		fi.proto = fh[0]
		fi.id = binary.BigEndian.Uint32(fh[4:8])
		copy(fi.src[:], pkt[8:24])
		copy(fi.dst[:], pkt[24:40])
		fi.keepLen, fi.nhOff = off, nhOff
		fi.hdrLen = off + iphdr.IPv6FragLen
		fi.off = int(fo &^ 7)
		fi.mf = fo&1 != 0
		fi.data = pkt[fi.hdrLen:]
		fi.hdr = pkt[:off]
		if fi.off == 0 && !fi.mf {
			// An atomic fragment (RFC 6946): a whole datagram. Handed on
			// with its fragment header, which the ESP parser refuses; it
			// is rare and harmless to drop there.
			return pkt, None
		}
	default:
		return nil, Malformed
	}
	if fi.mf && (len(fi.data) == 0 || len(fi.data)%8 != 0) {
		return nil, Malformed
	}
	return nil, None
}

func (r *Reassembler) find(fi *fragInfo, now int64) *slot {
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && s.id == fi.id && s.v6 == fi.v6 && s.src == fi.src && s.dst == fi.dst && (fi.v6 || s.proto == fi.proto) {
			if now-s.born > r.timeout {
				r.count(Timeout)
				s.used = false
				return nil
			}
			return s
		}
	}
	return nil
}

// alloc takes a free slot, else one that timed out, else the oldest.
func (r *Reassembler) alloc(fi *fragInfo, now int64) *slot {
	var victim *slot
	for i := range r.slots {
		s := &r.slots[i]
		if !s.used {
			victim = s
			break
		}
		if now-s.born > r.timeout {
			r.count(Timeout)
			s.used = false
			victim = s
			break
		}
		if victim == nil || s.born < victim.born {
			victim = s
		}
	}
	if victim.used {
		r.count(Evicted)
	}
	*victim = slot{used: true, v6: fi.v6, proto: fi.proto, id: fi.id, src: fi.src, dst: fi.dst,
		born: now, total: -1, spans: victim.spans[:0], buf: victim.buf}
	return victim
}

func (r *Reassembler) fail(s *slot, why Reason) ([]byte, Status, Reason) {
	s.used = false
	r.count(why)
	return nil, Dropped, why
}

func (r *Reassembler) insert(s *slot, fi *fragInfo) ([]byte, Status, Reason) {
	off, end := fi.off, fi.off+len(fi.data)
	limit := r.cfg.MaxDatagramSize - fi.keepLen
	if s.hdrLen != 0 {
		limit = r.cfg.MaxDatagramSize - s.hdrLen
	}
	if end > limit || (!fi.v6 && fi.hdrLen+end > 65535) || (fi.v6 && end > 65535) {
		return r.fail(s, TooBig)
	}
	for _, sp := range s.spans {
		if int(sp.off) == off && int(sp.end) == end {
			r.count(Duplicate)
			return nil, Held, Duplicate
		}
		if off < int(sp.end) && int(sp.off) < end {
			return r.fail(s, Overlap)
		}
	}
	if !fi.mf {
		if s.total >= 0 && s.total != end {
			return r.fail(s, Inconsistent)
		}
		s.total = end
	}
	if s.total >= 0 {
		for _, sp := range s.spans {
			if int(sp.end) > s.total {
				return r.fail(s, Inconsistent)
			}
		}
		if end > s.total {
			return r.fail(s, Inconsistent)
		}
	}
	if len(s.spans) == cap(s.spans) {
		return r.fail(s, TooManyFragments)
	}
	s.spans = append(s.spans, span{uint32(off), uint32(end)})
	copy(s.buf[hdrRoom+off:], fi.data)
	s.got += len(fi.data)
	if off == 0 {
		copy(s.buf[hdrRoom-fi.keepLen:hdrRoom], fi.hdr)
		s.hdrLen, s.nhOff, s.nh = fi.keepLen, fi.nhOff, fi.nh
	}
	if s.total < 0 || s.got != s.total || s.hdrLen == 0 {
		return nil, Held, None
	}
	// Complete: no overlaps and as many bytes as the length, so no holes.
	s.used = false
	out := s.buf[hdrRoom-s.hdrLen : hdrRoom+s.total]
	h := out[:s.hdrLen]
	if s.v6 {
		h[s.nhOff] = s.nh
		binary.BigEndian.PutUint16(h[4:6], uint16(len(out)-iphdr.IPv6Len))
	} else {
		binary.BigEndian.PutUint16(h[2:4], uint16(len(out)))
		binary.BigEndian.PutUint16(h[6:8], binary.BigEndian.Uint16(h[6:8])&iphdr.IPv4FlagDF)
		iphdr.SetIPv4Checksum(h)
	}
	r.done.Store(r.done.Load() + 1)
	return out, Complete, None
}

// Expire drops the datagrams older than the timeout (counted as Timeout).
// Call it now and then (for example once per batch); Add also expires the
// datagrams it meets.
func (r *Reassembler) Expire(now int64) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && now-s.born > r.timeout {
			s.used = false
			r.count(Timeout)
		}
	}
}

// InProgress returns the number of datagrams being reassembled.
func (r *Reassembler) InProgress() int {
	n := 0
	for i := range r.slots {
		if r.slots[i].used {
			n++
		}
	}
	return n
}
