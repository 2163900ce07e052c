package anchor

import (
	"cmp"
	"fmt"
	"slices"
)

// Map is the indirection table from logical to physical SPUs: entry i is
// the physical SPU of logical SPU i. A Map is immutable once made, so a
// reader may keep one while a new one is built.
type Map struct {
	entries []uint16
}

// Move is one logical SPU changing physical SPU in a rebuild: the SAs of
// its tunnels migrate From -> To.
type Move struct {
	Logical  uint16
	From, To uint16
}

// NewMap returns a balanced map of l logical SPUs over the physical SPUs
// spus: logical i goes to the (i mod N)-th of them in ascending order.
func NewMap(l int, spus []uint16) (*Map, error) {
	set, err := spuSet(l, spus)
	if err != nil {
		return nil, err
	}
	m := &Map{entries: make([]uint16, l)}
	for i := range m.entries {
		m.entries[i] = set[i%len(set)]
	}
	return m, nil
}

// MapFromEntries returns the map whose entry i is entries[i], for instance
// as read back from a BPF map.
func MapFromEntries(entries []uint16) (*Map, error) {
	if len(entries) < 1 || len(entries) > MaxLogicalSPUs {
		return nil, fmt.Errorf("anchor: map of %d logical SPUs out of range 1..%d", len(entries), MaxLogicalSPUs)
	}
	return &Map{entries: slices.Clone(entries)}, nil
}

func spuSet(l int, spus []uint16) ([]uint16, error) {
	if l < 1 || l > MaxLogicalSPUs {
		return nil, fmt.Errorf("anchor: %d logical SPUs out of range 1..%d", l, MaxLogicalSPUs)
	}
	set := slices.Clone(spus)
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) == 0 {
		return nil, fmt.Errorf("anchor: no physical SPU to map %d logical SPUs to", l)
	}
	if len(set) > l {
		return nil, fmt.Errorf("anchor: %d physical SPUs for only %d logical SPUs", len(set), l)
	}
	return set, nil
}

// Len returns L, the number of logical SPUs.
func (m *Map) Len() int { return len(m.entries) }

// Physical returns the physical SPU of a logical SPU (which must be < Len).
func (m *Map) Physical(logical uint16) uint16 { return m.entries[logical] }

// Entries returns a copy of the table.
func (m *Map) Entries() []uint16 { return slices.Clone(m.entries) }

// SPUs returns the physical SPUs the map uses, ascending.
func (m *Map) SPUs() []uint16 {
	s := slices.Clone(m.entries)
	slices.Sort(s)
	return slices.Compact(s)
}

// Load returns how many logical SPUs each physical SPU holds.
func (m *Map) Load() map[uint16]int {
	load := make(map[uint16]int)
	for _, p := range m.entries {
		load[p]++
	}
	return load
}

// Rebuild returns the map for a new set of physical SPUs, and the moves
// that lead there. It moves only what must move: the logical SPUs of
// removed physical SPUs, and of SPUs holding more than their share, the
// fewest that even out the load. Every physical SPU ends with floor(L/N)
// or ceil(L/N) logical SPUs. The L mod N larger shares go to the SPUs that
// hold the most already (ties: lower SPU number), which is what makes the
// number of moves minimal. A moved logical SPU goes to the SPUs short of
// their share in turn, ascending. The result depends only on the map and
// the set of SPUs, not on the order spus lists them.
func (m *Map) Rebuild(spus []uint16) (*Map, []Move, error) {
	l := len(m.entries)
	set, err := spuSet(l, spus)
	if err != nil {
		return nil, nil, err
	}
	current := m.Load()

	// Shares: floor for all, ceil for the extra best-loaded.
	byLoad := slices.Clone(set)
	slices.SortStableFunc(byLoad, func(a, b uint16) int {
		return cmp.Compare(current[b], current[a]) // most loaded first; set is ascending, so ties stay ascending
	})
	target := make(map[uint16]int, len(set))
	base, extra := l/len(set), l%len(set)
	for i, s := range byLoad {
		target[s] = base
		if i < extra {
			target[s]++
		}
	}

	// Keep the lowest-numbered logical SPUs of each physical SPU up to its
	// share; release the rest and everything on removed SPUs.
	next := &Map{entries: slices.Clone(m.entries)}
	kept := make(map[uint16]int, len(set))
	var released []uint16
	for i, p := range m.entries {
		t, ok := target[p]
		if ok && kept[p] < t {
			kept[p]++
			continue
		}
		released = append(released, uint16(i))
	}

	// Hand the released ones out in turn to the SPUs below their share.
	moves := make([]Move, 0, len(released))
	j := 0
	for _, lg := range released {
		for kept[set[j%len(set)]] >= target[set[j%len(set)]] {
			j++
		}
		to := set[j%len(set)]
		j++
		kept[to]++
		moves = append(moves, Move{Logical: lg, From: m.entries[lg], To: to})
		next.entries[lg] = to
	}
	return next, moves, nil
}
