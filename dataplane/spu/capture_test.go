package spu

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/dataplane/steer"
)

// readAll drains a capture.
func readAll(c *Capture) []CaptureRecord {
	recs, _ := readPackets(c)
	return recs
}

// readPackets drains a capture, with each record's bytes.
func readPackets(c *Capture) ([]CaptureRecord, [][]byte) {
	var out []CaptureRecord
	var pkts [][]byte
	recs, buf := make([]CaptureRecord, 0, 64), make([]byte, 0, 1<<16)
	for {
		recs, buf = c.Read(recs, buf)
		if len(recs) == 0 {
			return out, pkts
		}
		out = append(out, recs...)
		for _, r := range recs {
			pkts = append(pkts, bytes.Clone(buf[:r.N]))
			buf = buf[r.N:]
		}
	}
}

// TestCapturePoints: a packet through a tunnel is seen at each of its
// points with its SA, and a drop with its reason.
func TestCapturePoints(t *testing.T) {
	a, b, logical, pol := setup(t)
	anchorSPU := a.e.physical(logical)
	ca, err := a.e.StartCapture(CaptureFilter{}, nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Stop()
	cb, err := b.e.StartCapture(CaptureFilter{ReqID: 1}, []int{anchorSPU}, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Stop()
	if _, err := b.e.StartCapture(CaptureFilter{}, nil, 2048); err == nil {
		t.Error("a second capture on one engine started")
	}
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	steerAs(b.wan[anchorSPU], steer.ClassESP, logical, 0)
	a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte("captured")))
	a.step()
	esp := a.takeWAN()
	if len(esp) != 1 {
		t.Fatalf("gw-a sent %d frames", len(esp))
	}
	b.wan[anchorSPU].Inject(esp[0])
	// An ESP packet for an SPI nobody has.
	f := udpFrame(gwA, gwB, make([]byte, 40))
	f[14+9] = iphdr.ProtoESP
	binary.BigEndian.PutUint32(f[14+20:], 0xdead)
	b.wan[anchorSPU].Inject(f)
	b.step()
	ra := readAll(ca)
	if len(ra) != 2 || ra[0].Point != PointClearIn || ra[1].Point != PointESPOut || ra[1].SPI != spiAB || ra[0].ReqID != 1 {
		t.Fatalf("gw-a captured %+v, want clear-in and esp-out of spi %#x", ra, spiAB)
	}
	if ra[1].Len != len(esp[0])-14 || ra[1].N != ra[1].Len || ra[1].SPU != anchorSPU {
		t.Errorf("esp-out record %+v, frame of %d bytes", ra[1], len(esp[0]))
	}
	rb := readAll(cb)
	if len(rb) != 2 || rb[0].Point != PointESPIn || rb[1].Point != PointClearOut || rb[0].SPI != spiAB {
		t.Fatalf("gw-b captured %+v, want esp-in and clear-out of reqid 1 (the unknown SPI filtered out)", rb)
	}
	cb.Stop()
	cb, err = b.e.StartCapture(CaptureFilter{Points: 1 << PointDrop}, nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b.wan[anchorSPU].Inject(f)
	b.wan[anchorSPU].Inject(esp[0]) // a replay
	b.step()
	rb = readAll(cb)
	if len(rb) != 2 || rb[0].Reason() != "unknown_spi" || rb[0].SPI != 0xdead || rb[1].Reason() != "sa_replay" {
		t.Fatalf("drops captured %+v, want unknown_spi and sa_replay", rb)
	}
	// A packet failing its ICV is captured as it came: the SA's AEAD
	// clears what it decrypted in place.
	a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte("tampered with")))
	a.step()
	esp = a.takeWAN()
	bad := bytes.Clone(esp[0])
	bad[len(bad)-1] ^= 1
	b.wan[anchorSPU].Inject(bad)
	b.step()
	rb, pkts := readPackets(cb)
	if len(rb) != 1 || rb[0].Reason() != "sa_bad_icv" || !bytes.Equal(pkts[0], bad[14:]) {
		t.Fatalf("bad ICV captured as %+v % x, want sa_bad_icv and the packet as received", rb, pkts)
	}
}

