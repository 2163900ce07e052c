package traffic

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/dataplane/xsk/xsktest"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

func flows(n int, port uint16) []Flow {
	var fs []Flow
	for i := range n {
		fs = append(fs, Flow{Src: netip.MustParseAddr("198.18.2.10"), Dst: netip.MustParseAddr("198.18.1.10"), SrcPort: uint16(10000 + i), DstPort: port})
	}
	return fs
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, p := range []Payload{{}, {Flow: 65535, Seq: MaxSeq, Time: -1}, {Flow: 7, Seq: 1 << 40, Time: 123456789}} {
		var b [PayloadLen]byte
		p.Put(b[:])
		got, err := ParsePayload(b[:])
		if err != nil || got != p {
			t.Errorf("%+v: got %+v, %v", p, got, err)
		}
	}
	if _, err := ParsePayload(make([]byte, PayloadLen-1)); err != ErrShortPayload {
		t.Errorf("short: %v", err)
	}
	if _, err := ParsePayload(make([]byte, PayloadLen)); err != ErrNoMarker {
		t.Errorf("no marker: %v", err)
	}
}

func TestFrame(t *testing.T) {
	f := flows(1, 9000)[0]
	tm, err := newTemplate(macA, macB, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{MinFrame, 508, 1396, MaxFrame} {
		b := make([]byte, 2048)
		n := tm.put(b, size, Payload{Flow: 3, Seq: 42, Time: 99})
		if n != size {
			t.Fatalf("size %d: put %d", size, n)
		}
		// The IPv4 header checksums to zero and says the right length.
		var sum uint32
		for i := EthLen; i < EthLen+IPv4Len; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		if sum != 0xffff {
			t.Errorf("size %d: IPv4 checksum does not verify: %#x", size, sum)
		}
		dport, p, err := ParseFrame(b[:n])
		if err != nil || dport != 9000 || p != (Payload{Flow: 3, Seq: 42, Time: 99}) {
			t.Errorf("size %d: parsed %d %+v %v", size, dport, p, err)
		}
		if _, _, err := ParseFrame(b[:n-1]); err != ErrBadLengths {
			t.Errorf("size %d, truncated: %v", size, err)
		}
	}
	if _, err := newTemplate(macA, macB, Flow{Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2")}); err == nil {
		t.Error("IPv6 flow accepted")
	}
}

func TestMix(t *testing.T) {
	m, err := ParseMix("64")
	if err != nil || m.Sizes[0] != 60 || m.Name != "64" {
		t.Errorf("64: %+v %v", m, err)
	}
	im, _ := ParseMix("IMIX")
	// 7:4:1 of 64, 576 and 1400 on the wire.
	c := map[int]int{}
	for _, s := range im.Sizes {
		c[s+4]++
	}
	if c[64] != 7 || c[576] != 4 || c[1400] != 1 {
		t.Errorf("imix blend %v", c)
	}
	if got := im.Mean(); got < 340 || got > 345 {
		t.Errorf("imix mean %v", got)
	}
	for _, bad := range []string{"63", "1519", "x", ""} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := int64(1); i <= 100000; i++ {
		h.Add(i * 1000) // 1 µs .. 100 ms, uniform
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.07 {
			t.Errorf("q%v = %v, want %v..+7%%", c.q, got, c.want)
		}
	}
	if h.Max() != 100*time.Millisecond || h.Count() != 100000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	// Every value lands in a bucket whose upper edge is at or above it and
	// at most 1/16 above its lower edge.
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 1000, 1 << 40, 1<<62 + 12345} {
		i := histIndex(v)
		if up := histUpper(i); up < v || (i > 0 && histUpper(i-1) >= v) {
			t.Errorf("value %d: bucket %d spans (%d, %d]", v, i, histUpper(i-1), up)
		}
	}
	var o Histogram
	o.Add(int64(time.Second))
	h.Merge(&o)
	if h.Max() != time.Second || h.Count() != 100001 {
		t.Errorf("merge: max %v count %d", h.Max(), h.Count())
	}
}

// pair makes a generator and a sink connected by fake ports.
func pair(t testing.TB, nflows int, rate float64, mix Mix) (*Clock, *Generator, *Sink, *xsktest.Port) {
	t.Helper()
	// More frames than the tx ring holds, so that a stalled port refuses.
	a, b, err := xsktest.NewPair(xsktest.Config{RingSize: 1024, NumFrames: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	clock := NewClock()
	g, err := NewGenerator([]xsk.Port{a}, GenConfig{SrcMAC: macA, DstMAC: macB, Flows: flows(nflows, 9000), Mix: mix, Rate: rate, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink([]xsk.Port{b}, SinkConfig{Port: 9000, Flows: nflows, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return clock, g, s, b
}

func TestGeneratorToSinkCountsEverything(t *testing.T) {
	clock, g, s, _ := pair(t, 5, 20000, IMIX())
	res, err := Measure(clock, g, s, Timing{Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received != res.Sent || res.Lost != 0 || res.Reordered != 0 || res.Duplicates != 0 || res.Sink.Foreign != 0 {
		t.Errorf("fake wire lost or mangled packets: %+v", res)
	}
	// Paced: never more than the rate allows (plus one batch).
	if limit := uint64(20000*0.25) + xsk.BatchSize; res.Gen.Sent > limit {
		t.Errorf("sent %d in 250 ms at 20 kpps (limit %d)", res.Gen.Sent, limit)
	}
	if res.Latency.P50 <= 0 || res.Latency.P999 < res.Latency.P50 || res.Latency.Max < res.Latency.P999 {
		t.Errorf("latency summary inconsistent: %+v", res.Latency)
	}
	if res.MeanFrame < 340 || res.Gbps <= 0 {
		t.Errorf("mean frame %v, %v Gbit/s", res.MeanFrame, res.Gbps)
	}
}

func TestSinkCountsLossReorderAndForeign(t *testing.T) {
	clock, g, s, b := pair(t, 2, 0, Fixed(64))
	tm, _ := newTemplate(macA, macB, flows(2, 9000)[1])
	frame := func(seq uint64, ts int64) []byte {
		buf := make([]byte, 128)
		return buf[:tm.put(buf, MinFrame, Payload{Flow: 1, Seq: seq, Time: ts})]
	}
	w := Window{Start: 0, End: 1 << 62}
	done := make(chan error)
	go func() { done <- s.Run(w) }()
	now := clock.Now()
	for _, seq := range []uint64{0, 1, 3, 2, 3, 5} { // 4 lost, 2 late, 3 twice
		b.Inject(frame(seq, now))
	}
	b.Inject(frame(9, now)[:40])                      // runt
	b.Inject(append(frame(6, now)[:HeaderLen], 1, 2)) // no marker (lengths off too)
	other, _ := newTemplate(macA, macB, Flow{Src: netip.MustParseAddr("198.18.2.10"), Dst: netip.MustParseAddr("198.18.1.10"), SrcPort: 1, DstPort: 53})
	buf := make([]byte, 128)
	b.Inject(buf[:other.put(buf, MinFrame, Payload{})])
	deadline := time.Now().Add(5 * time.Second)
	for s.Received() < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Received != 6 || st.Reordered != 1 || st.Duplicates != 1 || st.Foreign != 3 || st.WindowDuplicates != 1 || st.Latency.Count() != 6 {
		t.Errorf("counts: received %d reordered %d duplicates %d foreign %d window dups %d latencies %d",
			st.Received, st.Reordered, st.Duplicates, st.Foreign, st.WindowDuplicates, st.Latency.Count())
	}
	_ = g
}

func TestGeneratorSpreadsFlowsOverPorts(t *testing.T) {
	var got [2]map[uint16]int
	var mu sync.Mutex
	var ps []xsk.Port
	for i := range got {
		got[i] = map[uint16]int{}
		p, err := xsktest.NewPort(xsktest.Config{RingSize: 256})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		p.SetSink(func(pkt []byte) {
			_, pl, err := ParseFrame(pkt)
			if err != nil {
				t.Errorf("port %d: %v", i, err)
				return
			}
			mu.Lock()
			got[i][pl.Flow]++
			mu.Unlock()
		})
		ps = append(ps, p)
	}
	clock := NewClock()
	g, err := NewGenerator(ps, GenConfig{SrcMAC: macA, DstMAC: macB, Flows: flows(4, 9000), Mix: Fixed(64), Rate: 4000, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	g.Run(Window{End: clock.Now() + int64(100*time.Millisecond)})
	mu.Lock()
	defer mu.Unlock()
	for i, m := range got {
		for fl := range m {
			if int(fl)%2 != i {
				t.Errorf("flow %d left through port %d", fl, i)
			}
		}
		if len(m) != 2 {
			t.Errorf("port %d carried flows %v", i, m)
		}
	}
	if _, err := NewGenerator(ps, GenConfig{SrcMAC: macA, DstMAC: macB, Flows: flows(1, 9000), Mix: Fixed(64), Clock: clock}); err == nil {
		t.Error("fewer flows than ports accepted")
	}
}

func TestRefusedFramesKeepSequencesGapless(t *testing.T) {
	clock, g, s, _ := pair(t, 3, 0, Fixed(64))
	a := g.ports[0].(*xsktest.Port)
	a.Stall(true)
	w := Window{End: 1 << 62}
	// Fill the tx ring until it refuses, then let it drain to a running sink.
	for i := 0; g.Stats().Refused == 0; i++ {
		if i > 1000 {
			t.Fatal("a stalled port never refused a frame")
		}
		g.send(0, xsk.BatchSize, w)
	}
	done := make(chan error)
	go func() { done <- s.Run(w) }()
	a.Stall(false)
	deadline := time.Now().Add(5 * time.Second)
	for range 20 {
		// One batch at a time: the fake drops what the sink has no room for.
		for s.Received() < g.Stats().Sent && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		g.send(0, xsk.BatchSize, w)
	}
	for s.Received() < g.Stats().Sent && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Stop()
	<-done
	st := s.Stats()
	if st.Received != g.Stats().Sent || st.Reordered != 0 || st.Duplicates != 0 {
		t.Errorf("sent %d, received %d, reordered %d, dups %d", g.Stats().Sent, st.Received, st.Reordered, st.Duplicates)
	}
	// Every flow's sequence is gapless: the newest seen is the count sent.
	var total uint64
	for _, n := range s.newest {
		total += n
	}
	if total != st.Received {
		t.Errorf("sequence numbers have gaps: newest sum %d, received %d", total, st.Received)
	}
	_ = clock
}

func TestNoAllocationsPerPacket(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	clock, g, s, b := pair(t, 4, 0, IMIX())
	w := Window{End: 1 << 62}
	frames := make([]xsk.Frame, xsk.BatchSize)
	allocs := testing.AllocsPerRun(100, func() {
		g.send(0, xsk.BatchSize, w)
		n := b.Receive(frames)
		s.count(frames[:n])
		b.Release(frames[:n])
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch", allocs)
	}
	_ = clock
}

func FuzzParseFrame(f *testing.F) {
	tm, _ := newTemplate(macA, macB, flows(1, 9000)[0])
	buf := make([]byte, 2048)
	f.Add(buf[:tm.put(buf, MinFrame, Payload{Flow: 1, Seq: 2, Time: 3})])
	f.Add(buf[:tm.put(buf, 1396, Payload{Flow: 1, Seq: 2, Time: 3})])
	f.Add([]byte{})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, b []byte) {
		dport, p, err := ParseFrame(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same payload bytes.
		var out [PayloadLen]byte
		p.Put(out[:])
		ihl := int(b[EthLen]&0xf) * 4
		if string(out[:]) != string(b[EthLen+ihl+UDPLen:][:PayloadLen]) || dport != binary.BigEndian.Uint16(b[EthLen+ihl+2:]) {
			t.Errorf("parse of %x is not faithful", b)
		}
	})
}
