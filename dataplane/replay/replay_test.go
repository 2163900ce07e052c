package replay

import (
	"math/rand/v2"
	"testing"
)

func TestZeroValueIsDefault(t *testing.T) {
	var w Window
	if w.Size() != DefaultSize || w.Check(1) != OK || w.Check(0) != TooOld {
		t.Fatal("zero value not usable")
	}
}

func TestWindowEdges(t *testing.T) {
	for _, size := range []int{32, 64, 100, 1024, 4096, 65536} {
		w, err := New(size)
		if err != nil {
			t.Fatal(err)
		}
		top := uint64(10 * size)
		if w.Update(top) != OK {
			t.Fatal("first update")
		}
		oldest := top - uint64(size) + 1
		if w.Check(oldest) != OK || w.Check(oldest-1) != TooOld {
			t.Fatalf("size %d: bottom edge wrong", size)
		}
		if w.Update(top) != Duplicate || w.Check(top+1) != OK || w.Check(1<<63) != OK {
			t.Fatalf("size %d: top edge wrong", size)
		}
		w.Update(oldest)
		if w.Check(oldest) != Duplicate {
			t.Fatalf("size %d: oldest not recorded", size)
		}
		// Slide by exactly one window: everything before is too old, the
		// bits of reused blocks are clear.
		w.Update(top + uint64(size))
		for s := top + 1; s < top+uint64(size); s++ {
			if w.Check(s) != OK {
				t.Fatalf("size %d: seq %d wrongly marked after slide", size, s)
			}
		}
		if w.Check(top) != TooOld {
			t.Fatalf("size %d: old top still in window", size)
		}
	}
	if _, err := New(16); err == nil {
		t.Fatal("accepted size 16")
	}
	if _, err := New(1 << 20); err == nil {
		t.Fatal("accepted size 2^20")
	}
}

// TestAgainstModel compares the bitmap with a plain set and the RFC 4303
// rules on random traffic.
func TestAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{32, 64, 200, 1024} {
		w, _ := New(size)
		seen := map[uint64]bool{}
		var top uint64
		for i := 0; i < 200000; i++ {
			seq := top + uint64(rng.IntN(3*size)) - uint64(2*size)
			switch rng.IntN(50) {
			case 0:
				seq = top + uint64(rng.IntN(10*size))
			case 1:
				// About a ring ahead, where a slide clears most of it.
				ring := int(blocksFor(size)) * 64
				seq = top + uint64(ring-64+rng.IntN(128))
			}
			if int64(seq) <= 0 {
				continue
			}
			want := OK
			switch {
			case top >= uint64(size) && seq <= top-uint64(size):
				want = TooOld
			case seen[seq]:
				want = Duplicate
			}
			if got := w.Check(seq); got != want {
				t.Fatalf("size %d step %d: Check(%d) = %v, want %v (top %d)", size, i, seq, got, want, top)
			}
			if want == OK {
				w.Update(seq)
				seen[seq] = true
				if seq > top {
					top = seq
				}
			}
		}
	}
}

func TestInferSeq(t *testing.T) {
	w, _ := New(64)
	const e = 1 << 32
	cases := []struct {
		top  uint64
		low  uint32
		want uint64
		ok   bool
	}{
		{1000, 1001, 1001, true},           // ahead, same epoch
		{1000, 937, 937, true},             // inside the window
		{1000, 900, e + 900, true},         // below the window: next epoch (case A)
		{e - 10, 5, e + 5, true},           // just past the 2^32 line
		{e + 10, 0xfffffff0, e - 16, true}, // case B: window straddles, low is in the previous epoch
		{e + 10, 20, e + 20, true},         // case B: current epoch
		{5, 0xfffffff0, 0, false},          // would be before sequence number 1
		{3*e + 100, 0x7fffffff, 3*e + 0x7fffffff, true},
	}
	for _, c := range cases {
		w.Reset()
		w.Update(c.top)
		got, ok := w.InferSeq(c.low)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("top %#x low %#x: got %#x %v, want %#x %v", c.top, c.low, got, ok, c.want, c.ok)
		}
	}
}

func TestStateRestore(t *testing.T) {
	w, _ := New(128)
	for _, s := range []uint64{5, 7, 100, 130, 129} {
		w.Update(s)
	}
	st := w.State()
	var w2 Window
	if err := w2.Restore(st); err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s < 300; s++ {
		if w.Check(s) != w2.Check(s) {
			t.Fatalf("restored window differs at %d", s)
		}
	}
	st.Bitmap = st.Bitmap[:1]
	if err := w2.Restore(st); err == nil {
		t.Fatal("accepted a truncated bitmap")
	}
}

// TestRestoreOtherRing: a state whose ring had another number of blocks
// (RFC 6479's spare block made the default window's 32, now 16) restores
// to the same verdicts.
func TestRestoreOtherRing(t *testing.T) {
	const size = 1024
	rng := rand.New(rand.NewPCG(7, 8))
	w, _ := New(size)
	var seen []uint64
	var top uint64
	for range 5000 {
		seq := top + uint64(rng.IntN(3*size)) - uint64(2*size)
		if int64(seq) > 0 && w.Update(seq) == OK {
			seen = append(seen, seq)
			top = max(top, seq)
		}
	}
	// The same numbers in a 32-block ring, as the old one held them: the
	// 2048 numbers up to top (the spare block clears the older ones).
	old := make([]uint64, 32)
	for _, seq := range seen {
		if top-seq < 2048 {
			old[(seq>>6)&31] |= 1 << (seq & 63)
		}
	}
	var w2 Window
	if err := w2.Restore(State{Size: size, Top: w.Top(), Bitmap: old}); err != nil {
		t.Fatal(err)
	}
	for s := top - 2*size; s <= top+10; s++ {
		if w.Check(s) != w2.Check(s) {
			t.Fatalf("at %d (top %d): restored %v, want %v", s, top, w2.Check(s), w.Check(s))
		}
	}
}

// TestBlocks: the ring is the smallest power of two of 64-bit blocks that
// holds the window, made at the first number accepted.
func TestBlocks(t *testing.T) {
	for _, c := range []struct{ size, blocks int }{{32, 1}, {64, 1}, {65, 2}, {200, 4}, {1024, 16}, {1025, 32}, {MaxSize, 1024}} {
		w, _ := New(c.size)
		if w.blocks != nil {
			t.Errorf("window %d: a bitmap before any number", c.size)
		}
		if w.Check(1) != OK || w.Update(1) != OK {
			t.Fatalf("window %d: 1 refused", c.size)
		}
		if len(w.blocks) != c.blocks {
			t.Errorf("window %d: %d blocks, want %d", c.size, len(w.blocks), c.blocks)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	w, _ := New(4096)
	var s uint64
	if n := testing.AllocsPerRun(1000, func() {
		s += 3
		if w.Check(s) == OK {
			w.Update(s)
		}
		w.InferSeq(uint32(s))
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}
