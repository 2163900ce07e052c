package worker

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
)

// The id order against a sorted slice under random inserts (mostly the
// next ID, some old ones as restores and migrations bring, some repeated)
// and deletes: pages, the whole order and its own check agree after every
// step.
func TestIDOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 16))
	var x idOrder
	var ref []*manager.Manager // sorted by ID, insertion order among equals
	next := uint32(1)
	byID := func(a, b *manager.Manager) int { return int(a.IKE.UniqueID) - int(b.IKE.UniqueID) }
	for step := range 60000 {
		switch r := rng.IntN(100); {
		case r < 55 || len(ref) == 0:
			id := next
			next++
			switch rng.IntN(20) {
			case 0:
				id = rng.Uint32N(next) // restored or migrated
			case 1:
				if len(ref) > 0 {
					id = ref[rng.IntN(len(ref))].IKE.UniqueID // a repeated ID
				}
			}
			m := &manager.Manager{IKE: &sa.IKESA{UniqueID: id}}
			x.add(m)
			i, _ := slices.BinarySearchFunc(ref, id+1, func(m *manager.Manager, id uint32) int { return int(m.IKE.UniqueID) - int(id) })
			ref = slices.Insert(ref, i, m)
		case r < 97:
			i := rng.IntN(len(ref))
			x.remove(ref[i])
			ref = slices.Delete(ref, i, i+1)
		default:
			// Not there: nothing changes.
			x.remove(&manager.Manager{IKE: &sa.IKESA{UniqueID: rng.Uint32N(next + 1)}})
		}
		if step%500 != 0 && step < 59999 {
			continue
		}
		if err := x.check(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if got := x.all(nil); !slices.Equal(got, ref) || x.Len() != len(ref) {
			t.Fatalf("step %d: the order holds %d (Len %d), want %d", step, len(got), x.Len(), len(ref))
		}
		if !slices.IsSortedFunc(ref, byID) {
			t.Fatal("reference unsorted")
		}
		// Paged from a random ID on, as ListAfter asks.
		after := rng.Uint32N(next + 1)
		limit := 1 + rng.IntN(600)
		i, _ := slices.BinarySearchFunc(ref, after+1, func(m *manager.Manager, id uint32) int { return int(m.IKE.UniqueID) - int(id) })
		want := ref[i:min(len(ref), i+limit)]
		if got := x.after(nil, after, limit); !slices.Equal(got, want) {
			t.Fatalf("step %d: %d after %d: %d managers, want %d", step, limit, after, len(got), len(want))
		}
		var visited []*manager.Manager
		stop := 1 + rng.IntN(limit+1)
		x.visit(after, limit, func(m *manager.Manager) bool { visited = append(visited, m); return len(visited) < stop })
		if w := want[:min(len(want), stop)]; !slices.Equal(visited, w) {
			t.Fatalf("step %d: visit %d after %d, stopping at %d: %d managers, want %d", step, limit, after, stop, len(visited), len(w))
		}
		ids := x.idsAfter(nil, after, limit)
		for i, m := range want {
			if i >= len(ids) || ids[i] != m.IKE.UniqueID {
				t.Fatalf("step %d: %d IDs after %d: %v", step, limit, after, ids)
			}
		}
		if len(ids) != len(want) {
			t.Fatalf("step %d: %d IDs after %d, want %d", step, len(ids), after, len(want))
		}
	}
	if len(ref) < 1000 {
		t.Fatalf("only %d left: the test does not reach several blocks", len(ref))
	}
	t.Logf("%d entries in %d blocks", x.Len(), len(x.blocks))
}

// BenchmarkIDOrder: an insert (the next ID) and a delete (an old one) on
// an order of 1M, and a page of 1024 from anywhere.
func BenchmarkIDOrder(b *testing.B) {
	const n = 1 << 20
	var x idOrder
	ms := make([]*manager.Manager, n)
	for i := range ms {
		ms[i] = &manager.Manager{IKE: &sa.IKESA{UniqueID: uint32(i + 1)}}
		x.add(ms[i])
	}
	b.Run("churn", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(2, 16))
		next := uint32(n + 1)
		for b.Loop() {
			i := rng.IntN(n)
			x.remove(ms[i])
			// The same manager comes back as a new IKE SA: the
			// benchmark measures the order, not the allocator.
			ms[i].IKE.UniqueID = next
			next++
			x.add(ms[i])
		}
	})
	b.Run("page", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 16))
		page := make([]*manager.Manager, 0, 1024)
		for b.Loop() {
			page = x.after(page[:0], rng.Uint32N(n), 1024)
		}
	})
}
