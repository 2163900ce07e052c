package report

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/bench/machine"
	"github.com/spugate/spugate/bench/scenario"
	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/bench/traffic"
)

func meas(pps float64) *scenario.Measurement {
	return &scenario.Measurement{Result: traffic.Result{PPS: pps, OfferedPPS: pps * 1.1, Gbps: pps * 60 * 8 / 1e9, LossRatio: 0.001,
		Latency: traffic.Latency{P50: 100 * time.Microsecond, P99: time.Millisecond, P999: 2 * time.Millisecond}}}
}

func found(pps float64, best bool) *scenario.Found {
	f := &scenario.Found{Max: *meas(pps), Peak: meas(pps), Trials: 7, Low: pps * 0.99, High: pps * 1.03, Stop: scenario.StopResolution}
	if best {
		f.Best = meas(pps * 0.9)
	} else {
		f.Low, f.High, f.Stop = 0, pps*0.5, scenario.StopFloor
	}
	return f
}

func sample() *Results {
	s := scenario.StandardSuites
	r := &Results{Version: Version, Command: "spubench -quick", Started: time.Unix(1700000000, 0), Finished: time.Unix(1700000600, 0), Machine: machine.Info{CPUModel: "test CPU", CPUs: 2}}
	r.Settings.Links = scenario.Links
	r.Ceiling = []scenario.CeilingRun{{Mix: "64", Result: meas(1.1e6)}}
	th := &scenario.ThroughputResults{Flows: 16, LatencyRate: 10000}
	th.Runs = []scenario.ThroughputRun{
		{System: scenario.Spud, Suite: s[0], Mix: "64", PPS: 200e3, Gbps: 0.1, Found: found(200e3, true), Latency: meas(10e3),
			SpudDrops: map[string]map[string]uint64{"gw-a": {"no_tx_frame": 5}}},
		{System: scenario.Spud, Suite: s[2], Mix: "64", PPS: 190e3, Gbps: 0.09, Found: found(190e3, false)},
		{System: scenario.Kernel, Mix: "64", PPS: 400e3, Gbps: 0.2, Found: found(400e3, true)},
		{System: scenario.WireGuard, Mix: "64", PPS: 50e3, Gbps: 0.02, Found: found(50e3, true)},
		{System: scenario.StrongSwan, Suite: s[0], Mix: "64", Error: "charon failed"},
	}
	th.Ratios = []scenario.Ratio{{Suite: s[0], Mix: "64", Versus: scenario.Kernel, Ratio: 0.5}, {Suite: s[2], Mix: "64", Versus: scenario.WireGuard, Ratio: 3.8}}
	r.Throughput = th
	r.TCP = &scenario.TCPResults{Duration: 5 * time.Second, Runs: []scenario.TCPRun{{System: scenario.Spud, Suite: s[0], Streams: 1, Gbps: 2.06, Retransmits: 14},
		{System: scenario.Kernel, Streams: 8, Gbps: 4.92, Retransmits: 30000}, {System: scenario.StrongSwan, Suite: s[0], Streams: 1, Error: "iperf3: nothing received"}}}
	r.Scaling = &scenario.ScalingResults{CPUs: 2, Tunnels: 64, Runs: []scenario.ScalingRun{{SPUs: 1, Mix: "64", PPS: 1e5}, {SPUs: 2, Mix: "64", PPS: 1.5e5, Work: map[string][]uint64{"gw-a": {60, 40}}}, {SPUs: 4, Simulated: true, Mix: "64", PPS: 1.2e5}}}
	r.Tunnels = &scenario.TunnelResults{Mix: "64", Runs: []scenario.TunnelRun{{Tunnels: 1, PPS: 2e5}, {Tunnels: 100, PPS: 1.9e5, PerTunnel: 4096}, {Tunnels: 10000, PPS: 1.5e5, PerTunnel: 3000}}}
	r.IKE = &scenario.IKEResults{Runs: []scenario.IKERun{{Responder: "charon", Initiator: "charon", Auth: "psk", Count: 100, Established: 100, Rate: 800},
		{Responder: "iked", Initiator: "iked", Auth: "psk", Count: 1000, Established: 1000, Rate: 400, LiveIKESAs: 1000, LiveChildSAs: 1000, DataPlaneSAs: 1001,
			CPUPerSA: 1.5, DataPlaneCPUPerSA: 0.25, Before: system.Memory{RSS: 10 << 20}, After: system.Memory{RSS: 20 << 20}, PerTunnel: 10240, StatePerTunnel: 1536,
			DataPlanePerTunnel: 2048, DataPlaneBefore: system.Memory{RSS: 40 << 20},
			Deciles: []float64{500, 450, 400, 400, 400, 400, 400, 400, 400, 300}, DecileCPU: []float64{1.5, 1.5, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.8}, RateWindow: 100, FirstRate: 500, LastRate: 300, FirstCPU: 1.5, LastCPU: 1.75,
			Curve:           []scenario.IKEPoint{{Elapsed: time.Second, Up: 500, CPU: 750 * time.Millisecond}, {Elapsed: 2500 * time.Millisecond, Up: 1000, CPU: 1600 * time.Millisecond}},
			InitiatorFailed: 3, InitiatorRounds: 2, FirstFailure: "AUTHENTICATION_FAILED", Failures: map[string]uint64{"half_open_timeout": 2, "bad_auth": 3},
			Workers: []scenario.IKEWorker{{ID: 0, IKESAs: 1000, Datagrams: 2000}, {ID: 1}}, Cores: 0.8,
			Hold: &scenario.IKEHold{Duration: 10 * time.Minute, Min: 1000, LiveIKESAs: 1000, LiveChildSAs: 1000, DataPlaneSAs: 1001,
				Memory: system.Memory{RSS: 20 << 20}, StateBytes: 1 << 20, DataPlane: system.Memory{RSS: 42 << 20}}}}}
	r.Rekey = &scenario.RekeyResults{Tunnels: 16, Runs: []scenario.RekeyRun{{Result: meas(5e4)}, {Rekeying: true, Rounds: 4, Rekeys: 64, Result: meas(5e4)}}}
	return r
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	Markdown(&b, sample())
	out := b.String()
	for _, want := range []string{
		"Command: `spubench -quick`",
		"| 64 | 0.200 (0.10) 0% | error | – | 0.400 (0.19) 0% | 0.50 | – | – |", // AES-GCM-128: strongSwan failed
		"| 64 | 0.190 (0.09) 0% | – | 0.050 (0.02) 0% | 0.400 (0.19) 0% | – | – | 3.80 |",
		"| aes128gcm16 | 64 | 0.180 | – | – | 0.360 |",
		"| chacha20poly1305 | 64 | none | – | 0.045 | 0.360 |",
		"| 4 | yes | 64 |",
		"| 10000 |",
		"| charon | charon | psk | 100/100 | 800 |",
		"| iked | iked | psk | 1000/1000 | 400 | 0s | 1000 / 1000 | 1001 | 1.50 + 0.25 | 20.0 | 10.0 + 1.5 | 2.0 |",
		"| iked | iked | psk | 1000 | 500 | 300 | 0.60 | 1.50 → 1.75 | 500 450 400 400 400 400 400 400 400 300 | 1.50 1.50 1.60 1.60 1.60 1.60 1.60 1.60 1.60 1.80 | 0.60 / 1.20 | 3 (2 load runs; first: AUTHENTICATION_FAILED) | bad_auth 3, half_open_timeout 2 |",
		"| iked | iked | psk | 10m0s | 1000 / 1000 | 1000 | 1001 | 10.24 | 1.02 | 2.05 | – | ok |",
		"worker 0: 1000 IKE SAs, 2000 datagrams",
		"| no_tx_frame | 5 |",
		"| spud aes128gcm16 | 64 | 7 | 0.198 | 0.206 | resolution | 0.180 |",
		"| spud aes128gcm16 | 1 | 2.06 | 14 |",
		"| kernel | 8 | 4.92 | 30000 |",
		"| strongswan aes128gcm16 | 1 | error: iperf3: nothing received |  |",
		"| spud chacha20poly1305 | 64 | 7 | – | 0.095 | floor | none |",
		"## 5. Rekey under load",
		"| spud aes128gcm16 | 64 | 100 | 1000 | 2000 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "%!") {
		t.Error("a format verb went wrong in the report")
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	r := sample()
	p, err := WriteJSON(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(p)
	if err != nil || back.Throughput.Runs[0].PPS != 200e3 || back.Command != r.Command {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := WriteMarkdown(r, dir); err != nil {
		t.Fatal(err)
	}
	names, err := WritePlots(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 6 || !slices.Contains(names, "ike-setup-rate") || !slices.Contains(names, "ike-setup-cpu") {
		t.Errorf("plots: %v", names)
	}
	for _, n := range names {
		for _, ext := range []string{".svg", ".png"} {
			st, err := os.Stat(filepath.Join(dir, n+ext))
			if err != nil || st.Size() < 1000 {
				t.Errorf("%s%s: %v", n, ext, err)
			}
		}
	}
}

func TestMerge(t *testing.T) {
	a, b, c := sample(), sample(), sample()
	b.Throughput.Runs[0].PPS = 100e3 // spud aes128gcm16 64: 200, 100, 300 -> 200
	c.Throughput.Runs[0].PPS = 300e3
	c.Throughput.Runs[2].PPS = 800e3              // kernel 64: 400, 400, 800 -> 400
	b.TCP.Runs[0].Gbps, c.TCP.Runs[0].Gbps = 1, 3 // 2.06, 1, 3 -> 2.06
	m, err := Merge([]*Results{a, b, c}, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Throughput.Runs[0].PPS; got != 200e3 {
		t.Errorf("median spud %v", got)
	}
	if len(m.TCP.Runs) != 3 || m.TCP.Runs[0].Gbps != 2.06 {
		t.Errorf("merged tcp: %+v", m.TCP)
	}
	var r *scenario.Ratio
	for i := range m.Throughput.Ratios {
		x := &m.Throughput.Ratios[i]
		if x.Suite == scenario.StandardSuites[0] && x.Mix == "64" && x.Versus == scenario.Kernel {
			r = x
		}
	}
	if r == nil || r.Ratio != 0.5 {
		t.Errorf("spud/kernel of the medians: %+v", r)
	}
	if !strings.Contains(m.Command, "median of 3 runs") || len(m.Tunnels.Runs) != 3 || len(m.IKE.Runs) != 2 {
		t.Errorf("merged: %q, %d tunnel runs, %d ike runs", m.Command, len(m.Tunnels.Runs), len(m.IKE.Runs))
	}
}
