package spu

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/spugate/spugate/dataplane/esp"
)

// Point is where on an SPU's path a packet is captured.
type Point uint8

// Capture points.
const (
	PointESPIn    Point = iota // ESP as received, before decapsulation
	PointClearOut              // the inner packet after decapsulation
	PointClearIn               // cleartext matched to an SA, before encapsulation
	PointESPOut                // the ESP packet as sent
	PointDrop                  // a packet the SPU dropped, with the reason
	// NumPoints is the number of capture points.
	NumPoints
)

var pointNames = [NumPoints]string{"esp-in", "clear-out", "clear-in", "esp-out", "drop"}

// String returns the point's name as spuctl capture --point takes it.
func (p Point) String() string {
	if p < NumPoints {
		return pointNames[p]
	}
	return fmt.Sprintf("point(%d)", p)
}

// ParsePoints reads a comma-separated list of point names ("" or "all":
// every point) into a mask with bit 1<<Point set for each.
func ParsePoints(s string) (uint8, error) {
	if s == "" || s == "all" {
		return 1<<NumPoints - 1, nil
	}
	var m uint8
	for _, n := range strings.Split(s, ",") {
		found := false
		for i, pn := range pointNames {
			if strings.TrimSpace(n) == pn {
				m |= 1 << i
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("capture point %q: not one of %s", n, strings.Join(pointNames[:], ", "))
		}
	}
	return m, nil
}

// CaptureFilter says which packets a capture copies: all its fields must
// match (zero: any).
type CaptureFilter struct {
	// SPI is an SA's SPI: its ESP packets and the cleartext it carries.
	SPI uint32
	// ReqID is a Child SA's reqid: the packets of every SA of it (a
	// tunnel across rekeys).
	ReqID uint32
	// Points is a mask of 1<<Point; 0 takes every point.
	Points uint8
}

// CaptureRecord describes one captured packet; its bytes follow in the
// buffer Read fills.
type CaptureRecord struct {
	// Time is when the SPU saw the packet (unix nanoseconds).
	Time int64
	// SPU is the SPU that saw it.
	SPU int
	// Point is where.
	Point Point
	// Drop and SAReason say why a packet at PointDrop was dropped:
	// SAReason when Drop is DropSA.
	Drop     Drop
	SAReason esp.Reason
	// SPI and ReqID are the SA's when one is known (0 otherwise).
	SPI, ReqID uint32
	// Len is the packet's length, N the bytes captured (at most the
	// snap length).
	Len, N int
}

// Reason returns the drop's counter name as spuctl stats shows it
// (unknown_spi, sa_replay, ...), "" for a record not at PointDrop.
func (r *CaptureRecord) Reason() string {
	if r.Point != PointDrop {
		return ""
	}
	if r.Drop == DropSA {
		return "sa_" + r.SAReason.String()
	}
	return r.Drop.String()
}

// capSlot is one preallocated record of a capture ring; its bytes are the
// ring's data[i*snap:].
type capSlot struct {
	time       int64
	spi, reqid uint32
	len, n     int32
	point      Point
	drop       Drop
	saReason   esp.Reason
}

// capRing is one SPU's part of a capture: a single-producer (the SPU),
// single-consumer (the reader) ring of preallocated slots, so that
// capturing allocates nothing on the packet path. A full ring loses the
// copy (counted), never the packet.
type capRing struct {
	f     CaptureFilter
	snap  int
	mask  uint64
	slots []capSlot
	data  []byte
	// head is the next slot the SPU fills, tail the next the reader takes.
	head, tail atomic.Uint64
	lost       atomic.Uint64
}

// Capture is a capture running on some of an engine's SPUs: each has a
// ring of its own, installed in the SPU's capture slot, which the SPU
// reads once per pass of its loop (nil, the only cost when no capture
// runs).
type Capture struct {
	e     *Engine
	rings []*capRing // by SPU id; nil for SPUs not captured
	next  int        // the ring Read starts at, for fairness
}

// MaxCaptureMemory bounds the ring memory of one SPU's capture: the slots
// are fewer as the snap length grows.
const MaxCaptureMemory = 4 << 20

// maxCaptureSlots is the most slots a ring has (a power of two).
const maxCaptureSlots = 1024

// StartCapture installs a capture on the SPUs listed (all when spus is
// empty), each with a ring of snap-byte records. One capture runs at a
// time; Stop ends it.
func (e *Engine) StartCapture(f CaptureFilter, spus []int, snap int) (*Capture, error) {
	if snap <= 0 || snap > 65535 {
		return nil, fmt.Errorf("capture snap length %d: not in 1..65535", snap)
	}
	if f.Points == 0 {
		f.Points = 1<<NumPoints - 1
	}
	if len(spus) == 0 {
		for i := range e.spus {
			spus = append(spus, i)
		}
	}
	n := uint64(maxCaptureSlots)
	for n > 16 && int(n)*snap > MaxCaptureMemory {
		n /= 2
	}
	c := &Capture{e: e, rings: make([]*capRing, len(e.spus))}
	for _, id := range spus {
		if id < 0 || id >= len(e.spus) {
			return nil, fmt.Errorf("capture on spu %d: spud has %d SPUs (0..%d)", id, len(e.spus), len(e.spus)-1)
		}
		c.rings[id] = &capRing{f: f, snap: snap, mask: n - 1, slots: make([]capSlot, n), data: make([]byte, int(n)*snap)}
	}
	e.capMu.Lock()
	defer e.capMu.Unlock()
	if e.capture != nil {
		return nil, fmt.Errorf("a capture is running already: one at a time")
	}
	e.capture = c
	for id, r := range c.rings {
		if r != nil {
			e.spus[id].ctl.capture.Store(r)
		}
	}
	return c, nil
}

// Stop removes the capture from its SPUs; records not read are lost. An
// SPU may still write its current batch into its ring, which nothing
// reads any more.
func (c *Capture) Stop() {
	e := c.e
	e.capMu.Lock()
	defer e.capMu.Unlock()
	if e.capture != c {
		return
	}
	for id, r := range c.rings {
		if r != nil {
			e.spus[id].ctl.capture.CompareAndSwap(r, nil)
		}
	}
	e.capture = nil
}

// Lost returns the copies the rings had no room for (the packets went on).
func (c *Capture) Lost() uint64 {
	var n uint64
	for _, r := range c.rings {
		if r != nil {
			n += r.lost.Load()
		}
	}
	return n
}

// Read takes records from the rings, at most len(recs) and as many as
// their bytes fit in buf, appending the bytes to buf[:0]; it returns the
// records and the bytes. Never blocks. One reader at a time.
func (c *Capture) Read(recs []CaptureRecord, buf []byte) ([]CaptureRecord, []byte) {
	recs, buf = recs[:0], buf[:0]
	for k := 0; k < len(c.rings) && len(recs) < cap(recs); k++ {
		id := (c.next + k) % len(c.rings)
		r := c.rings[id]
		if r == nil {
			continue
		}
		for len(recs) < cap(recs) {
			t := r.tail.Load()
			if t == r.head.Load() {
				break
			}
			s := &r.slots[t&r.mask]
			if len(buf)+int(s.n) > cap(buf) {
				c.next = id
				return recs, buf
			}
			off := int(t&r.mask) * r.snap
			buf = append(buf, r.data[off:off+int(s.n)]...)
			recs = append(recs, CaptureRecord{Time: s.time, SPU: id, Point: s.point, Drop: s.drop, SAReason: s.saReason,
				SPI: s.spi, ReqID: s.reqid, Len: int(s.len), N: int(s.n)})
			r.tail.Store(t + 1)
		}
	}
	c.next = (c.next + 1) % len(c.rings)
	return recs, buf
}

// takes reports whether the capture's filter takes a packet of this SA at
// point p.
func (r *capRing) takes(p Point, spi, reqid uint32) bool {
	return r.f.Points&(1<<p) != 0 && (r.f.SPI == 0 || r.f.SPI == spi) && (r.f.ReqID == 0 || r.f.ReqID == reqid)
}

// capture copies pkt into the SPU's capture ring when the filter takes it.
// Called only when a capture runs on the SPU (s.capt != nil).
func (s *SPU) capture(p Point, pkt []byte, spi, reqid uint32, d Drop, why esp.Reason) {
	r := s.capt
	if !r.takes(p, spi, reqid) {
		return
	}
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		r.lost.Add(1)
		return
	}
	i := h & r.mask
	off := int(i) * r.snap
	n := copy(r.data[off:off+r.snap], pkt)
	r.slots[i] = capSlot{time: nanotime(), spi: spi, reqid: reqid, len: int32(len(pkt)), n: int32(n), point: p, drop: d, saReason: why}
	r.head.Store(h + 1)
}

