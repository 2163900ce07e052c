package steer

import (
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
)

// fakeLookups is the steering tables of the table tests, in Go: the local
// endpoints and a prefix SPD of the same two stages' result.
type fakeLookups struct {
	local map[netip.Addr]bool
	pols  []Policy
}

func (f *fakeLookups) IsLocal(a [16]byte) bool { return f.local[netip.AddrFrom16(a).Unmap()] }

func (f *fakeLookups) Policy(ifindex uint32, src, dst [16]byte, is6 bool) (uint32, uint16, uint16, bool) {
	s, d := netip.AddrFrom16(src).Unmap(), netip.AddrFrom16(dst).Unmap()
	for _, p := range f.pols {
		if uint32(p.Ifindex) == ifindex && p.Local.Contains(s) && p.Remote.Contains(d) {
			var flags uint16
			if p.Bypass {
				flags = policyBypass
			}
			return p.ID, p.LogicalSPU, flags, true
		}
	}
	return 0, 0, 0, false
}

func testLookups() *fakeLookups {
	return &fakeLookups{
		local: map[netip.Addr]bool{local4: true, local6: true},
		pols: []Policy{
			{Ifindex: 5, Local: pfx("198.18.10.99/32"), Remote: pfx("198.18.20.0/24"), ID: 9, Bypass: true},
			{Ifindex: 5, Local: pfx("198.18.10.0/24"), Remote: pfx("198.18.20.0/24"), ID: 7, LogicalSPU: 42},
			{Ifindex: 5, Local: pfx("198.18.10.0/24"), Remote: pfx("0.0.0.0/0"), ID: 8, LogicalSPU: 43},
			{Ifindex: 5, Local: pfx("2001:db8:10::/48"), Remote: pfx("2001:db8:20::/48"), ID: 10, LogicalSPU: 200},
			{Ifindex: 5, Local: pfx("2001:db8:10::/48"), Remote: pfx("::/0"), ID: 11, LogicalSPU: 201},
		},
	}
}

// TestClassifyCases runs the steering program's table cases through the
// Go classifier with the same tables in Go: every frame the program
// redirects gets the same class, offsets, flags, anchor and policy, and
// every frame it passes is ErrNotSteered. (The privileged tests compare
// with the program itself, over its real maps.)
func TestClassifyCases(t *testing.T) {
	fn, _ := anchor.NewFunction(anchor.HashKey{9, 8, 7}, 256)
	lk := testLookups()
	for _, c := range steerCases() {
		m, err := Classify(c.f.bytes(), 5, 1, &fn, lk)
		if c.verdict != xdpRedirect {
			if err == nil {
				t.Errorf("%s: classified %+v, the program passes it (%s)", c.name, m, c.counter)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		logical := uint16(c.logical)
		if c.logical < 0 {
			logical = c.anchor(&fn)
		}
		want := Meta{LogicalSPU: logical, PolicyID: c.policy, L3Offset: uint16(c.f.l3()), L4Offset: uint16(c.f.l4off()),
			RxQueue: 1, Class: c.class, Flags: c.flags}
		if m != want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, m, want)
		}
	}
	for _, c := range malformedCases() {
		if m, err := Classify(c.b, 5, 0, &fn, lk); err == nil {
			t.Errorf("%s: classified %+v, the program passes it", c.name, m)
		}
	}
}

// FuzzClassify: any input is either ErrNotSteered or a Meta whose offsets
// lie inside the frame, and never a panic.
func FuzzClassify(f *testing.F) {
	for _, c := range steerCases() {
		f.Add(c.f.bytes())
	}
	for _, c := range malformedCases() {
		f.Add(c.b)
	}
	fn, _ := anchor.NewFunction(anchor.HashKey{1}, 100)
	lk := testLookups()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Classify(b, 5, 0, &fn, lk)
		if err != nil {
			return
		}
		if int(m.L4Offset) > len(b) || m.L3Offset > m.L4Offset || int(m.LogicalSPU) >= fn.L() || m.Class == ClassNone {
			t.Fatalf("meta %+v for %d bytes", m, len(b))
		}
	})
}

func TestClassifyAllocatesNothing(t *testing.T) {
	fn, _ := anchor.NewFunction(anchor.HashKey{1}, 256)
	lk := testLookups()
	esp := steerCases()[3].f.bytes()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Classify(esp, 5, 0, &fn, lk); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per frame", allocs)
	}
}
