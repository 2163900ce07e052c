package traffic

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/dataplane/xsk"
)

// Window is the measured part of a run, in Clock nanoseconds: packets
// stamped at or after Start and before End.
type Window struct{ Start, End int64 }

// Contains reports whether t lies in the window.
func (w Window) Contains(t int64) bool { return t >= w.Start && t < w.End }

// Duration is the window's length.
func (w Window) Duration() time.Duration { return time.Duration(w.End - w.Start) }

// GenConfig shapes a Generator.
type GenConfig struct {
	// SrcMAC is the sending interface's address, DstMAC the next hop's
	// (the gateway's LAN interface).
	SrcMAC, DstMAC net.HardwareAddr
	// Flows are spread over the ports: flow i leaves through port
	// i mod len(ports). At most 65536 (a payload names its flow in 16 bits).
	Flows []Flow
	Mix   Mix
	// Rate is the total rate in packets per second; 0 sends as fast as the
	// ports take packets.
	Rate  float64
	Clock *Clock
}

// GenStats are a generator's counters.
type GenStats struct {
	Sent        uint64 `json:"sent"`
	Bytes       uint64 `json:"bytes"`
	WindowSent  uint64 `json:"window_sent"`
	WindowBytes uint64 `json:"window_bytes"`
	// Refused counts frames a full tx ring sent back (they were not sent
	// and their sequence numbers are reused).
	Refused uint64      `json:"refused"`
	Ports   []xsk.Stats `json:"ports"`
}

// Generator sends the flows of its configuration through its ports, each
// packet stamped with its flow, sequence number and send time. Run belongs
// to one goroutine; Stop and Stats may be called from any.
type Generator struct {
	cfg                                 GenConfig
	ports                               []xsk.Port
	sockets                             *Sockets
	tmpl                                []template
	seq                                 []uint64  // next sequence number per flow
	flowsOf                             [][]int32 // flows of each port
	cursor                              []int     // next flow of each port, an index into flowsOf
	mixPos                              int
	frames                              []xsk.Frame
	batchFl                             []int32 // flow of each frame of the current batch
	stop                                atomic.Bool
	sent, bytes, wSent, wBytes, refused atomic.Uint64
}

// NewGenerator makes a generator over ports (which it does not close).
func NewGenerator(ports []xsk.Port, cfg GenConfig) (*Generator, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("traffic: generator needs a port")
	}
	if len(cfg.Flows) == 0 || len(cfg.Flows) > 1<<16 {
		return nil, fmt.Errorf("traffic: generator needs 1 to 65536 flows, got %d", len(cfg.Flows))
	}
	if err := cfg.Mix.validate(); err != nil {
		return nil, err
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("traffic: negative rate %v", cfg.Rate)
	}
	if cfg.Clock == nil {
		return nil, fmt.Errorf("traffic: generator needs a clock")
	}
	g := &Generator{cfg: cfg, ports: ports, seq: make([]uint64, len(cfg.Flows)), flowsOf: make([][]int32, len(ports)),
		cursor: make([]int, len(ports)), frames: make([]xsk.Frame, xsk.BatchSize), batchFl: make([]int32, xsk.BatchSize)}
	for i, f := range cfg.Flows {
		t, err := newTemplate(cfg.SrcMAC, cfg.DstMAC, f)
		if err != nil {
			return nil, err
		}
		g.tmpl = append(g.tmpl, t)
		g.flowsOf[i%len(ports)] = append(g.flowsOf[i%len(ports)], int32(i))
	}
	for p, fl := range g.flowsOf {
		if len(fl) == 0 {
			return nil, fmt.Errorf("traffic: port %d has no flow: give at least as many flows (%d) as ports (%d)", p, len(cfg.Flows), len(ports))
		}
	}
	return g, nil
}

// Stop makes Run return after its current batch.
func (g *Generator) Stop() { g.stop.Store(true) }

