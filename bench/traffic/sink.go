package traffic

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/dataplane/xsk"
)

// SinkConfig shapes a Sink.
type SinkConfig struct {
	// Port is the UDP destination port of the benchmark's packets.
	Port uint16
	// Flows is the number of flows the generator sends (flow numbers
	// beyond it are counted as foreign).
	Flows int
	Clock *Clock
}

// SinkStats are what a sink counted. The Window fields count packets
// whose send time lies in the measurement window.
type SinkStats struct {
	Received uint64 `json:"received"`
	Bytes    uint64 `json:"bytes"`
	// WindowReceived counts every arrival stamped in the window,
	// duplicates included; WindowDuplicates those that were duplicates.
	WindowReceived   uint64 `json:"window_received"`
	WindowBytes      uint64 `json:"window_bytes"`
	WindowDuplicates uint64 `json:"window_duplicates"`
	// Reordered counts packets older than one already received on their
	// flow; Duplicates packets equal to the newest one.
	Reordered  uint64 `json:"reordered"`
	Duplicates uint64 `json:"duplicates"`
	// Foreign counts frames at the port that are not the generator's
	// (no marker, unknown flow, wrong port).
	Foreign uint64 `json:"foreign"`
	// Drops are packets the sink's sockets dropped since Run started (rx
	// ring full, no free frame): loss that is the sink's, not the path's.
	Drops uint64      `json:"drops"`
	Ports []xsk.Stats `json:"ports"`
	// Latency of the window's packets, send to receive.
	Latency Histogram `json:"-"`
}

// Sink receives the generator's packets from its ports and counts them.
// Run belongs to one goroutine; Stop and Received may be called from any,
// Stats once Run has returned.
type Sink struct {
	cfg     SinkConfig
	ports   []xsk.Port
	sockets *Sockets
	poller  xsk.Poller
	frames  []xsk.Frame
	newest  []uint64 // per flow: newest sequence number + 1, 0 before the first
	st      SinkStats
	w       Window
	stop    atomic.Bool
	rx      atomic.Uint64
	drops0  uint64 // the ports' drop counters when Run started
}

// NewSink makes a sink over ports (which it does not close).
func NewSink(ports []xsk.Port, cfg SinkConfig) (*Sink, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("traffic: sink needs a port")
	}
	if cfg.Flows <= 0 || cfg.Flows > 1<<16 {
		return nil, fmt.Errorf("traffic: sink needs 1 to 65536 flows, got %d", cfg.Flows)
	}
	if cfg.Clock == nil {
		return nil, fmt.Errorf("traffic: sink needs a clock")
	}
	s := &Sink{cfg: cfg, ports: ports, frames: make([]xsk.Frame, xsk.BatchSize), newest: make([]uint64, cfg.Flows)}
	s.poller = xsk.Poller{Mode: xsk.Adaptive, Waiter: xsk.NewWaiter(ports), MaxSleep: 5 * time.Millisecond}
	return s, nil
}

// Stop makes Run return after draining what its ports hold.
func (s *Sink) Stop() { s.stop.Store(true) }

// Received is the number of benchmark packets received so far.
func (s *Sink) Received() uint64 { return s.rx.Load() }

// Run receives until Stop, counting the packets stamped inside w. It spins
// while packets come and sleeps in poll(2) when none do.
func (s *Sink) Run(w Window) error {
	s.w = w
	s.drops0 = s.drops()
	for {
		stopping := s.stop.Load()
		worked := false
		for _, p := range s.ports {
			n := p.Receive(s.frames)
			if n == 0 {
				continue
			}
			worked = true
			s.count(s.frames[:n])
			p.Release(s.frames[:n])
		}
		if stopping && !worked {
			return nil
		}
		if _, err := s.poller.Idle(worked); err != nil {
			return err
		}
	}
}

// count accounts for one batch; it allocates nothing.
func (s *Sink) count(frames []xsk.Frame) {
	now := s.cfg.Clock.Now()
	var got uint64
	for i := range frames {
		b := frames[i].Packet()
		dport, p, err := ParseFrame(b)
		if err != nil || dport != s.cfg.Port || int(p.Flow) >= len(s.newest) {
			s.st.Foreign++
			continue
		}
		got++
		s.st.Bytes += uint64(len(b))
		seq1 := p.Seq + 1
		newest := s.newest[p.Flow]
		dup := false
		switch {
		case seq1 > newest:
			s.newest[p.Flow] = seq1
		case seq1 == newest:
			s.st.Duplicates++
			dup = true
		default:
			s.st.Reordered++
		}
		if s.w.Contains(p.Time) {
			s.st.WindowReceived++
			s.st.WindowBytes += uint64(len(b))
			if dup {
				s.st.WindowDuplicates++
			}
			s.st.Latency.Add(now - p.Time)
		}
	}
	s.st.Received += got
	s.rx.Add(got)
}

// Stats returns the counts; call it after Run has returned.
func (s *Sink) Stats() SinkStats {
	st := s.st
	st.Ports = nil
	for _, p := range s.ports {
		st.Ports = append(st.Ports, p.Stats())
	}
	st.Drops = s.drops() - s.drops0
	return st
}

// FlowsSeen is the number of flows of which at least one packet arrived;
// call it after Run has returned.
func (s *Sink) FlowsSeen() int {
	n := 0
	for _, v := range s.newest {
		if v > 0 {
			n++
		}
	}
	return n
}

// MarkSeen sets seen[i] for every flow i of which a packet arrived; call
// it after Run has returned.
func (s *Sink) MarkSeen(seen []bool) {
	for i, v := range s.newest {
		if v > 0 && i < len(seen) {
			seen[i] = true
		}
	}
}

func (s *Sink) drops() uint64 {
	var d uint64
	for _, p := range s.ports {
		k := p.Stats().Kernel
		d += k.RxRingFull + k.RxDropped
	}
	return d
}
