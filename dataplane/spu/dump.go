package spu

import (
	"sync"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
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
	// Missing counts the page's entries that are installed but could not
	// be read (MissingReason says why): on an SPU declared failed that is still
	// stuck, whose tables are not safe to read until it comes back or
	// they move. They are on no page.
	Missing       int
	MissingReason string
}

// PackedPage is a page of SAs in the SA API's packed encoding, as Page.
type PackedPage struct {
	// SAs are the page's SAs in install order, each as
	// api.AppendPackedSA writes it; N counts them.
	SAs []byte
	N   int
	// Next, More, Missing and MissingReason are as Page's.
	Next          uint64
	More          bool
	Missing       int
	MissingReason string
}

// lookupRetries bound how long a lookup waits for an entry that is
// registered but on no SPU: an SA being installed (the registry has it
// before its SPU does) or one whose logical SPU is moving (it is in
// neither SPU's tables between the two halves of the move; a lookup that
// misses waits for a map change in progress to end before it looks
// again).
var lookupRetries = []time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond}

// lookup runs find for each index in want on its SPU (one command per SPU
// involved, the SPUs at once), and again, a few times, for those that are
// registered but were found on no SPU. reg reports whether index i is
// registered and its logical SPU; find reports whether it found index i
// on s. It returns how many registered indexes the last attempt could not
// look for, their SPU not taking the command (a failed SPU still stuck),
// and why; erred says whether any attempt had an SPU fail a command, which
// that SPU may still run later (find must then not write memory that is
// used again).
func (e *Engine) lookup(want []int, reg func(i int) (uint16, bool), find func(s *SPU, i int) bool) (missing int, why string, erred bool) {
	bySPU := make([][]int, len(e.spus))
	found := make([][]bool, len(e.spus))
	errs := make([]error, len(e.spus))
	for attempt := 0; ; attempt++ {
		for i := range bySPU {
			bySPU[i], errs[i] = bySPU[i][:0], nil
		}
		e.mu.Lock()
		n, spus := 0, 0
		for _, i := range want {
			if logical, ok := reg(i); ok {
				p := e.physical(logical)
				if len(bySPU[p]) == 0 {
					spus++
				}
				bySPU[p] = append(bySPU[p], i)
				n++
			}
		}
		e.mu.Unlock()
		if n == 0 {
			return 0, "", erred
		}
		var wg sync.WaitGroup
		for p, idx := range bySPU {
			if len(idx) == 0 {
				continue
			}
			found[p] = make([]bool, len(idx))
			run := func() {
				f := found[p]
				errs[p] = e.read(p, func(s *SPU) {
					for j, i := range idx {
						f[j] = find(s, i)
					}
				})
			}
			if spus == 1 {
				run()
				continue
			}
			// On every SPU at once: a page of SAs over two SPUs takes
			// the longer of the two, not their sum.
			wg.Add(1)
			go func() {
				defer wg.Done()
				run()
			}()
		}
		wg.Wait()
		missed := want[:0]
		missing, why = 0, ""
		for p, idx := range bySPU {
			for j, i := range idx {
				if errs[p] != nil || !found[p][j] {
					missed = append(missed, i)
				}
			}
			if errs[p] != nil && len(idx) > 0 {
				missing += len(idx)
				why = errs[p].Error()
				erred = true
			}
		}
		if len(missed) == 0 || attempt == len(lookupRetries) {
			return missing, why, erred
		}
		want = missed
		e.afterMapChange()
		time.Sleep(lookupRetries[attempt])
	}
}

// afterMapChange returns once no map change is in progress: one (a failed
// SPU's recovery among them) has the entries of the logical SPUs it moves
// on neither SPU until it ends, for as long as a million SAs take to move.
func (e *Engine) afterMapChange() {
	e.migMu.Lock()
	defer e.migMu.Unlock()
}

