package spu

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/ipsec"
)

// Child SAs installed and removed while the SPUs run traffic and sleep
// between its frames: the tables of an SPU asleep are changed in place
// (doTables), those of one awake through its commands; either way every
// Child SA is there, whole, when AddChild returns and gone when DelChild
// does. Under -race, an SPU reading its tables while a caller changes
// them fails the test. A busy-polling SPU never sleeps: everything goes
// through its commands.
func TestChildTablesLent(t *testing.T) {
	for _, poll := range []xsk.PollMode{xsk.Adaptive, xsk.Busy} {
		t.Run(fmt.Sprint(poll), func(t *testing.T) {
			g := newGatewayWith(t, gwA, lanA, testFn(t), Config{SPUs: 2, Poll: poll})
			codec, err := g.e.fn.Codec()
			if err != nil {
				t.Fatal(err)
			}
			g.e.Start()
			t.Cleanup(g.e.Stop)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				frame := udpFrame(hostA, hostB, make([]byte, 64))
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					for q := range 2 {
						// Policies come and go under these ids.
						steerAs(g.lan[q], steer.ClassCleartext, uint16(i%16), uint32(1+i%64))
						g.lan[q].Inject(frame)
					}
					time.Sleep(300 * time.Microsecond)
				}
			}()
			remote := netip.MustParseAddr("198.19.0.9")
			type child struct {
				in, out api.SAID
				pol     uint32
			}
			var kept []child
			n := 400
			if poll == xsk.Busy {
				n = 40 // busy SPUs take both cores of a small machine
			}
			for i := range n {
				logical := uint16(i % 16)
				spi, err := codec.Encode(logical, 0x4000+uint32(i))
				if err != nil {
					t.Fatal(err)
				}
				in := api.SA{SPI: spi, Dir: api.In, Local: gwA, Remote: remote, Mode: api.Tunnel, Suite: ipsec.AES128GCM16,
					EncKey: bytes.Repeat([]byte{byte(i)}, 20), ReqID: uint32(i + 1)}
				out := in
				out.SPI, out.Dir = 0x9000+uint32(i), api.Out
				pol := api.Policy{ReqID: uint32(i + 1), Action: api.Protect, Local: gwA, Remote: remote,
					LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)},
					RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32), 0)}}
				p, _, err := g.e.AddChild(logical, &in, &out, &pol)
				if err != nil {
					t.Fatal(err)
				}
				c := child{api.SAID{SPI: in.SPI, Dir: api.In}, api.SAID{SPI: out.SPI, Dir: api.Out, Remote: remote}, p.ID}
				if _, found := g.e.SAStates([]api.SAID{c.in, c.out}); !found[0] || !found[1] {
					t.Fatalf("child %d: installed %v", i, found)
				}
				if i%3 == 0 {
					if _, err := g.e.DelChild([]uint32{c.pol}, &c.out, &c.in); err != nil {
						t.Fatal(err)
					}
					if _, found := g.e.SAStates([]api.SAID{c.in, c.out}); found[0] || found[1] {
						t.Fatalf("child %d: still installed %v after its removal", i, found)
					}
					continue
				}
				kept = append(kept, c)
			}
			close(stop)
			wg.Wait()
			for _, c := range kept {
				if _, found := g.e.SAStates([]api.SAID{c.in, c.out}); !found[0] || !found[1] {
					t.Errorf("sa 0x%08x: installed %v at the end", c.in.SPI, found)
				}
			}
			lent := g.e.lent.Load()
			t.Logf("%s: %d of %d table changes made in place", poll, lent, n+(n+2)/3)
			if poll == xsk.Busy && lent != 0 || poll == xsk.Adaptive && lent == 0 {
				t.Errorf("%s: %d table changes made in place", poll, lent)
			}
		})
	}
}

// A table change that panics while it has an SPU's tables (a bug, which
// the API's server recovers as one failed request) gives them back: the
// SPU runs on.
func TestLentTablesComeBackAfterAPanic(t *testing.T) {
	g := newGatewayWith(t, gwA, lanA, testFn(t), Config{SPUs: 2, Poll: xsk.Adaptive})
	g.e.Start()
	t.Cleanup(g.e.Stop)
	s := g.e.spus[0]
	for deadline := time.Now().Add(5 * time.Second); s.ctl.nap.Load() != napAsleep; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("spu 0 never slept")
		}
	}
	func() {
		defer func() {
			if r := recover(); r != "bug" {
				t.Errorf("recovered %v", r)
			}
		}()
		g.e.doTables(0, func(*SPU) { panic("bug") })
	}()
	if err := g.e.Do(0, func(*SPU) {}); err != nil {
		t.Fatalf("spu 0 after a panicking table change: %v", err)
	}
}
