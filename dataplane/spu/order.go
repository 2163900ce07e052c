package spu

import "sort"

// installOrder keeps the keys of a registry (SAs or policies) in the order
// they were installed, each with its install number (seq, from 1 up), so
// that a dump can be paged with a cursor: "the entries after seq S". An
// entry present during the whole dump keeps its seq, so no page skips or
// repeats it however many entries come and go between pages; a new entry
// has a seq above every other and lands on a later page.
//
// Adding is an append, deleting a binary search that leaves a tombstone,
// and the tombstones are swept out once they are half the slice: O(1)
// amortized per change, no sorting of the table per page (a table of a
// million SAs is not sorted on each page request). The caller locks.
type installOrder[K comparable] struct {
	seqs []uint64 // ascending; dead entries have the tombstone bit set
	keys []K
	dead int
	last uint64 // the last seq given
}

const tombstone = uint64(1) << 63

// add appends k and returns its seq.
func (o *installOrder[K]) add(k K) uint64 {
	o.last++
	o.seqs = append(o.seqs, o.last)
	o.keys = append(o.keys, k)
	return o.last
}

// find returns the index of the first entry whose seq is above after.
func (o *installOrder[K]) find(after uint64) int {
	return sort.Search(len(o.seqs), func(i int) bool { return o.seqs[i]&^tombstone > after })
}

// del removes the entry of seq, if there is one alive.
func (o *installOrder[K]) del(seq uint64) {
	i := o.find(seq - 1)
	if i == len(o.seqs) || o.seqs[i] != seq {
		return
	}
	o.seqs[i] |= tombstone
	var zero K
	o.keys[i] = zero // the key may hold pointers
	o.dead++
	if o.dead > 64 && o.dead*2 > len(o.seqs) {
		o.compact()
	}
}

// rekey gives the live entry of seq the key k, in place (an SA whose key
// changed stays where it was installed).
func (o *installOrder[K]) rekey(seq uint64, k K) {
	i := o.find(seq - 1)
	if i < len(o.seqs) && o.seqs[i] == seq {
		o.keys[i] = k
	}
}

func (o *installOrder[K]) compact() {
	w := 0
	for i, s := range o.seqs {
		if s&tombstone == 0 {
			o.seqs[w], o.keys[w] = s, o.keys[i]
			w++
		}
	}
	var zero K
	for i := w; i < len(o.keys); i++ {
		o.keys[i] = zero
	}
	o.seqs, o.keys, o.dead = o.seqs[:w], o.keys[:w], 0
	// Give memory back after a mass deletion rather than keep the peak.
	if cap(o.seqs) > 1024 && 4*w < cap(o.seqs) {
		o.seqs = append([]uint64(nil), o.seqs...)
		o.keys = append([]K(nil), o.keys...)
	}
}

// page appends to keys and seqs up to limit live entries whose seq is above
// after, in order, and reports whether live entries remain beyond them.
func (o *installOrder[K]) page(after uint64, limit int, keys []K, seqs []uint64) ([]K, []uint64, bool) {
	i := o.find(after)
	for ; i < len(o.seqs); i++ {
		if o.seqs[i]&tombstone != 0 {
			continue
		}
		if limit == 0 {
			return keys, seqs, true
		}
		keys, seqs = append(keys, o.keys[i]), append(seqs, o.seqs[i])
		limit--
	}
	return keys, seqs, false
}

// len is the number of live entries.
func (o *installOrder[K]) len() int { return len(o.seqs) - o.dead }
