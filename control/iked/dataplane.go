package iked

import (
	"errors"
	"net/netip"
	"sync/atomic"

	"github.com/spugate/spugate/control/reuseport"
	"github.com/spugate/spugate/dataplane/api"
)

// spudDP is the task.DataPlane of the daemon: spud's SA API. The client is
// swapped when iked reconnects after spud restarted.
type spudDP struct {
	c atomic.Pointer[api.Client]
}

var errNoSpud = errors.New("not connected to spud")

func (p *spudDP) client() (*api.Client, error) {
	c := p.c.Load()
	if c == nil {
		return nil, errNoSpud
	}
	return c, nil
}

func (p *spudDP) AllocSPI(local, remote netip.Addr) (uint32, error) {
	c, err := p.client()
	if err != nil {
		return 0, err
	}
	r, err := c.AllocSPI(api.SPIAllocRequest{Local: local, Remote: remote})
	return r.SPI, err
}

func (p *spudDP) AddSA(s *api.SA) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	return c.AddSA(s)
}

func (p *spudDP) DelSA(id api.SAID) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	return c.DelSA(id)
}

func (p *spudDP) UpdateSA(u *api.SAUpdate) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	return c.UpdateSA(u)
}

func (p *spudDP) AddPolicy(pol *api.Policy) (uint32, error) {
	c, err := p.client()
	if err != nil {
		return 0, err
	}
	r, err := c.AddPolicy(pol)
	return r.ID, err
}

func (p *spudDP) DelPolicy(id uint32) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	return c.DelPolicy(id)
}

// reuseportSelector loads the SO_REUSEPORT selector with spud's anchor
// function and SPU map.
func reuseportSelector(d *Daemon) (*reuseport.Selector, error) {
	s, err := reuseport.NewSelector()
	if err != nil {
		return nil, err
	}
	if err := s.SetConfig(d.fn, d.spus.Load()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
