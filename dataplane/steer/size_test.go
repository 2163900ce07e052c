package steer

import (
	"strings"
	"testing"

	"github.com/spugate/spugate/bpf"
	"golang.org/x/sys/unix"
)

// TestSizeSPD: the four SPD maps take their sizes from the options, and
// every one of them is BPF_F_NO_PREALLOC (a size costs nothing until
// used); a preallocated one would be refused rather than sized.
func TestSizeSPD(t *testing.T) {
	spec, err := bpf.LoadSteer()
	if err != nil {
		t.Fatal(err)
	}
	sz := SPDSizes{Policies: 1 << 20, Sources: 4 << 20}
	must(t, sizeSPD(spec, sz))
	for name, want := range map[string]int{"spd4_dst": sz.Policies, "spd6_dst": sz.Policies, "spd4_src": sz.Sources, "spd6_src": sz.Sources} {
		m := spec.Maps[name]
		if int(m.MaxEntries) != want || m.Flags&unix.BPF_F_NO_PREALLOC == 0 {
			t.Errorf("%s: max_entries %d flags %#x, want %d and BPF_F_NO_PREALLOC", name, m.MaxEntries, m.Flags, want)
		}
	}
	spec.Maps["spd6_src"].Flags &^= unix.BPF_F_NO_PREALLOC
	if err := sizeSPD(spec, sz); err == nil || !strings.Contains(err.Error(), "spd6_src is preallocated") {
		t.Errorf("a preallocated map sized: %v", err)
	}
}

// TestLoadRefusesSizes: out-of-range sizes are refused before anything is
// loaded (no privilege needed to see it).
func TestLoadRefusesSizes(t *testing.T) {
	for _, n := range []int{-1, MaxMaxPolicies + 1} {
		if _, err := Load(Options{MaxPolicies: n}); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("MaxPolicies %d: %v", n, err)
		}
	}
}
