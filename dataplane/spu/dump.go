package spu

import (
	"time"

	"github.com/spugate/spugate/dataplane/api"
)

// Paged dumps and lookups by key: what the SA API's sa.dump, policy.dump
// and sa.stats serve, at a cost of the page or the keys asked, not of the
// table (DumpSAs and DumpPolicies copy every entry of every SPU).

// Page is one page of a dump: the entries found, each with its cursor.
type Page[T any] struct {
	Entries []T
	// Seqs are the entries' cursors: a dump resumed after Seqs[i] starts
	// with the entry after Entries[i].
	Seqs []uint64
	// Next is the cursor of the next page: the last entry the page took
	// from the install order, whether or not it was still there to show.
	Next uint64
	// More reports entries after Next.
	More bool
}

// lookupRetries bound how long a lookup waits for an entry that is
// registered but on no SPU: an SA being installed (the registry has it
// before its SPU does) or one whose logical SPU is moving (it is in
// neither SPU's tables between the two halves of the move).
var lookupRetries = []time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond}

// lookup runs find for each index in want on its SPU (one command per SPU
// involved), and again, a few times, for those that are registered but
// were found on no SPU. reg reports whether index i is registered and its
// logical SPU; find reports whether it found index i on s.
func (e *Engine) lookup(want []int, reg func(i int) (uint16, bool), find func(s *SPU, i int) bool) {
	bySPU := make([][]int, len(e.spus))
	for attempt := 0; ; attempt++ {
		for i := range bySPU {
			bySPU[i] = bySPU[i][:0]
		}
		e.mu.Lock()
		n := 0
		for _, i := range want {
			if logical, ok := reg(i); ok {
				p := e.physical(logical)
				bySPU[p] = append(bySPU[p], i)
				n++
			}
		}
		e.mu.Unlock()
		if n == 0 {
			return
		}
		missed := want[:0]
		for p, idx := range bySPU {
			if len(idx) == 0 {
				continue
			}
			found := make([]bool, len(idx))
			err := e.Do(p, func(s *SPU) {
				for j, i := range idx {
					found[j] = find(s, i)
				}
			})
			for j, i := range idx {
				if err != nil || !found[j] {
					missed = append(missed, i)
				}
			}
		}
		if len(missed) == 0 || attempt == len(lookupRetries) {
			return
		}
		want = missed
		time.Sleep(lookupRetries[attempt])
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// saStates looks up the SAs of refs: states[i] is refs[i]'s, valid where
// found[i].
func (e *Engine) saStates(refs []saRef) (states []api.SAState, found []bool) {
	states, found = make([]api.SAState, len(refs)), make([]bool, len(refs))
	e.lookup(seq(len(refs)), func(i int) (uint16, bool) {
		r, ok := e.sas[refs[i]]
		return r.logical, ok
	}, func(s *SPU, i int) bool {
		r := refs[i]
		if r.dir == refIn {
			if x := s.t.in[r.spi]; x != nil {
				states[i], found[i] = saState(&x.desc, x.sa, x.logical, s.ID, false), true
			}
		} else if x := s.t.out[outKey{r.spi, r.remote}]; x != nil {
			states[i], found[i] = saState(&x.desc, x.sa, x.logical, s.ID, s.t.active[x.desc.reqid] == x), true
		}
		return found[i]
	})
	return states, found
}

// SAPage returns up to limit SAs installed after cursor after (0: from the
// first), in install order, with their state. SAs deleted meanwhile are
// left out, so a page may hold fewer than limit though More is set.
func (e *Engine) SAPage(after uint64, limit int) Page[api.SAState] {
	e.mu.Lock()
	n := min(limit, e.saOrder.len())
	refs, seqs, more := e.saOrder.page(after, limit, make([]saRef, 0, n), make([]uint64, 0, n))
	e.mu.Unlock()
	pg := Page[api.SAState]{Next: after, More: more}
	if len(seqs) > 0 {
		pg.Next = seqs[len(seqs)-1]
	}
	states, found := e.saStates(refs)
	// The SAs found, moved down over those that were not, in place: a
	// copy of the page would double what a listing of a million SAs
	// gives the collector (which then scans spud's whole heap once more).
	n = 0
	for i, ok := range found {
		if ok {
			states[n], seqs[n] = states[i], seqs[i]
			n++
		}
	}
	if n > 0 {
		clear(states[n:])
		pg.Entries, pg.Seqs = states[:n], seqs[:n]
	}
	return pg
}

// SAStates returns the state of each SA ids names (an outbound SA by its
// SPI and remote), found[i] false for one that is not installed.
func (e *Engine) SAStates(ids []api.SAID) (states []api.SAState, found []bool) {
	refs := make([]saRef, len(ids))
	for i, id := range ids {
		refs[i] = idRef(id)
	}
	return e.saStates(refs)
}

// PolicyPage returns up to limit policies installed after cursor after (0:
// from the first), in install order, with their counters; as SAPage.
func (e *Engine) PolicyPage(after uint64, limit int) Page[api.PolicyState] {
	e.mu.Lock()
	ids, seqs, more := e.polOrder.page(after, limit, nil, nil)
	e.mu.Unlock()
	pg := Page[api.PolicyState]{Next: after, More: more}
	if len(seqs) > 0 {
		pg.Next = seqs[len(seqs)-1]
	}
	states, found := make([]api.PolicyState, len(ids)), make([]bool, len(ids))
	e.lookup(seq(len(ids)), func(i int) (uint16, bool) {
		r, ok := e.policies[ids[i]]
		return r.logical, ok
	}, func(s *SPU, i int) bool {
		p := s.t.policies[ids[i]]
		if p == nil {
			return false
		}
		states[i] = policyState(p, s.ID)
		if p.out != nil {
			states[i].OutSPI = p.out.sa.SPI()
		}
		found[i] = true
		return true
	})
	for i, ok := range found {
		if ok {
			pg.Entries = append(pg.Entries, states[i])
			pg.Seqs = append(pg.Seqs, seqs[i])
		}
	}
	return pg
}
