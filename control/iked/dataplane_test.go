package iked

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// TestNoSpudIsClosed: while iked has no connection to spud, the data
// plane's calls fail the way calls on a lost connection do (spud gone),
// not as a refusal of spud's.
func TestNoSpudIsClosed(t *testing.T) {
	var dp spudDP
	_, err := dp.AllocSPI(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"))
	var re *unixrpc.Error
	if !errors.Is(err, unixrpc.ErrClosed) || errors.As(err, &re) || err.Error() != "not connected to spud" {
		t.Errorf("alloc without spud: %v", err)
	}
	if err := dp.DelSA(api.SAID{SPI: 0x1000, Dir: api.In}); !errors.Is(err, unixrpc.ErrClosed) {
		t.Errorf("del without spud: %v", err)
	}
}
