package anchor

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// checkBalanced fails unless every SPU in spus holds floor or ceil of L/N
// and no other SPU holds any.
func checkBalanced(t *testing.T, m *Map, spus []uint16) {
	t.Helper()
	load := m.Load()
	l, n := m.Len(), len(spus)
	lo, hi := l/n, (l+n-1)/n
	for _, s := range spus {
		if c := load[s]; c < lo || c > hi {
			t.Errorf("SPU %d holds %d logical SPUs, want %d..%d (load %v)", s, c, lo, hi, load)
		}
		delete(load, s)
	}
	if len(load) != 0 {
		t.Errorf("logical SPUs left on SPUs outside the set: %v", load)
	}
}

// checkMoves fails unless moves are exactly the entries that differ.
func checkMoves(t *testing.T, old, next *Map, moves []Move) {
	t.Helper()
	diff := 0
	for i := range old.Len() {
		if old.Physical(uint16(i)) != next.Physical(uint16(i)) {
			diff++
		}
	}
	if diff != len(moves) {
		t.Errorf("%d entries changed, %d moves reported", diff, len(moves))
	}
	for _, mv := range moves {
		if old.Physical(mv.Logical) != mv.From || next.Physical(mv.Logical) != mv.To || mv.From == mv.To {
			t.Errorf("bad move %+v", mv)
		}
	}
}

// minMoves is the least number of moves from old to any balanced map over
// spus, by trying every choice of which SPUs take the larger share.
func minMoves(old *Map, spus []uint16) int {
	load := old.Load()
	l, n := old.Len(), len(spus)
	base, extra := l/n, l%n
	best := -1
	for mask := 0; mask < 1<<n; mask++ {
		ones := 0
		for i := range n {
			if mask&(1<<i) != 0 {
				ones++
			}
		}
		if ones != extra {
			continue
		}
		kept := 0
		for i, s := range spus {
			t := base
			if mask&(1<<i) != 0 {
				t++
			}
			kept += min(load[s], t)
		}
		if moved := l - kept; best < 0 || moved < best {
			best = moved
		}
	}
	return best
}

func rebuild(t *testing.T, m *Map, spus []uint16) (*Map, []Move) {
	t.Helper()
	next, moves, err := m.Rebuild(spus)
	if err != nil {
		t.Fatalf("Rebuild(%v): %v", spus, err)
	}
	checkBalanced(t, next, spus)
	checkMoves(t, m, next, moves)
	if want := minMoves(m, spus); len(moves) != want {
		t.Errorf("Rebuild(%v) moved %d logical SPUs, minimum is %d", spus, len(moves), want)
	}
	again, _, _ := m.Rebuild(spus)
	if !slices.Equal(again.Entries(), next.Entries()) {
		t.Errorf("Rebuild(%v) is not deterministic", spus)
	}
	return next, moves
}

func TestRebuildDrainAddKill(t *testing.T) {
	m, err := NewMap(256, []uint16{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	checkBalanced(t, m, []uint16{0, 1, 2, 3})

	// Drain SPU 2: its 64 logical SPUs, and only those, move.
	drained, moves := rebuild(t, m, []uint16{0, 1, 3})
	if len(moves) != 64 {
		t.Errorf("drain moved %d, want 64", len(moves))
	}
	for _, mv := range moves {
		if mv.From != 2 {
			t.Errorf("drain moved logical %d from SPU %d, not from the drained SPU", mv.Logical, mv.From)
		}
	}

	// Add it back: 64 return to it, and only to it.
	back, moves := rebuild(t, drained, []uint16{0, 1, 2, 3})
	if len(moves) != 64 {
		t.Errorf("re-add moved %d, want 64", len(moves))
	}
	for _, mv := range moves {
		if mv.To != 2 {
			t.Errorf("re-add moved logical %d to SPU %d, not to the added SPU", mv.Logical, mv.To)
		}
	}

	// Kill SPU 0 of the rebuilt map.
	_, moves = rebuild(t, back, []uint16{1, 2, 3})
	if len(moves) != 64 {
		t.Errorf("kill moved %d, want 64", len(moves))
	}

	// Growing 4 -> 5: the new SPU gets its share of 51, taken from the
	// others (one keeps 52, three keep 51); nothing else moves.
	_, moves = rebuild(t, m, []uint16{0, 1, 2, 3, 4})
	if len(moves) != 51 {
		t.Errorf("4->5 moved %d, want 51 (the new SPU's floor share)", len(moves))
	}

	// The same set is a no-op.
	if _, moves = rebuild(t, m, []uint16{3, 2, 1, 0}); len(moves) != 0 {
		t.Errorf("same set moved %d", len(moves))
	}
}

// TestRebuildRandom drives random sequences of SPU sets and checks balance,
// minimality and determinism at every step.
func TestRebuildRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, l := range []int{1, 7, 64, 100, 256} {
		m, err := NewMap(l, []uint16{0})
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			n := 1 + r.IntN(min(l, 8))
			perm := r.Perm(10)[:n]
			spus := make([]uint16, n)
			for i, p := range perm {
				spus[i] = uint16(p)
			}
			m, _ = rebuild(t, m, spus)
			if t.Failed() {
				return
			}
		}
	}
}

