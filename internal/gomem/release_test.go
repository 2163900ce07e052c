package gomem

import (
	"context"
	"testing"
	"time"
)

var sink []byte

// TestReleaseWhenQuiet: a burst of allocation, then quiet, brings one
// release; more quiet brings none (nothing was allocated since).
func TestReleaseWhenQuiet(t *testing.T) {
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