// read runs fn, which reads SPU p's tables, as doTables does: from this
// goroutine while the SPU sleeps (no wakeup of its thread, pinned to a
// core that may be busy: a listing's pages wait on that twice each), as
// a command otherwise. On an SPU whose loop has ended (declared failed:
// its tables not moved yet, or left there with no SPU in service to take
// them) it runs fn here too, one map change at a time, as the failure's
// recovery takes them: the SA API then still lists that SPU's SAs.
func (e *Engine) read(p int, fn func(*SPU)) error {
	err := e.doTables(p, fn)
	if err == nil {
		return nil
	}
	// A failed SPU's loop ends right after its panic; one stuck, not
	// ended, may still be writing its tables.
	s := e.spus[p]
	if !s.ctl.stopped.Load() || !s.ended(50*time.Millisecond) {
		return err
	}
	e.migMu.Lock()
	defer e.migMu.Unlock()
	fn(s)
	return nil
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// saStates looks up the SAs of refs: states[i] is refs[i]'s, valid where
// found[i]; missing and why as lookup's.
func (e *Engine) saStates(refs []saRef) (states []api.SAState, found []bool, missing int, why string) {
	states, found = make([]api.SAState, len(refs)), make([]bool, len(refs))
	missing, why, _ = e.lookup(seq(len(refs)), e.saReg(refs), func(s *SPU, i int) bool {
		if x, ok, active := s.t.find(refs[i]); ok {
			states[i], found[i] = saState(x.desc, x.sa, x.logical, s.ID, active, nil), true
		}
		return found[i]
	})
	return states, found, missing, why
}

// saReg is lookup's reg for refs (e.mu held).
func (e *Engine) saReg(refs []saRef) func(i int) (uint16, bool) {
	return func(i int) (uint16, bool) {
		r, ok := e.sas[refs[i]]
		return r.logical(), ok
	}
}

// saEntry is what a dump reads of an SA in an SPU's tables, inbound or
// outbound alike.
type saEntry struct {
	sa      *esp.SA
	desc    *saDesc
	logical uint16
}

// find is the SA r names in t, ok false if t has none; active says
// whether an outbound one is its reqid's active SA.
func (t *tables) find(r saRef) (x saEntry, ok, active bool) {
	if r.dir == refIn {
		if in := t.in[r.spi]; in != nil {
			return saEntry{in.sa, &in.desc, in.logical}, true, false
		}
		return x, false, false
	}
	if o := t.out[outKey{r.spi, r.remote}]; o != nil {
		return saEntry{o.sa, &o.desc, o.logical}, true, t.active[o.desc.reqid] == o
	}
	return x, false, false
}

// SAPage returns up to limit SAs installed after cursor after (0: from the
// first), in install order, with their state. SAs deleted meanwhile are
// left out, so a page may hold fewer than limit though More is set.
func (e *Engine) SAPage(after uint64, limit int) Page[api.SAState] {
	refs, seqs, pg := e.saOrderPage(after, limit)
	states, found, missing, why := e.saStates(refs)
	pg.Missing, pg.MissingReason = missing, why
	// The SAs found, moved down over those that were not, in place: a
	// copy of the page would double what a listing of a million SAs
	// gives the collector (which then scans spud's whole heap once more).
	n := 0
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

// saOrderPage is the install order's page after after: the SAs' refs and
// cursors, and the page with its Next and More.
func (e *Engine) saOrderPage(after uint64, limit int) ([]saRef, []uint64, Page[api.SAState]) {
	e.mu.Lock()
	n := min(limit, e.saOrder.len())
	refs, seqs, more := e.saOrder.page(after, limit, make([]saRef, 0, n), make([]uint64, 0, n))
	e.mu.Unlock()
	pg := Page[api.SAState]{Next: after, More: more}
	if len(seqs) > 0 {
		pg.Next = seqs[len(seqs)-1]
	}
	return refs, seqs, pg
}

// entryMem is the memory of one SA's dump entry that saState would
// otherwise allocate (its Logical, Encap and Drops), reused SA after SA.
type entryMem struct {
	logical int
	encap   api.Encap
	drops   map[string]uint64
	state   api.SAState
}

// PackedSAPage is SAPage in the SA API's packed encoding, at most
// maxBytes of it (cut short, More set and Next moved back to its last SA,
// where more would not fit). Each SPU encodes its SAs of the page itself,
// straight from its tables, into a buffer of its own, each SA through the
// one api.SAState of that SPU's entryMem (api.AppendPackedSA's bytes),
// not an api.SAState per SA: at a million SAs those states were most of
// what a listing allocated, and spud's listing CPU mostly the collector's
// over its gigabytes of heap. The SAs are then put in install order.
func (e *Engine) PackedSAPage(after uint64, limit, maxBytes int) PackedPage {
	refs, seqs, p := e.saOrderPage(after, limit)
	pg := PackedPage{Next: p.Next, More: p.More}
	// Where refs[i]'s SA went: bufs[spu][start:end]; end 0 for none.
	type span struct{ spu, start, end int32 }
	spans := make([]span, len(refs))
	bp, _ := spuBufs.Get().(*[][]byte)
	if bp == nil || len(*bp) != len(e.spus) {
		bp = new([][]byte)
		*bp = make([][]byte, len(e.spus))
	}
	bufs := *bp
	for i := range bufs {
		bufs[i] = bufs[i][:0]
	}
	mem := make([]entryMem, len(e.spus))
	// About 150 bytes an SA.
	guess := 160*len(refs)/len(e.spus) + 1024
	var erred bool
	pg.Missing, pg.MissingReason, erred = e.lookup(seq(len(refs)), e.saReg(refs), func(s *SPU, i int) bool {
		x, ok, active := s.t.find(refs[i])
		if !ok {
			return false
		}
		m := &mem[s.ID]
		m.state = saState(x.desc, x.sa, x.logical, s.ID, active, m)
		b := bufs[s.ID]
		if cap(b) == 0 {
			b = make([]byte, 0, guess)
		}
		start := len(b)
		b = api.AppendPackedSA(b, &m.state)
		bufs[s.ID] = b
		spans[i] = span{int32(s.ID), int32(start), int32(len(b))}
		return true
	})
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	out := make([]byte, 0, min(total, maxBytes))
	for i, sp := range spans {
		if sp.end == 0 {
			continue
		}
		b := bufs[sp.spu][sp.start:sp.end]
		if len(out)+len(b) > maxBytes && pg.N > 0 {
			pg.More = true
			break
		}
		out = append(out, b...)
		pg.N++
		pg.Next = seqs[i]
	}
	if !pg.More && len(seqs) > 0 {
		// The last SAs may have been deleted: the page still took them.
		pg.Next = seqs[len(seqs)-1]
	}
	pg.SAs = out
	if !erred {
		// Not after a command that failed, which its SPU may yet run.
		spuBufs.Put(bp)
	}
	return pg
}

// spuBufs holds PackedSAPage's buffers of each SPU's encoded SAs
// (*[][]byte), reused page after page: only the page put in install
// order goes out, and the collector of a heap of a million SAs is better
// spared a page's worth of garbage.
var spuBufs sync.Pool

// SACounters returns the counters of the SAs ids names (an outbound SA by
// its SPI and remote), found[i] false for one that is not installed, and
// Missing and MissingReason as Page's: what sa.stats answers, thousands at a
// time (a list-sas page's Child SAs, iked's liveness checks), without the
// rest of each SA's description, which SAStates would build.
func (e *Engine) SACounters(ids []api.SAID) (stats []api.SAStats, found []bool, missing int, why string) {
	refs := saRefs(ids)
	stats, found = make([]api.SAStats, len(ids)), make([]bool, len(ids))
	missing, why, _ = e.lookup(seq(len(refs)), e.saReg(refs), func(s *SPU, i int) bool {
		x, ok, _ := s.t.find(refs[i])
		if !ok {
			return false
		}
		st := x.sa.Stats()
		stats[i] = api.SAStats{Packets: st.Packets, Bytes: st.Bytes, Seq: st.Seq}
		for r, n := range st.Drops {
			if n > 0 {
				if stats[i].Drops == nil {
					stats[i].Drops = map[string]uint64{}
				}
				stats[i].Drops[esp.Reason(r).String()] = n
			}
		}
		found[i] = true
		return true
	})
	return stats, found, missing, why
}

func saRefs(ids []api.SAID) []saRef {
	refs := make([]saRef, len(ids))
	for i, id := range ids {
		refs[i] = idRef(id)
	}
	return refs
}

// SAStates returns the state of each SA ids names (an outbound SA by its
// SPI and remote), found[i] false for one that is not installed.
func (e *Engine) SAStates(ids []api.SAID) (states []api.SAState, found []bool) {
	states, found, _, _ = e.saStates(saRefs(ids))
	return states, found
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
	pg.Missing, pg.MissingReason, _ = e.lookup(seq(len(ids)), func(i int) (uint16, bool) {
		r, ok := e.policies[ids[i]]
		return r.logical(), ok
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
