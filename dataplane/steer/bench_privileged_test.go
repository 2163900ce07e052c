package steer

import (
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
)

// BenchmarkSteerTestRun times the XDP program per frame class with
// BPF_PROG_TEST_RUN (the kernel's own repeat loop, no network): parsing,
// the anchor hash and the map lookups. The IKE frame is the baseline: it
// is parsed but neither hashed nor steered. ESP and cleartext end in
// PassNoXSK (no socket on lo), after writing and removing the metadata,
// which costs about what a redirect does.
func BenchmarkSteerTestRun(b *testing.B) {
	privileged.Require(b)
	p, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	hk, _ := anchor.NewHashKey(nil)
	fn, _ := anchor.NewFunction(hk, 256)
	m, _ := anchor.NewMap(256, []uint16{0, 1})
	if err := p.SetConfig(Config{Anchor: fn}, m); err != nil {
		b.Fatal(err)
	}
	if err := p.AddLocalAddr(local4); err != nil {
		b.Fatal(err)
	}
	if err := p.AddLocalAddr(local6); err != nil {
		b.Fatal(err)
	}
	// Test runs without a context arrive on lo (ifindex 1).
	if err := p.SetPolicy(Policy{Ifindex: 1, Local: netip.MustParsePrefix("198.18.10.0/24"),
		Remote: netip.MustParsePrefix("198.18.20.0/24"), ID: 1, LogicalSPU: 5}); err != nil {
		b.Fatal(err)
	}
	payload := esp(0x1234, 1, 64)
	cases := []struct {
		name string
		f    frame
	}{
		{"ike", frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(500, 500, payload)}},
		{"esp", frame{src: peer4, dst: local4, proto: protoESP, l4: payload}},
		{"esp-ipv6", frame{src: peer6, dst: local6, proto: protoESP, l4: payload}},
		{"udp-esp", frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, payload)}},
		{"cleartext", frame{src: inside4, dst: remote4, proto: protoTCP, l4: payload}},
		{"no-policy", frame{src: peer4, dst: remote4, proto: protoTCP, l4: payload}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			data := c.f.bytes()
			const repeat = 100000
			var total float64
			for b.Loop() {
				_, d, err := p.Program().Benchmark(data, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(d.Nanoseconds())
			}
			b.ReportMetric(total/float64(b.N), "ns/frame")
		})
	}
}
