package traffic

import (
	"sync"
	"time"
)

// Timing shapes a measurement.
type Timing struct {
	// Warmup runs traffic before the window: neighbour resolution, the
	// first packets through a fresh SA, rings filling up.
	Warmup time.Duration
	// Duration is the window.
	Duration time.Duration
	// Drain is how long the sink keeps counting after the generator
	// stops, for packets in flight (default 300 ms).
	Drain time.Duration
}

// Latency is a summary of a latency histogram.
type Latency struct {
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize reads the percentiles of h.
func Summarize(h *Histogram) Latency {
	return Latency{P50: h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.Max(), Mean: h.Mean()}
}

// Result is one measurement. Rates count Ethernet frames without the FCS
// (Gbit/s of frame bytes); loss is what the generator sent in the window
// and the sink never received.
type Result struct {
	Mix       string        `json:"mix"`
	MeanFrame float64       `json:"mean_frame_bytes"`
	Flows     int           `json:"flows"`
	Rate      float64       `json:"target_pps,omitempty"` // 0: as fast as possible
	Window    time.Duration `json:"window_ns"`

	Sent        uint64  `json:"sent"`
	Received    uint64  `json:"received"` // unique packets
	Lost        int64   `json:"lost"`
	LossRatio   float64 `json:"loss_ratio"`
	OfferedPPS  float64 `json:"offered_pps"`
	PPS         float64 `json:"pps"`
	OfferedGbps float64 `json:"offered_gbps"`
	Gbps        float64 `json:"gbps"`
	Reordered   uint64  `json:"reordered"`
	Duplicates  uint64  `json:"duplicates"`
	Latency     Latency `json:"latency"`
	// SinkDrops are packets the sink's own sockets dropped during the run
	// (SinkStats.Drops).
	SinkDrops uint64 `json:"sink_drops"`

	Gen  GenStats  `json:"gen"`
	Sink SinkStats `json:"sink"`
}

// Live is what a progress display gets while a measurement runs.
type Live struct {
	Elapsed, Total time.Duration
	Sent, Received uint64
}

// Measure runs g and s for t: it starts the sink, then the generator,
// ends the generator at the end of the window, lets the sink drain, and
// returns what both counted. progress, if set, is called about every
// 200 ms from the caller's goroutine.
func Measure(clock *Clock, g *Generator, s *Sink, t Timing, progress func(Live)) (Result, error) {
	if t.Drain <= 0 {
		t.Drain = 300 * time.Millisecond
	}
	begin := clock.Now()
	w := Window{Start: begin + int64(t.Warmup), End: begin + int64(t.Warmup+t.Duration)}
	var wg sync.WaitGroup
	var sinkErr error
	wg.Add(2)
	go func() { defer wg.Done(); sinkErr = s.Run(w) }()
	go func() { defer wg.Done(); g.Run(w) }()
	total := t.Warmup + t.Duration + t.Drain
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	stopAt := time.Duration(w.End-begin) + t.Drain
	for {
		el := time.Duration(clock.Now() - begin)
		if progress != nil {
			progress(Live{Elapsed: el, Total: total, Sent: g.Stats().Sent, Received: s.Received()})
		}
		if el >= stopAt {
			break
		}
		<-tick.C
	}
	g.Stop()
	s.Stop()
	wg.Wait()
	if progress != nil {
		progress(Live{Elapsed: total, Total: total, Sent: g.Stats().Sent, Received: s.Received()})
	}
	return summarize(g, s, w), sinkErr
}

func summarize(g *Generator, s *Sink, w Window) Result {
	gs, ss := g.Stats(), s.Stats()
	secs := w.Duration().Seconds()
	r := Result{Mix: g.cfg.Mix.Name, MeanFrame: g.cfg.Mix.Mean(), Flows: len(g.cfg.Flows), Rate: g.cfg.Rate, Window: w.Duration(),
		Sent: gs.WindowSent, Received: ss.WindowReceived - ss.WindowDuplicates,
		Reordered: ss.Reordered, Duplicates: ss.Duplicates, Latency: Summarize(&ss.Latency), Gen: gs, Sink: ss}
	r.Lost = int64(r.Sent) - int64(r.Received)
	if r.Sent > 0 {
		r.LossRatio = float64(r.Lost) / float64(r.Sent)
	}
	r.OfferedPPS = float64(gs.WindowSent) / secs
	r.PPS = float64(r.Received) / secs
	r.OfferedGbps = float64(gs.WindowBytes) * 8 / secs / 1e9
	r.Gbps = float64(ss.WindowBytes) * 8 / secs / 1e9
	r.SinkDrops = ss.Drops
	return r
}