// stage copies an ESP packet the SA is about to decapsulate into the
// ring's next free slot, unpublished, when drops of its SA are captured:
// the SA decrypts in place, and Go's AEAD clears what fails its check, so
// a drop it decides is captured from this copy (publishStaged). The next
// capture overwrites a copy not published. It reports whether it copied.
func (s *SPU) stage(pkt []byte, spi, reqid uint32) bool {
	r := s.capt
	if !r.takes(PointDrop, spi, reqid) {
		return false
	}
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		return false
	}
	off := int(h&r.mask) * r.snap
	copy(r.data[off:off+r.snap], pkt)
	return true
}

// publishStaged publishes the copy stage made, of a packet of n bytes, as
// a drop of the SA's.
func (s *SPU) publishStaged(n int, spi, reqid uint32, why esp.Reason) {
	r := s.capt
	h := r.head.Load()
	r.slots[h&r.mask] = capSlot{time: nanotime(), spi: spi, reqid: reqid, len: int32(n), n: int32(min(n, r.snap)),
		point: PointDrop, drop: DropSA, saReason: why}
	r.head.Store(h + 1)
}

// dropPkt counts a drop and, when a capture runs, hands the packet to it
// with the reason and the SA's SPI and reqid when known.
func (s *SPU) dropPkt(d Drop, pkt []byte, spi, reqid uint32) {
	s.c.drops[d].Add(1)
	if s.capt != nil {
		s.capture(PointDrop, pkt, spi, reqid, d, esp.None)
	}
}

// captureEncap hands an encapsulation's outcome to the capture: the ESP
// packet sent (whole, before any outer fragmentation), or the cleartext
// with the SA's reason when the SA refused it.
func (s *SPU) captureEncap(o *outSA, ip, buf []byte, res esp.Result) {
	switch res.Verdict {
	case esp.Forward, esp.Fragment:
		s.capture(PointESPOut, buf[res.Off:res.Off+res.Len], o.sa.SPI(), o.desc.reqid, 0, esp.None)
	default:
		s.capture(PointDrop, ip, o.sa.SPI(), o.desc.reqid, DropSA, res.Reason)
	}
}
