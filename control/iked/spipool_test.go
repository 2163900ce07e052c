package iked

import (
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// fakeSPIAlloc serves spi.alloc with SPIs in sequence, blocks or not, and
// records the counts asked for (0: one SPI). Without blocks it decodes
// as a spud older than them does: a count is an unknown field.
type fakeSPIAlloc struct {
	mu     sync.Mutex
	next   uint32
	counts []int
	// delay is how long each spi.alloc takes.
	delay time.Duration
}

func (f *fakeSPIAlloc) serve(t *testing.T, blocks bool) (*unixrpc.Server, string) {
	t.Helper()
	return serveSpud(t, "", map[string]unixrpc.HandlerFunc{api.OpSPIAlloc: func(body json.RawMessage) (any, error) {
		var req api.SPIAllocRequest
		if blocks {
			if err := unixrpc.Decode(body, &req); err != nil {
				return nil, err
			}
		} else {
			var old struct {
				Local, Remote netip.Addr
				Logical       *int
			}
			if err := unixrpc.Decode(body, &old); err != nil {
				return nil, err
			}
		}
		time.Sleep(f.delay)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.counts = append(f.counts, req.Count)
		r := api.SPIAllocReply{}
		for range max(req.Count, 1) {
			f.next++
			r.SPIs = append(r.SPIs, f.next)
		}
		r.SPI = r.SPIs[0]
		if req.Count == 0 {
			r.SPIs = nil
		}
		return r, nil
	}})
}

func (f *fakeSPIAlloc) asked() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.counts...)
}

// The SPIs of a logical SPU come from blocks that iked hands out itself,
// one call to spud per block rather than one per Child SA; blocks grow
// while they run out in time, a block is not handed out past
// api.SPIBlockUse nor on a connection other than the one it came by, and
// an SPI without a logical SPU is asked for alone.
func TestSPIBlocks(t *testing.T) {
	f := &fakeSPIAlloc{}
	_, path := f.serve(t, true)
	dp := connectDP(t, path)
	c := dp.c.Load()
	a := netip.MustParseAddr("198.18.0.1")
	seen := map[uint32]bool{}
	alloc := func(logical *int) uint32 {
		t.Helper()
		spi, err := dp.AllocSPI(a, a, logical)
		if err != nil {
			t.Fatal(err)
		}
		if seen[spi] {
			t.Fatalf("spi %d handed out twice", spi)
		}
		seen[spi] = true
		return spi
	}
	for range spiBlockMin + 2*spiBlockMin + 1 {
		alloc(api.Logical(5))
	}
	if got := f.asked(); len(got) != 3 || got[0] != spiBlockMin || got[1] != 2*spiBlockMin || got[2] != 4*spiBlockMin {
		t.Fatalf("blocks asked %v, want %d, %d then %d", got, spiBlockMin, 2*spiBlockMin, 4*spiBlockMin)
	}
	alloc(api.Logical(6)) // a pool of its own
	alloc(nil)            // no logical SPU: one SPI, no block
	if got := f.asked(); len(got) != 5 || got[3] != spiBlockMin || got[4] != 0 {
		t.Fatalf("blocks asked %v, want a block of %d for logical 6 and a single SPI", got, spiBlockMin)
	}

	// A block past its use: what is left of it is dropped, and the next
	// block is smaller.
	p := dp.spis.pool(6)
	p.mu.Lock()
	left := append([]uint32(nil), p.spis...)
	p.until = time.Now().Add(-time.Second)
	p.mu.Unlock()
	if spi := alloc(api.Logical(6)); slices.Contains(left, spi) {
		t.Errorf("spi %d of a lapsed block handed out", spi)
	}
	// A new connection (spud restarted): the pool's SPIs are not its
	// spud's.
	p = dp.spis.pool(5)
	p.mu.Lock()
	left = append([]uint32(nil), p.spis...)
	p.mu.Unlock()
	c.Close()
	<-c.Done()
	if spi := alloc(api.Logical(5)); slices.Contains(left, spi) || len(left) == 0 {
		t.Errorf("spi %d of the lost connection's block handed out (left %v)", spi, left)
	}
	if got := f.asked(); len(got) != 7 || got[5] != spiBlockMin || got[6] != spiBlockMin {
		t.Errorf("blocks asked %v, want blocks of %d after a lapse and after a new connection", got, spiBlockMin)
	}
}

// In front of a spud older than blocks (it refuses the count as an
// unknown field), SPIs are asked for one at a time, and no block is
// asked for again on that connection.
func TestSPIBlocksOlderSpud(t *testing.T) {
	f := &fakeSPIAlloc{}
	_, path := f.serve(t, false)
	dp := connectDP(t, path)
	c := dp.c.Load()
	a := netip.MustParseAddr("198.18.0.1")
	for i := range 3 {
		spi, err := dp.AllocSPI(a, a, api.Logical(5))
		if err != nil || spi != uint32(i+1) {
			t.Fatalf("AllocSPI from an older spud: %d %v", spi, err)
		}
	}
	// The refused block request reached the handler's decoding only.
	if got := f.asked(); len(got) != 3 {
		t.Errorf("spud served %v, want 3 single SPIs", got)
	}
	if dp.noBlocks.Load() != c {
		t.Errorf("the connection is not marked as one without blocks")
	}
}

// The next block of a pool is asked for ahead, once half of the current
// one is handed out: the worker waits for spud for a pool's first block,
// not for the later ones.
func TestSPIBlocksAhead(t *testing.T) {
	const delay = 30 * time.Millisecond
	f := &fakeSPIAlloc{delay: delay}
	_, path := f.serve(t, true)
	dp := connectDP(t, path)
	a := netip.MustParseAddr("198.18.0.1")
	seen := map[uint32]bool{}
	var first time.Duration
	for i := range spiBlockMin + 2*spiBlockMin + 4*spiBlockMin {
		spi, err := dp.AllocSPI(a, a, api.Logical(5))
		if err != nil {
			t.Fatal(err)
		}
		if seen[spi] {
			t.Fatalf("spi %d handed out twice", spi)
		}
		seen[spi] = true
		if i == 0 {
			if first = time.Duration(dp.waitedNS.Load()); first < delay {
				t.Errorf("the first block was not waited for")
			}
		}
		// Setups come at a pace that leaves spud time to answer: the
		// block asked ahead is in before the next setup.
		p := dp.spis.pool(5)
		p.mu.Lock()
		b := p.ahead
		p.mu.Unlock()
		if b != nil {
			<-b.done
		}
	}
	if got := f.asked(); len(got) < 3 || got[0] != spiBlockMin || got[1] != 2*spiBlockMin || got[2] != 4*spiBlockMin {
		t.Errorf("blocks asked %v, want %d, %d, %d...", got, spiBlockMin, 2*spiBlockMin, 4*spiBlockMin)
	}
	if w := time.Duration(dp.waitedNS.Load()) - first; w >= delay {
		t.Errorf("waited %v for spud after the first block, want less than one call's %v", w, delay)
	}
}