// TestCaptureRingIsBounded: a ring full of unread copies loses copies,
// counted, never packets; snap lengths cut the copies.
func TestCaptureRingIsBounded(t *testing.T) {
	a, _, logical, pol := setup(t)
	anchorSPU := a.e.physical(logical)
	c, err := a.e.StartCapture(CaptureFilter{Points: 1 << PointClearIn}, nil, 40000)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	r := c.rings[anchorSPU]
	slots := len(r.slots)
	if slots*r.snap > MaxCaptureMemory {
		t.Errorf("ring of %d x %d bytes exceeds %d", slots, r.snap, MaxCaptureMemory)
	}
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	sent := 0
	for i := 0; i < slots+10; i++ {
		a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte("x")))
		a.step()
		sent += len(a.takeWAN())
	}
	if sent != slots+10 {
		t.Errorf("%d packets sent of %d while capturing", sent, slots+10)
	}
	if c.Lost() != 10 {
		t.Errorf("lost %d copies, want 10", c.Lost())
	}
	recs := readAll(c)
	if len(recs) != slots {
		t.Errorf("read %d records, want %d", len(recs), slots)
	}
	c.Stop()
	c, err = a.e.StartCapture(CaptureFilter{}, nil, 20)
	if err != nil {
		t.Fatal(err)
	}
	a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte("cut short")))
	a.step()
	for _, rec := range readAll(c) {
		if rec.N != 20 || rec.Len <= 20 {
			t.Errorf("snap length 20: record %+v", rec)
		}
	}
}

// TestCapturePathAllocatesNothing is TestPacketPathAllocatesNothing with a
// capture of every point on both gateways, read as it goes.
func TestCapturePathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	a, b, logical, pol := setup(t)
	anchorSPU := a.e.physical(logical)
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	steerAs(b.wan[anchorSPU], steer.ClassESP, logical, 0)
	frame := udpFrame(hostA, hostB, make([]byte, 64))
	var esp []byte
	a.wan[anchorSPU].SetSink(func(p []byte) { esp = append(esp[:0], p...) })
	b.lan[0].SetSink(func([]byte) {})
	b.lan[1].SetSink(func([]byte) {})
	a.lan[anchorSPU].Inject(frame)
	a.step()
	ca, err := a.e.StartCapture(CaptureFilter{}, nil, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Stop()
	cb, err := b.e.StartCapture(CaptureFilter{}, nil, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Stop()
	recs, buf := make([]CaptureRecord, 0, 64), make([]byte, 0, 1<<16)
	n := 0
	allocs := testing.AllocsPerRun(200, func() {
		a.lan[anchorSPU].Inject(frame)
		a.e.spus[anchorSPU].iterate()
		b.wan[anchorSPU].Inject(esp)
		b.e.spus[anchorSPU].iterate()
		recs, _ = ca.Read(recs, buf)
		n += len(recs)
		recs, _ = cb.Read(recs, buf)
		n += len(recs)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet round trip with a capture", allocs)
	}
	if n < 4*200 {
		t.Errorf("captured %d records of 200 round trips, want 4 each", n)
	}
}

// BenchmarkPacketPathCapture is BenchmarkPacketPath with a capture on
// both gateways, drained as it goes: of every point of the tunnel
// (every-point), and of another SA (other-sa: what capturing one tunnel
// costs the others). BenchmarkPacketPath itself is the cost when off.
func BenchmarkPacketPathCapture(b *testing.B) {
	for _, c := range []struct {
		name string
		f    CaptureFilter
	}{{"every-point", CaptureFilter{}}, {"other-sa", CaptureFilter{SPI: 0xdead}}} {
		b.Run(c.name, func(b *testing.B) {
			a, g, logical, pol := setup(b)
			anchorSPU := a.e.physical(logical)
			steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
			steerAs(g.wan[anchorSPU], steer.ClassESP, logical, 0)
			frame := udpFrame(hostA, hostB, make([]byte, 64-42))
			var esp []byte
			a.wan[anchorSPU].SetSink(func(p []byte) { esp = append(esp[:0], p...) })
			g.lan[0].SetSink(func([]byte) {})
			g.lan[1].SetSink(func([]byte) {})
			a.lan[anchorSPU].Inject(frame)
			a.step()
			ca, err := a.e.StartCapture(c.f, nil, 2048)
			if err != nil {
				b.Fatal(err)
			}
			defer ca.Stop()
			cg, err := g.e.StartCapture(c.f, nil, 2048)
			if err != nil {
				b.Fatal(err)
			}
			defer cg.Stop()
			recs, buf := make([]CaptureRecord, 0, 64), make([]byte, 0, 1<<16)
			b.ReportAllocs()
			for b.Loop() {
				a.lan[anchorSPU].Inject(frame)
				a.e.spus[anchorSPU].iterate()
				g.wan[anchorSPU].Inject(esp)
				g.e.spus[anchorSPU].iterate()
				recs, _ = ca.Read(recs, buf)
				recs, _ = cg.Read(recs, buf)
			}
		})
	}
}
