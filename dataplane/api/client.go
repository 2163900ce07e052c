package api

import (
	"fmt"

	"github.com/spugate/spugate/internal/unixrpc"
)

// DefaultSocket is where spud listens unless told otherwise.
const DefaultSocket = "/run/spugate/spud.sock"

// Client is a connection to spud's SA API: the RPC client (Call, Subscribe,
// Done, Close, Timeout) with a typed method per operation. Calls may be
// made from several goroutines. A refusal of spud's reads "spud: op: why"
// and has a *unixrpc.Error in its chain; a lost connection has
// unixrpc.ErrClosed.
type Client struct {
	*unixrpc.Client
}

// Dial connects to the SA API at path.
func Dial(path string) (*Client, error) {
	c, err := unixrpc.Dial("spud", path)
	if err != nil {
		return nil, err
	}
	return &Client{Client: c}, nil
}

// Hello opens the session, client naming this side in spud's log, and
// checks that spud speaks this version of the API.
func (c *Client) Hello(client string) (*HelloReply, error) {
	var r HelloReply
	if err := c.Call(OpHello, HelloRequest{Client: client}, &r); err != nil {
		return nil, err
	}
	if r.Version != Version {
		return nil, fmt.Errorf("api: spud speaks version %d, we speak %d", r.Version, Version)
	}
	return &r, nil
}

// AllocSPI reserves an inbound SPI anchored on the tunnel req names.
func (c *Client) AllocSPI(req SPIAllocRequest) (SPIAllocReply, error) {
	var r SPIAllocReply
	err := c.Call(OpSPIAlloc, req, &r)
	return r, err
}

// AddSA installs an SA.
func (c *Client) AddSA(sa *SA) error { return c.Call(OpSAAdd, sa, nil) }

// UpdateSA changes a live SA's peer address, encapsulation or lifetimes.
func (c *Client) UpdateSA(u *SAUpdate) error { return c.Call(OpSAUpdate, u, nil) }

// DelSA removes an SA.
func (c *Client) DelSA(id SAID) error { return c.Call(OpSADel, id, nil) }

// DelPolicy removes a policy.
func (c *Client) DelPolicy(id uint32) error { return c.Call(OpPolicyDel, PolicyID{ID: id}, nil) }

// SetSPUMap sets the logical -> physical SPU map wholesale.
func (c *Client) SetSPUMap(m []int) error { return c.Call(OpSPUMapSet, SPUMap{Map: m}, nil) }

// DumpSAs lists the installed SAs. keys:true is refused: spud has no key
// material to give.
func (c *Client) DumpSAs(keys bool) ([]SAState, error) {
	var r SADump
	err := c.Call(OpSADump, DumpRequest{Keys: keys}, &r)
	return r.SAs, err
}

// AddPolicy installs a policy; the reply gives its id and anchor.
func (c *Client) AddPolicy(p *Policy) (PolicyAddReply, error) {
	var r PolicyAddReply
	err := c.Call(OpPolicyAdd, p, &r)
	return r, err
}

// DumpPolicies lists the installed policies with their counters.
func (c *Client) DumpPolicies() ([]PolicyState, error) {
	var r PolicyDump
	err := c.Call(OpPolicyDump, DumpRequest{}, &r)
	return r.Policies, err
}

// Stats returns the data plane's counters.
func (c *Client) Stats() (*Stats, error) {
	var r Stats
	err := c.Call(OpStats, nil, &r)
	return &r, err
}

// SPUs lists the physical SPUs and the logical -> physical map.
func (c *Client) SPUs() (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUList, nil, &r)
	return &r, err
}

// DrainSPU takes SPU id out of service, moving its logical SPUs away.
func (c *Client) DrainSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUDrain, SPURequest{ID: id}, &r)
	return &r, err
}

// AddSPU puts a drained SPU id back in service.
func (c *Client) AddSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUAdd, SPURequest{ID: id}, &r)
	return &r, err
}

// FailSPU makes SPU id panic (fault injection, for tests).
func (c *Client) FailSPU(id int) error { return c.Call(OpSPUFail, SPURequest{ID: id}, nil) }
