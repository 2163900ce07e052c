package spud

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

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

// TestSPIAllocBlock: spi.alloc with a count reserves that many distinct
// SPIs, every one encoding the logical SPU asked for, held beyond a
// single SPI's reservation (the client hands them out over
// api.SPIBlockUse); child.add takes one out of the reservations. A count out of range is a bad request
// naming it.
func TestSPIAllocBlock(t *testing.T) {
	d, c, _ := childDaemon(t)
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.0.1")
	const logical = 9
	block, err := c.AllocSPIs(api.SPIAllocRequest{Local: local, Remote: remote, Logical: api.Logical(logical)}, 64)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for _, spi := range block {
		if seen[spi] || d.fn.LogicalSPI(spi) != logical {
			t.Errorf("spi 0x%08x: repeated %v, encodes logical %d, want %d", spi, seen[spi], d.fn.LogicalSPI(spi), logical)
		}
		seen[spi] = true
		d.mu.Lock()
		until := d.spis[spi]
		d.mu.Unlock()
		if left := time.Until(until); left < spiHold+api.SPIBlockUse-time.Minute {
			t.Errorf("spi 0x%08x: held for %v more, want about %v", spi, left, spiHold+api.SPIBlockUse)
		}
	}
	req := childReqN(t, c, logical, 0x7000)
	req.In.SPI = block[3]
	if _, err := c.AddChild(req); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	held := !d.spis[block[3]].IsZero()
	d.mu.Unlock()
	if held {
		t.Errorf("spi 0x%08x still reserved once installed", block[3])
	}
	for _, n := range []int{-1, api.MaxSPIBlock + 1} {
		_, err := c.AllocSPIs(api.SPIAllocRequest{Local: local, Remote: remote, Logical: api.Logical(logical)}, n)
		if !errors.Is(err, unixrpc.ErrBadRequest) || !strings.Contains(err.Error(), fmt.Sprintf("count %d out of range (0..%d)", n, api.MaxSPIBlock)) {
			t.Errorf("count %d: %v", n, err)
		}
	}
}
