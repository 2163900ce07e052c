package ring

import (
	"sync"
	"testing"
)

func TestOrderAndFull(t *testing.T) {
	r, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(6); err == nil {
		t.Error("size 6 accepted")
	}
	for i := 0; i < 4; i++ {
		s := r.Reserve()
		if s == nil {
			t.Fatalf("full after %d", i)
		}
		s.Meta.Len = int32(i)
		r.Commit()
	}
	if r.Reserve() != nil {
		t.Fatal("reserve on a full ring")
	}
	for i := 0; i < 4; i++ {
		s := r.Peek()
		if s == nil || int(s.Meta.Len) != i {
			t.Fatalf("slot %d: %+v", i, s)
		}
		r.Release()
	}
	if r.Peek() != nil {
		t.Fatal("peek on an empty ring")
	}
}

// TestConcurrent passes numbered slots from one goroutine to
// another (run with -race): none lost, duplicated or reordered.
func TestConcurrent(t *testing.T) {
	r, _ := New(256)
	const n = 200000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; {
			if s := r.Reserve(); s != nil {
				s.Meta.Policy = uint32(i)
				s.Buf[0] = byte(i)
				r.Commit()
				i++
			}
		}
	}()
	for i := 0; i < n; {
		s := r.Peek()
		if s == nil {
			continue
		}
		if s.Meta.Policy != uint32(i) || s.Buf[0] != byte(i) {
			t.Fatalf("got %d, want %d", s.Meta.Policy, i)
		}
		r.Release()
		i++
	}
	wg.Wait()
}

func TestNoAllocs(t *testing.T) {
	r, _ := New(8)
	n := testing.AllocsPerRun(1000, func() {
		s := r.Reserve()
		s.Meta.Len = 1
		r.Commit()
		r.Peek()
		r.Release()
	})
	if n != 0 {
		t.Errorf("%v allocations per round trip", n)
	}
}

func BenchmarkHandoff(b *testing.B) {
	r, _ := New(1024)
	done := make(chan struct{})
	go func() {
		for i := 0; i < b.N; {
			if s := r.Peek(); s != nil {
				r.Release()
				i++
			}
		}
		close(done)
	}()
	b.ReportAllocs()
	for i := 0; i < b.N; {
		if s := r.Reserve(); s != nil {
			s.Meta.Len = 64
			r.Commit()
			i++
		}
	}
	<-done
}
