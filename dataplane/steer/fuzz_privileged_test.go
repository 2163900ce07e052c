package steer

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
)

// FuzzSteerProgram feeds arbitrary frames to the XDP program itself
// (BPF_PROG_TEST_RUN, no network, arriving on lo where no AF_XDP socket
// is registered) and checks what must hold for any input: the verdict is
// XDP_PASS, exactly one counter moves, by one, and the frame comes back
// unchanged (the program removes its metadata again when it cannot
// redirect). Needs root; the seeds are the frames of the table tests.
func FuzzSteerProgram(f *testing.F) {
	privileged.Require(f)
	p, err := Load(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer p.Close()
	hk, _ := anchor.NewHashKey(nil)
	fn, _ := anchor.NewFunction(hk, 256)
	m, _ := anchor.NewMap(256, []uint16{0, 1, 2})
	for _, err := range []error{
		p.SetConfig(Config{Anchor: fn}, m),
		p.AddLocalAddr(local4),
		p.AddLocalAddr(local6),
		p.SetPolicy(Policy{Ifindex: 1, Local: netip.MustParsePrefix("198.18.10.0/24"), Remote: netip.MustParsePrefix("0.0.0.0/0"), ID: 1, LogicalSPU: 9}),
		p.SetPolicy(Policy{Ifindex: 1, Local: netip.MustParsePrefix("2001:db8:10::/48"), Remote: netip.MustParsePrefix("::/0"), ID: 2, LogicalSPU: 10}),
	} {
		if err != nil {
			f.Fatal(err)
		}
	}
	for _, c := range steerCases() {
		f.Add(c.f.bytes())
	}
	for _, c := range malformedCases() {
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > 3000 {
			return // refused by the test run itself, or beyond a page
		}
		before, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(in)+256)
		opts := &ebpf.RunOptions{Data: in, DataOut: out}
		v, err := p.Program().Run(opts)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		after, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		d := after.Sub(&before)
		moved := uint64(0)
		for _, x := range d {
			moved += x
		}
		if v != xdpPass || moved != 1 {
			t.Fatalf("verdict %d, counters {%v}", v, d)
		}
		if string(opts.DataOut) != string(in) {
			t.Fatalf("frame changed: % x -> % x", in, opts.DataOut)
		}
	})
}
