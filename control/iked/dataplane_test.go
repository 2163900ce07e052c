package iked

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
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
	_, err := dp.AllocSPI(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), nil)
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
	_, path := serveSpud(t, "", map[string]unixrpc.HandlerFunc{
		api.OpSPIAlloc: func(json.RawMessage) (any, error) { return api.SPIAllocReply{SPI: 0x1234}, nil }})
	dp := connectDP(t, path)
	c := dp.c.Load()
	a := netip.MustParseAddr("198.18.0.1")
	if spi, err := dp.AllocSPI(a, a, nil); err != nil || spi != 0x1234 {
		t.Fatalf("AllocSPI: %x %v", spi, err)
	}
	c.Close()
	<-c.Done()
	if spi, err := dp.AllocSPI(a, a, nil); err != nil || spi != 0x1234 {
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
	if _, err := dp.AllocSPI(a, a, nil); err != nil {
		t.Errorf("a call while the connection is lost again: %v", err)
	}
	if took := time.Since(start); took > redialEvery+100*time.Millisecond {
		t.Errorf("the call waited %v for a redial due within %v", took, redialEvery)
	}
	// spud gone (watchSpud took the connection away): calls wait for
	// spudWait, then fail; while the wait runs out, at once.
	dp.c.Store(nil)
	start = time.Now()
	if _, err := dp.AllocSPI(a, a, nil); !errors.Is(err, unixrpc.ErrClosed) {
		t.Errorf("with spud gone: %v", err)
	}
	if took := time.Since(start); took < spudWait || took > spudWait+time.Second {
		t.Errorf("with spud gone the call took %v, want about spudWait (%v)", took, spudWait)
	}
	start = time.Now()
	if _, err := dp.AllocSPI(a, a, nil); !errors.Is(err, unixrpc.ErrClosed) || time.Since(start) > 100*time.Millisecond {
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
	if spi, err := dp.AllocSPI(a, a, nil); err != nil || spi != 0x1234 {
		t.Errorf("spud back after 300 ms: %x %v", spi, err)
	}
}

// InboundPackets asks spud for the counters of the SPIs it is given
// (sa.stats), never for a dump of every SA, and asks again for an SPI only
// once its count is usageTTL old.
func TestInboundPacketsAsksOnlyItsSPIs(t *testing.T) {
	var mu sync.Mutex
	var asked []uint32
	dumps := 0
	srv, path := serveSpud(t, "", nil)
	srv.Handle(api.OpSADump, func(json.RawMessage) (any, error) {
		mu.Lock()
		dumps++
		mu.Unlock()
		return api.SADump{}, nil
	})
	srv.Handle(api.OpSAStats, func(body json.RawMessage) (any, error) {
		var req api.SAStatsRequest
		if err := unixrpc.Decode(body, &req); err != nil {
			return nil, err
		}
		return api.AnswerSAStats(&req, func(ids []api.SAID) ([]api.SAStatsEntry, error) {
			var r []api.SAStatsEntry
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if id.Dir != api.In {
					return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "asked about an outbound SA")
				}
				asked = append(asked, id.SPI)
				// SPIs below 0x2000 are installed, with SPI/0x100 packets.
				r = append(r, api.SAStatsEntry{SAID: id, Found: id.SPI < 0x2000, Stats: api.SAStats{Packets: uint64(id.SPI / 0x100 * boolInt(id.SPI < 0x2000))}})
			}
			return r, nil
		})
	})
	dp := connectDP(t, path)
	check := func(spis []uint32, want uint64, wantAsked ...uint32) {
		t.Helper()
		mu.Lock()
		asked = nil
		mu.Unlock()
		n, err := dp.InboundPackets(spis)
		if err != nil || n != want {
			t.Errorf("InboundPackets(%x): %d, %v; want %d", spis, n, err, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(asked) != fmt.Sprint(wantAsked) {
			t.Errorf("InboundPackets(%x) asked spud about %x, want %x", spis, asked, wantAsked)
		}
	}
	check([]uint32{0x1100, 0x1200}, 0x11+0x12, 0x1100, 0x1200)
	check([]uint32{0x1100, 0x1200}, 0x11+0x12)                         // cached
	check([]uint32{0x1200, 0x1300, 0x5000}, 0x12+0x13, 0x1300, 0x5000) // unknown SPI: 0
	time.Sleep(usageTTL)
	check([]uint32{0x1100}, 0x11, 0x1100)
	// A prefetch asks once for what is not fresh; the samples after it
	// ask nothing.
	mu.Lock()
	asked = nil
	mu.Unlock()
	dp.PrefetchInbound([]uint32{0x1100, 0x1400, 0x1500, 0x1600})
	mu.Lock()
	if fmt.Sprint(asked) != fmt.Sprint([]uint32{0x1400, 0x1500, 0x1600}) {
		t.Errorf("prefetch asked spud about %x, want 1400 1500 1600", asked)
	}
	mu.Unlock()
	check([]uint32{0x1400}, 0x14)
	check([]uint32{0x1500, 0x1600}, 0x15+0x16)
	if dumps != 0 {
		t.Errorf("%d dumps of every SA", dumps)
	}
}

func boolInt(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
