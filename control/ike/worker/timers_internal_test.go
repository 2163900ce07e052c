package worker

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTimerHeap: entries come out of the heap in the order of their
// deadlines, whatever the order they went in, interleaved with pops.
func TestTimerHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h timerHeap
	var want []int64
	for range 2000 {
		if len(h) > 0 && r.IntN(3) == 0 {
			e := h.pop()
			if e.when != minOf(want) {
				t.Fatalf("popped %d, the earliest is %d", e.when, minOf(want))
			}
			want = slices.Delete(want, slices.Index(want, e.when), slices.Index(want, e.when)+1)
			continue
		}
		v := r.Int64N(1000) - 500
		h.push(timerEntry{when: v})
		want = append(want, v)
	}
	for len(h) > 0 {
		e := h.pop()
		if e.when != minOf(want) {
			t.Fatalf("popped %d, the earliest is %d", e.when, minOf(want))
		}
		want = slices.Delete(want, slices.Index(want, e.when), slices.Index(want, e.when)+1)
	}
	if len(want) != 0 {
		t.Fatalf("%d entries lost", len(want))
	}
}

func minOf(s []int64) int64 { return slices.Min(s) }
