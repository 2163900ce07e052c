package spud

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// TestSPIAllocAnchor: spi.alloc encodes the logical SPU asked for in the
// SPI's top bits, or without one the hash of the endpoints', and refuses
// one out of range; sa.add and policy.add refuse one out of range as a
// bad request naming the SA or policy.
func TestSPIAllocAnchor(t *testing.T) {
	d, c := apiDaemon(t)
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.0.1")
	hash := d.fn.Logical(local, remote)
	for _, want := range []int{0, 7, 255, int(hash)} {
		r, err := c.AllocSPI(api.SPIAllocRequest{Local: local, Remote: remote, Logical: api.Logical(want)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Logical != want || int(d.codec.Logical(r.SPI)) != want || int(d.fn.LogicalSPI(r.SPI)) != want ||
			r.SPU != int(d.eng.Map().Physical(uint16(want))) {
			t.Errorf("logical %d: spi 0x%08x (encodes %d), reply logical %d spu %d", want, r.SPI, d.codec.Logical(r.SPI), r.Logical, r.SPU)
		}
	}
	r, err := c.AllocSPI(api.SPIAllocRequest{Local: local, Remote: remote})
	if err != nil || r.Logical != int(hash) || d.codec.Logical(r.SPI) != hash {
		t.Errorf("no logical: spi 0x%08x logical %d, want the hash's %d (%v)", r.SPI, r.Logical, hash, err)
	}
	_, err = c.AllocSPI(api.SPIAllocRequest{Local: local, Remote: remote, Logical: api.Logical(256)})
	if !errors.Is(err, unixrpc.ErrBadRequest) || !strings.Contains(err.Error(), "logical SPU 256 out of range (0..255)") {
		t.Errorf("logical 256: %v", err)
	}
	sa := dumpSA(1)
	sa.Logical = api.Logical(300)
	if err := c.AddSA(sa); !errors.Is(err, unixrpc.ErrBadRequest) || !strings.Contains(err.Error(), "out: logical SPU 300 out of range") {
		t.Errorf("sa with logical 300: %v", err)
	}
	p := api.Policy{Action: api.Bypass, Logical: api.Logical(-3), LocalTS: sa.LocalTS, RemoteTS: sa.RemoteTS}
	if _, err := c.AddPolicy(&p); !errors.Is(err, unixrpc.ErrBadRequest) || !strings.Contains(err.Error(), "policy 0: logical SPU -3") {
		t.Errorf("policy with logical -3: %v", err)
	}
}
