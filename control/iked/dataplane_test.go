package iked

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

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

// A worker's connection to spud that is lost while spud runs on (a reply
// over the frame limit closes it) is dialled again by the next call: it
// used to stay lost, and every later Child SA failed with
// data_plane_error. A connection watchSpud took away (spud is gone) is
// left to watchSpud's resync.
func TestSpudConnectionRedial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	srv := unixrpc.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.Handle(api.OpSPIAlloc, func(json.RawMessage) (any, error) { return api.SPIAllocReply{SPI: 0x1234}, nil })
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })

	dp := &spudDP{path: func() string { return path }}
	c, err := api.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	dp.c.Store(c)
	a := netip.MustParseAddr("198.18.0.1")
	if spi, err := dp.AllocSPI(a, a); err != nil || spi != 0x1234 {
		t.Fatalf("AllocSPI: %x %v", spi, err)
	}
	c.Close()
	<-c.Done()
	if spi, err := dp.AllocSPI(a, a); err != nil || spi != 0x1234 {
		t.Fatalf("AllocSPI after the connection was lost: %x %v", spi, err)
	}
	if dp.c.Load() == c {
		t.Errorf("the lost connection is still in use")
	}
	// Lost again at once: the redial comes redialEvery after the last,
	// and the call waits for it rather than failing.
	dp.c.Load().Close()
	<-dp.c.Load().Done()
	start := time.Now()
	if _, err := dp.AllocSPI(a, a); err != nil {
		t.Errorf("a call while the connection is lost again: %v", err)
	}
	if took := time.Since(start); took > redialEvery+100*time.Millisecond {
		t.Errorf("the call waited %v for a redial due within %v", took, redialEvery)
	}
	// spud gone (watchSpud took the connection away): calls wait for
	// spudWait, then fail; while the wait runs out, at once.
	dp.c.Store(nil)
	start = time.Now()
	if _, err := dp.AllocSPI(a, a); !errors.Is(err, unixrpc.ErrClosed) {
		t.Errorf("with spud gone: %v", err)
	}
	if took := time.Since(start); took < spudWait || took > spudWait+time.Second {
		t.Errorf("with spud gone the call took %v, want about spudWait (%v)", took, spudWait)
	}
	start = time.Now()
	if _, err := dp.AllocSPI(a, a); !errors.Is(err, unixrpc.ErrClosed) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("spud still gone: %v after %v, want an error at once", err, time.Since(start))
	}
	// Back within spudWait: the waiting call goes through.
	dp.awaySince.Store(0)
	go func() {
		time.Sleep(300 * time.Millisecond)
		c, err := api.Dial(path)
		if err == nil {
			dp.c.Store(c)
		}
	}()
	if spi, err := dp.AllocSPI(a, a); err != nil || spi != 0x1234 {
		t.Errorf("spud back after 300 ms: %x %v", spi, err)
	}
}
