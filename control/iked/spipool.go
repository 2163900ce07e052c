package iked

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/spugate/spugate/dataplane/api"
)

// spiPools hands out inbound SPIs that spud granted in blocks, one pool
// per logical SPU: an SPI of a block carries the logical SPU in its top
// bits as one from spi.alloc does, so a Child SA takes it at no round
// trip to spud, and child.add is the only call of its setup. Each worker
// has its own (its spudDP's): the IKE SAs of a logical SPU are on one
// worker, so its pool is rarely shared.
//
// A block is good on the connection that asked for it (a spud that
// restarted knows nothing of it) and for api.SPIBlockUse after it was
// granted; what is left of it then is dropped, and spud's reservations
// lapse by themselves.
//
// The next block is asked for ahead, from a goroutine of its own, once
// half of the current one is handed out, so that the worker does not
// wait for spud when the current one runs out: only a pool's first block
// (or one after a lapse or a new connection) is waited for.
type spiPools struct {
	mu    sync.Mutex
	pools map[int]*spiPool
}

// spiPool is the SPIs of one logical SPU left of its last block.
type spiPool struct {
	mu    sync.Mutex
	c     *api.Client // the connection whose spud granted them
	spis  []uint32
	until time.Time // hand out none after this
	// size is the next block's: it doubles each time a block runs out
	// in time, up to spiBlockMax, and falls back to spiBlockMin when one
	// lapsed half used, so that a busy logical SPU asks rarely and an
	// idle one pins few reservations in spud.
	size int
	// ahead is the next block, asked for while this one lasts; nil when
	// none is.
	ahead *spiBlock
}

// spiBlock is a block asked for ahead: its fields are set once done is
// closed.
type spiBlock struct {
	c     *api.Client
	size  int
	done  chan struct{}
	spis  []uint32
	until time.Time
	err   error
}

// askAhead asks for the next block of p on connection c.
func (p *spiPool) askAhead(c *api.Client, grant func(n int) ([]uint32, error)) {
	b := &spiBlock{c: c, size: min(2*p.size, spiBlockMax), done: make(chan struct{})}
	p.ahead = b
	go func() {
		defer close(b.done)
		start := time.Now()
		b.spis, b.err = grant(b.size)
		b.until = start.Add(api.SPIBlockUse)
	}()
}

// The block sizes asked for: a setup rate of a few hundred per second
// spread over 256 logical SPUs runs through 64 in tens of seconds, well
// within api.SPIBlockUse.
const (
	spiBlockMin = 4
	spiBlockMax = 64
)

func (ps *spiPools) pool(logical int) *spiPool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.pools[logical]
	if p == nil {
		if ps.pools == nil {
			ps.pools = map[int]*spiPool{}
		}
		p = &spiPool{size: spiBlockMin}
		ps.pools[logical] = p
	}
	return p
}

// take returns an SPI of logical's pool on connection c, asking spud for
// a block through grant when the pool has none fit to hand out. The
// pool's lock is held over the call so that workers that find it empty
// at once wait for one block rather than each ask for one.
func (ps *spiPools) take(c *api.Client, logical int, grant func(n int) ([]uint32, error)) (uint32, error) {
	p := ps.pool(logical)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	switch {
	case p.c != c:
		p.spis, p.size, p.ahead = nil, spiBlockMin, nil
	case len(p.spis) > 0 && now.After(p.until):
		if p.size = p.size / 2; p.size < spiBlockMin {
			p.size = spiBlockMin
		}
		p.spis, p.ahead = nil, nil
	}
	if b := p.ahead; len(p.spis) == 0 && b != nil {
		// Asked for when this block was half out: most often here by now.
		<-b.done
		p.ahead = nil
		if now = time.Now(); b.err == nil && b.c == c && now.Before(b.until) {
			p.c, p.spis, p.until, p.size = c, b.spis, b.until, b.size
		}
	}
	if len(p.spis) == 0 {
		size := p.size
		if p.c == c && now.Before(p.until) {
			size = min(2*size, spiBlockMax) // the last block ran out in time
		}
		spis, err := grant(size)
		if err != nil {
			return 0, err
		}
		p.c, p.spis, p.until, p.size = c, spis, now.Add(api.SPIBlockUse), size
	}
	spi := p.spis[0]
	p.spis = p.spis[1:]
	if len(p.spis) <= p.size/2 && p.ahead == nil {
		p.askAhead(c, grant)
	}
	return spi, nil
}

// AllocSPI reserves an inbound SPI: from the pool of its logical SPU,
// filled by blocks (spi.alloc with a count), or from a call of its own
// where there is no logical SPU to pool by or spud is older than blocks.
func (p *spudDP) AllocSPI(local, remote netip.Addr, logical *int) (uint32, error) {
	if logical != nil {
		var spi uint32
		err := p.do(func(c *api.Client) (err error) {
			if p.noBlocks.Load() == c {
				return api.ErrNoSPIBlocks
			}
			spi, err = p.spis.take(c, *logical, func(n int) ([]uint32, error) {
				return c.AllocSPIs(api.SPIAllocRequest{Local: local, Remote: remote, Logical: logical}, n)
			})
			if errors.Is(err, api.ErrNoSPIBlocks) {
				p.noBlocks.Store(c)
			}
			return err
		})
		if !errors.Is(err, api.ErrNoSPIBlocks) {
			return spi, err
		}
	}
	var r api.SPIAllocReply
	err := p.do(func(c *api.Client) (err error) {
		r, err = c.AllocSPI(api.SPIAllocRequest{Local: local, Remote: remote, Logical: logical})
		return err
	})
	return r.SPI, err
}
