package steer

import (
	"net/netip"
	"runtime"
	"testing"
)

// nopWriter takes SPD entries and drops them: the Go side's memory alone.
type nopWriter struct{}

func (nopWriter) putDst(groupKey, uint32) error { return nil }
func (nopWriter) delDst(groupKey) error         { return nil }
func (nopWriter) putSrc(srcKey, spdValue) error { return nil }
func (nopWriter) delSrc(srcKey) error           { return nil }

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSPDTableMemory reports the Go heap the steering program's mirror of
// the SPD takes per policy, for tunnels as issue 16 counts them (a remote
// /32 each, one local subnet), bounds it, and checks that the policies
// all go again.
func TestSPDTableMemory(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	local := netip.MustParsePrefix("198.18.128.0/24")
	remote := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	before := heapAlloc()
	tab := newSPDTable()
	for i := range n {
		if err := tab.set(nopWriter{}, Policy{Ifindex: 2, Local: local, Remote: remote(i), ID: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	after := heapAlloc()
	per := float64(int64(after)-int64(before)) / float64(n)
	t.Logf("%d policies: %.0f bytes each", n, per)
	// 1,753 bytes with a map per destination and per group; 438 with
	// slices for small sets; 314 with 18-byte prefixes in the keys.
	if per > 384 {
		t.Errorf("%.0f bytes per policy, want at most 384", per)
	}
	for i := range n {
		if err := tab.delete(nopWriter{}, 2, local, remote(i)); err != nil {
			t.Fatal(err)
		}
	}
	if l := len(tab.list()); l != 0 {
		t.Errorf("%d policies left", l)
	}
	runtime.KeepAlive(&tab)
}