// Stats returns the counters so far.
func (g *Generator) Stats() GenStats {
	st := GenStats{Sent: g.sent.Load(), Bytes: g.bytes.Load(), WindowSent: g.wSent.Load(), WindowBytes: g.wBytes.Load(), Refused: g.refused.Load()}
	for _, p := range g.ports {
		st.Ports = append(st.Ports, p.Stats())
	}
	return st
}

// Run sends until the clock reaches w.End or Stop is called, counting the
// packets stamped inside w. With a rate it paces itself, sleeping between
// batches; without, it spins on the ports.
func (g *Generator) Run(w Window) {
	clock := g.cfg.Clock
	start := clock.Now()
	var sent uint64
	pi := 0
	idle := 0
	for !g.stop.Load() {
		now := clock.Now()
		if now >= w.End {
			break
		}
		budget := len(g.frames)
		if g.cfg.Rate > 0 {
			due := int64(g.cfg.Rate*float64(now-start)/1e9) + 1 - int64(sent)
			if due <= 0 {
				next := start + int64(float64(sent)*1e9/g.cfg.Rate)
				g.pause(time.Duration(next - now))
				continue
			}
			budget = int(min(int64(budget), due))
		}
		n := g.send(pi, budget, w)
		pi++
		if pi == len(g.ports) {
			pi = 0
		}
		sent += uint64(n)
		if n == 0 {
			idle++
			if idle%64 == 0 {
				runtime.Gosched()
			}
		} else {
			idle = 0
		}
	}
	for _, p := range g.ports {
		p.Complete()
	}
}

// pause waits d: a sleep when it is long enough for the timer to honour,
// a yield otherwise.
func (g *Generator) pause(d time.Duration) {
	if d > 50*time.Microsecond {
		time.Sleep(d)
	} else {
		runtime.Gosched()
	}
}

// send builds and transmits up to budget packets on port idx and returns
// how many went.
func (g *Generator) send(idx int, budget int, w Window) int {
	port := g.ports[idx]
	port.Complete()
	frames := g.frames[:budget]
	n := port.Alloc(frames)
	if n == 0 {
		// Every frame is in flight. Frames a kick left on the tx ring (a
		// stopped veth queue answers EAGAIN) wait for the next kick: give
		// it, since no Transmit will.
		port.PrepareWait()
		return 0
	}
	flows := g.flowsOf[idx]
	cur := g.cursor[idx]
	sizes := g.cfg.Mix.Sizes
	mp := g.mixPos
	ts := g.cfg.Clock.Now()
	var nbytes uint64
	for j := range frames[:n] {
		fl := flows[cur]
		cur++
		if cur == len(flows) {
			cur = 0
		}
		size := sizes[mp]
		mp++
		if mp == len(sizes) {
			mp = 0
		}
		f := &frames[j]
		f.Len = g.tmpl[fl].put(f.Buf[f.Off:], size, Payload{Flow: uint16(fl), Seq: g.seq[fl] & MaxSeq, Time: ts})
		g.seq[fl]++
		g.batchFl[j] = fl
		nbytes += uint64(size)
	}
	q := port.Transmit(frames[:n])
	if q < n {
		// Undo the refused tail so that sequence numbers stay gapless.
		for j := n - 1; j >= q; j-- {
			g.seq[g.batchFl[j]]--
			nbytes -= uint64(frames[j].Len)
			cur--
			if cur < 0 {
				cur = len(flows) - 1
			}
			mp--
			if mp < 0 {
				mp = len(sizes) - 1
			}
		}
		port.Release(frames[q:n])
		g.refused.Add(uint64(n - q))
	}
	g.cursor[idx] = cur
	g.mixPos = mp
	if q > 0 {
		g.sent.Add(uint64(q))
		g.bytes.Add(nbytes)
		if w.Contains(ts) {
			g.wSent.Add(uint64(q))
			g.wBytes.Add(nbytes)
		}
	}
	return q
}