func TestRebuildErrors(t *testing.T) {
	m, _ := NewMap(4, []uint16{0, 1})
	if _, _, err := m.Rebuild(nil); err == nil {
		t.Error("Rebuild with no SPUs accepted")
	}
	if _, _, err := m.Rebuild([]uint16{0, 1, 2, 3, 4}); err == nil {
		t.Error("Rebuild with more SPUs than logical SPUs accepted")
	}
	if _, err := NewMap(0, []uint16{0}); err == nil {
		t.Error("NewMap(L=0) accepted")
	}
	if _, err := MapFromEntries(nil); err == nil {
		t.Error("MapFromEntries(nil) accepted")
	}
	// Duplicates in the set are one SPU.
	m2, _, err := m.Rebuild([]uint16{1, 1, 0})
	if err != nil || !slices.Equal(m2.SPUs(), []uint16{0, 1}) {
		t.Errorf("Rebuild with duplicates: %v, %v", m2, err)
	}
}

// TestTunnelSpread hashes 1,000 random IPv4 tunnels over 4 SPUs with L=256
// under several random hash keys and reports each distribution. Keys and
// tunnels come from the fixed seeds 1..8 (the first eight, not chosen), so
// the result is repeatable.
//
// The 1.15 bound is a property of the draw as much as of the function:
// tunnels per SPU are Binomial(1000, 1/4) (sd 13.7) even for an ideal
// uniform hash, and 1.15 x 250 = 287.5 is 2.74 sd above the mean, which one
// of four SPUs exceeds with probability about 1.2%. Over eight keys one
// excess is expected one time in ten; seed 3 is one (291 tunnels, 1.164).
// So the test requires the bound for all keys but one, a hard 1.20 (3.65
// sd, probability 5e-4 per key) for every key, and checks uniformity over
// the 256 logical SPUs with a chi-square test on 100,000 tunnels.
func TestTunnelSpread(t *testing.T) {
	const tunnels, spus, l = 1000, 4, 256
	m, err := NewMap(l, []uint16{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	worst, over := 0.0, 0
	for seed := uint64(1); seed <= 8; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x5a17))
		hk, _ := NewHashKey(r2reader{r})
		f, _ := NewFunction(hk, l)
		var count [spus]int
		for range tunnels {
			var a, b [4]byte
			fillRand(r, a[:])
			fillRand(r, b[:])
			count[m.Physical(f.Logical(netip.AddrFrom4(a), netip.AddrFrom4(b)))]++
		}
		mean := float64(tunnels) / spus
		busiest := float64(slices.Max(count[:])) / mean
		worst = max(worst, busiest)
		t.Logf("seed %d: tunnels per SPU %v, busiest %.3f x mean", seed, count, busiest)
		if busiest > 1.15 {
			over++
		}
		if busiest > 1.20 {
			t.Errorf("seed %d: busiest SPU holds %.3f x the mean (%v), above 1.20", seed, busiest, count)
		}
	}
	t.Logf("worst busiest/mean over 8 keys: %.3f; %d of 8 keys above 1.15", worst, over)
	if over > 1 {
		t.Errorf("%d of 8 keys put more than 1.15 x the mean on one SPU; at most 1 expected", over)
	}
}

// TestLogicalUniform is a chi-square test of the logical SPUs of 100,000
// random tunnels (IPv4 and IPv6) over L=256 bins: 255 degrees of freedom,
// mean 255, sd 22.6; 350 is 4.2 sd, a false alarm once in 10^5.
func TestLogicalUniform(t *testing.T) {
	const n, l = 100000, 256
	for seed := uint64(1); seed <= 3; seed++ {
		r := rand.New(rand.NewPCG(seed, 0xc41))
		hk, _ := NewHashKey(r2reader{r})
		f, _ := NewFunction(hk, l)
		var bins [l]int
		for range n {
			bins[f.Logical(randAddr(r), randAddr(r))]++
		}
		exp := float64(n) / l
		chi := 0.0
		for _, c := range bins {
			d := float64(c) - exp
			chi += d * d / exp
		}
		t.Logf("seed %d: chi-square %.1f (255 degrees of freedom)", seed, chi)
		if chi > 350 {
			t.Errorf("seed %d: chi-square %.1f: logical SPUs are not uniform", seed, chi)
		}
	}
}
