package worker

import (
	"fmt"
	"slices"

	"github.com/spugate/spugate/control/ike/manager"
)

// idOrder keeps a worker's IKE SAs in UniqueID order, so that a page of a
// listing (ListAfter) costs the page and not a pass over every IKE SA: at
// a million, spuctl list-sas asks for a thousand pages.
//
// It is a sorted sequence cut into blocks of at most 2*orderBlock
// entries: a binary search over the blocks' first IDs, then one within
// the block. New IKE SAs almost always take the highest ID yet (IDs only
// grow), so an insert is an append to the last block, amortized O(1); an
// IKE SA restored from the state file or migrated from another worker
// lands in the middle, at the cost of moving a block's tail. A delete
// moves the rest of its block and merges the block with a neighbour once
// it is small, so that blocks stay a few hundred entries and the list of
// blocks short (2,000 at a million).
type idOrder struct {
	blocks [][]orderEntry
	n      int
}

// orderEntry is an IKE SA with its UniqueID at hand, so that searches
// read the blocks and not every manager's IKE SA.
type orderEntry struct {
	id uint32
	m  *manager.Manager
}

// orderBlock is half the most entries a block holds: 16 bytes each, a
// block's move is a few KiB.
const orderBlock = 256

// Len is the number of IKE SAs in the order.
func (x *idOrder) Len() int { return x.n }

// firstAbove is the position of the first entry with an ID above id: the
// block and the index in it (len(x.blocks) when there is none).
func (x *idOrder) firstAbove(id uint32) (int, int) {
	bi, _ := slices.BinarySearchFunc(x.blocks, id, func(b []orderEntry, id uint32) int {
		if b[len(b)-1].id <= id {
			return -1
		}
		return 1
	})
	if bi == len(x.blocks) {
		return bi, 0
	}
	b := x.blocks[bi]
	i, _ := slices.BinarySearchFunc(b, id, func(e orderEntry, id uint32) int {
		if e.id <= id {
			return -1
		}
		return 1
	})
	return bi, i
}

// add files m under its IKE SA's UniqueID, after any with the same one.
func (x *idOrder) add(m *manager.Manager) {
	e := orderEntry{id: m.IKE.UniqueID, m: m}
	x.n++
	if len(x.blocks) == 0 {
		x.blocks = append(x.blocks, append(make([]orderEntry, 0, orderBlock), e))
		return
	}
	bi, i := x.firstAbove(e.id)
	if bi == len(x.blocks) {
		// Above every ID: the end of the last block.
		bi = len(x.blocks) - 1
		i = len(x.blocks[bi])
	}
	b := slices.Insert(x.blocks[bi], i, e)
	if len(b) <= 2*orderBlock {
		x.blocks[bi] = b
		return
	}
	// The second half gets a copy of its own, so that appends to the
	// first do not write over it.
	x.blocks[bi] = b[:orderBlock]
	x.blocks = slices.Insert(x.blocks, bi+1, slices.Grow(slices.Clone(b[orderBlock:]), orderBlock))
}

// remove drops m, which its IKE SA's UniqueID finds; it does nothing if
// m is not there.
func (x *idOrder) remove(m *manager.Manager) {
	id := m.IKE.UniqueID
	bi, i := x.firstAbove(id - 1)
	if id == 0 {
		bi, i = 0, 0
	}
	// Entries with the same ID may follow each other over blocks.
	for ; bi < len(x.blocks); bi, i = bi+1, 0 {
		b := x.blocks[bi]
		for ; i < len(b) && b[i].id == id; i++ {
			if b[i].m == m {
				x.deleteAt(bi, i)
				return
			}
		}
		if i < len(b) {
			return
		}
	}
}

// deleteAt removes entry i of block bi and keeps the blocks from getting
// small: an empty one goes, a small one takes in its successor when both
// fit in a block.
func (x *idOrder) deleteAt(bi, i int) {
	x.n--
	b := slices.Delete(x.blocks[bi], i, i+1)
	x.blocks[bi] = b
	switch {
	case len(b) == 0:
		x.blocks = slices.Delete(x.blocks, bi, bi+1)
	case len(b) < orderBlock/4 && bi+1 < len(x.blocks) && len(b)+len(x.blocks[bi+1]) <= 2*orderBlock:
		x.blocks[bi] = append(b, x.blocks[bi+1]...)
		x.blocks = slices.Delete(x.blocks, bi+1, bi+2)
	case len(b) < orderBlock/4 && bi > 0 && len(b)+len(x.blocks[bi-1]) <= 2*orderBlock:
		x.blocks[bi-1] = append(x.blocks[bi-1], b...)
		x.blocks = slices.Delete(x.blocks, bi, bi+1)
	}
}

// after appends to page the managers with a UniqueID above id, in order,
// at most limit of them.
func (x *idOrder) after(page []*manager.Manager, id uint32, limit int) []*manager.Manager {
	bi, i := x.firstAbove(id)
	for ; bi < len(x.blocks) && limit > 0; bi, i = bi+1, 0 {
		for _, e := range x.blocks[bi][i:] {
			if limit == 0 {
				break
			}
			page = append(page, e.m)
			limit--
		}
	}
	return page
}

// visit calls f with the managers after lists, until f returns false.
func (x *idOrder) visit(id uint32, limit int, f func(*manager.Manager) bool) {
	bi, i := x.firstAbove(id)
	for ; bi < len(x.blocks) && limit > 0; bi, i = bi+1, 0 {
		for _, e := range x.blocks[bi][i:] {
			if limit == 0 || !f(e.m) {
				return
			}
			limit--
		}
	}
}

// idsAfter is after for the IDs alone.
func (x *idOrder) idsAfter(ids []uint32, id uint32, limit int) []uint32 {
	bi, i := x.firstAbove(id)
	for ; bi < len(x.blocks) && limit > 0; bi, i = bi+1, 0 {
		for _, e := range x.blocks[bi][i:] {
			if limit == 0 {
				break
			}
			ids = append(ids, e.id)
			limit--
		}
	}
	return ids
}

// all appends every manager to out, in UniqueID order.
func (x *idOrder) all(out []*manager.Manager) []*manager.Manager {
	for _, b := range x.blocks {
		for _, e := range b {
			out = append(out, e.m)
		}
	}
	return out
}

// check reports where the order is not what it must be: sorted by the
// IKE SAs' own UniqueIDs, no empty block, no block over its size, its
// count right.
func (x *idOrder) check() error {
	n := 0
	var last uint32
	for bi, b := range x.blocks {
		if len(b) == 0 || len(b) > 2*orderBlock {
			return fmt.Errorf("id order: block %d of %d holds %d", bi, len(x.blocks), len(b))
		}
		for _, e := range b {
			if e.id != e.m.IKE.UniqueID {
				return fmt.Errorf("id order: IKE SA %d is filed as %d", e.m.IKE.UniqueID, e.id)
			}
			if n > 0 && e.id < last {
				return fmt.Errorf("id order: IKE SA %d after %d", e.id, last)
			}
			last = e.id
			n++
		}
	}
	if n != x.n {
		return fmt.Errorf("id order: %d entries, counted %d", n, x.n)
	}
	return nil
}
