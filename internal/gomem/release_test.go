package gomem

import (
	"context"
	"runtime"
	"testing"
	"time"
)

var sink []byte

// TestReleaseWhenQuiet: a burst of allocation, then quiet, brings one
// release; more quiet brings none (nothing was allocated since).
func TestReleaseWhenQuiet(t *testing.T) {
	runtime.GC() // the live heap another test left is not this one's
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	releases := make(chan time.Duration, 16)
	go ReleaseWhenQuiet(ctx, Quiet{Every: 20 * time.Millisecond, Burst: 4 << 20, Idle: 1 << 20},
		func(took time.Duration) { releases <- took })
	for range 64 {
		sink = make([]byte, 256<<10)
	}
	sink = nil
	select {
	case <-releases:
	case <-time.After(5 * time.Second):
		t.Fatal("no release 5 s after a 16 MiB burst")
	}
	select {
	case <-releases:
		t.Fatal("released again with nothing allocated since")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestReleaseScalesWithTheLiveHeap: with 64 MiB live, a burst must reach
// a quarter of it (16 MiB), not just Burst, before a release: a large
// table rekeyed steadily is not collected every Burst.
func TestReleaseScalesWithTheLiveHeap(t *testing.T) {
	table := make([][]byte, 0, 256)
	for range 256 {
		table = append(table, make([]byte, 256<<10))
	}
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	releases := make(chan time.Duration, 16)
	go ReleaseWhenQuiet(ctx, Quiet{Every: 20 * time.Millisecond, Burst: 4 << 20, Idle: 1 << 20},
		func(took time.Duration) { releases <- took })
	time.Sleep(100 * time.Millisecond) // it has read the allocations before the bursts
	burst := func(mib int) {
		for range mib * 4 {
			sink = make([]byte, 256<<10)
		}
		sink = nil
	}
	burst(8)
	select {
	case <-releases:
		t.Fatal("released after 8 MiB with 64 MiB live")
	case <-time.After(300 * time.Millisecond):
	}
	burst(12)
	select {
	case <-releases:
	case <-time.After(5 * time.Second):
		t.Fatal("no release 5 s after 20 MiB with 64 MiB live")
	}
	runtime.KeepAlive(table)
}
