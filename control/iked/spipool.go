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
		p.spis, p.size = nil, spiBlockMin
	case len(p.spis) > 0 && now.After(p.until):
		if p.size = p.size / 2; p.size < spiBlockMin {
			p.size = spiBlockMin
		}
		p.spis = nil
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
