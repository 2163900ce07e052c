package gomem

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Quiet is when ReleaseWhenQuiet gives the heap's headroom back.
type Quiet struct {
	// Every is how often the allocations are looked at (default 1 s).
	Every time.Duration
	// Burst is how much the program must have allocated since the last
	// release for another to be worth a collection (default 64 MiB), and
	// at least a quarter of the live heap: a forced collection costs what
	// the live heap does, and a large table rekeyed steadily (a trickle
	// under Idle, never quiet for long) would otherwise be collected every
	// Burst, far more often than its GOGC would.
	Burst uint64
	// Idle is the most it may allocate in one Every and still be quiet
	// (default 4 MiB).
	Idle uint64
}

func (q Quiet) withDefaults() Quiet {
	if q.Every <= 0 {
		q.Every = time.Second
	}
	if q.Burst == 0 {
		q.Burst = 64 << 20
	}
	if q.Idle == 0 {
		q.Idle = 4 << 20
	}
	return q
}

// allocsMetric is the bytes allocated on the heap since the program
// started: cheap to read, no stop of the world (runtime.ReadMemStats
// stops it).
const allocsMetric = "/gc/heap/allocs:bytes"

// liveMetric is the heap the last collection found live.
const liveMetric = "/gc/heap/live:bytes"

// ReleaseWhenQuiet collects and returns every free page of the heap to
// the OS (debug.FreeOSMemory) once the program, having allocated at
// least q.Burst since the last time, allocates less than q.Idle in a
// q.Every; until ctx is done. done, when not nil, is called after each
// release with its duration.
//
// For a daemon whose live heap is a large, mostly still table (spud's
// SAs, policies and steering mirror) the heap goal's headroom (GOGC)
// is filled by the garbage of a burst of installs and then kept: the
// runtime's scavenger returns pages only down to about the goal, so at
// GOGC 50 a third of the RSS is garbage, collected or not, that no
// allocation will need until the next burst. A daemon that allocates
// steadily is never quiet and keeps its headroom, as without this.
func ReleaseWhenQuiet(ctx context.Context, q Quiet, done func(took time.Duration)) {
	q = q.withDefaults()
	s := []metrics.Sample{{Name: allocsMetric}, {Name: liveMetric}}
	value := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	read := func() uint64 {
		metrics.Read(s)
		return value(0)
	}
	burst := func() uint64 { return max(q.Burst, value(1)/4) }
	released := read()
	last := released
	t := time.NewTicker(q.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := read()
		quiet := now-last < q.Idle
		last = now
		if !quiet || now-released < burst() {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		// What the collection itself allocated is not a burst.
		released, last = read(), read()
		if done != nil {
			done(time.Since(start))
		}
	}
}
