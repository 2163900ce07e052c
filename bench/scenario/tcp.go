package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/testbed/lab"
)

// TCP is the TCP scenario: iperf3 from the generator's host to the sink's
// through one tunnel of each system, in the throughput scenario's lab
// (same link settings), with 1 and 8 streams: what TCP's congestion
// control makes of each system's loss and latency, beside the packet
// rates of UDP.
type TCP struct {
	// Systems (default spud, kernel forwarding, strongSwan), each with
	// the first standard suite.
	Systems []string
	// Streams per run (default 1 and 8).
	Streams []int
	// Duration of each run (default 5 s; iperf3's -t).
	Duration time.Duration
	// SPUs of spud (0: one per CPU).
	SPUs int
}

// TCPRun is one iperf3 run.
type TCPRun struct {
	System  string  `json:"system"`
	Suite   string  `json:"suite,omitempty"`
	Streams int     `json:"streams"`
	Gbps    float64 `json:"gbps"` // received, over all streams
	// Retransmits are the sender's TCP retransmissions.
	Retransmits int    `json:"retransmits"`
	Error       string `json:"error,omitempty"`
}

// TCPResults are the TCP scenario's results.
type TCPResults struct {
	Duration time.Duration `json:"duration_ns"`
	Runs     []TCPRun      `json:"runs"`
}

// IperfPort is the port of the sink's iperf3 server.
const IperfPort = 5201

func (c *TCP) defaults() {
	if len(c.Systems) == 0 {
		c.Systems = []string{Spud, Kernel, StrongSwan}
	}
	if len(c.Streams) == 0 {
		c.Streams = []int{1, 8}
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
}

// Estimate is how long Run should take.
func (c *TCP) Estimate() time.Duration {
	c.defaults()
	per := time.Duration(len(c.Streams))*(c.Duration+time.Second) + 4*time.Second
	return time.Duration(len(c.Systems))*per + 5*time.Second
}

// Run measures every system with every stream count.
func (c *TCP) Run(e *Env) (*TCPResults, error) {
	c.defaults()
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, fmt.Errorf("tcp: iperf3 is not installed (Debian: iperf3)")
	}
	res := &TCPResults{Duration: c.Duration}
	bed, err := e.NewBed()
	if err != nil {
		return nil, err
	}
	defer bed.Close()
	for _, name := range c.Systems {
		suite := ""
		if suiteSpecific(name) {
			suite = StandardSuites[0]
		}
		label := strings.TrimSpace("tcp: " + name + " " + suite)
		plan := system.Plan{Tunnels: 1, Suite: StandardSuites[0], Line: bed.Line.Plan}
		e.Progress.Step(label+": starting", 3*time.Second)
		fail := func(err error) {
			e.Logf("%s: %v", label, err)
			for _, n := range c.Streams {
				res.Runs = append(res.Runs, TCPRun{System: name, Suite: suite, Streams: n, Error: err.Error()})
			}
		}
		sys, err := newSystem(name, c.SPUs)
		if sp, ok := sys.(*system.Spud); ok {
			// TCP's acknowledgements come back through the tunnel.
			sp.Return = true
		}
		if err == nil {
			err = sys.Up(bed.Line, plan)
		}
		if err != nil {
			fail(err)
			continue
		}
		srv, err := bed.sink.Start("iperf3", []string{"iperf3", "-s", "-p", fmt.Sprint(IperfPort)}, lab.StartOptions{})
		if err != nil {
			fail(err)
		} else {
			for _, n := range c.Streams {
				l := fmt.Sprintf("%s, %d stream(s)", label, n)
				e.Progress.Step(l, c.Duration+time.Second)
				r := TCPRun{System: name, Suite: suite, Streams: n}
				if r.Gbps, r.Retransmits, err = bed.iperf(n, c.Duration); err != nil {
					r.Error = err.Error()
					e.Logf("%s: %v", l, err)
				} else {
					e.Logf("%s: %.2f Gbit/s, %d retransmits", l, r.Gbps, r.Retransmits)
				}
				res.Runs = append(res.Runs, r)
			}
			// By its PID (the lab's Proc), never by name.
			if err := srv.Stop(); err != nil {
				e.Logf("%s: stopping iperf3: %v", label, err)
			}
		}
		if err := sys.Down(); err != nil {
			e.Logf("%s: stopping: %v", label, err)
		}
	}
	return res, nil
}

// iperfReport is what TCPRun takes from iperf3 -J.
type iperfReport struct {
	End struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf reads iperf3 -J's report: received Gbit/s and the sender's
// retransmissions.
func parseIperf(out []byte) (float64, int, error) {
	var r iperfReport
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3: unreadable report: %w", err)
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond == 0 {
		return 0, 0, fmt.Errorf("iperf3: nothing received")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, r.End.SumSent.Retransmits, nil
}

// iperf runs an iperf3 client on the generator's host against the sink's
// server, for d with n streams; the server may still be starting, so a
// refused connection is tried again a few times.
func (b *Bed) iperf(n int, d time.Duration) (float64, int, error) {
	var last error
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), d+20*time.Second)
		out, err := b.gen.ExecContext(ctx, "iperf3", "-c", b.Plan.ClientA4.String(), "-p", fmt.Sprint(IperfPort), "-J",
			"-t", fmt.Sprintf("%.0f", max(d.Seconds(), 1)), "-P", fmt.Sprint(n), "--connect-timeout", "3000")
		cancel()
		gbps, retr, perr := parseIperf(jsonPart(out))
		if perr == nil {
			return gbps, retr, nil
		}
		if err != nil {
			last = fmt.Errorf("%w (%v)", perr, err)
		} else {
			last = perr
		}
		if !strings.Contains(string(out), "refused") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	return 0, 0, last
}

// jsonPart is out from its first '{': Exec's output may carry more.
func jsonPart(out []byte) []byte {
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		return out[i:]
	}
	return out
}
