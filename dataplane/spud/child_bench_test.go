package spud

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
)

// BenchmarkChildInstall installs Child SAs (inbound SA, outbound SA,
// policy, on a started engine, through the socket) as iked does, the SPI
// allocated first: with the separate calls (spi.alloc, sa.add twice,
// policy.add: four round trips, three SPU commands), with child.add
// (spi.alloc, child.add: two round trips, one SPU command) and with
// child.add and the SPI from a block of 64 (spi.alloc with a count, as
// iked's pools ask: one round trip and a 64th), one caller at a time (an
// IKE worker waits for each call) and with 8 callers on the one
// connection (calls pipelined: the client has several in flight, spud
// serves them in turn). It reports the SA API calls, wall and CPU time
// (client and spud) per Child SA.
func BenchmarkChildInstall(b *testing.B) {
	for _, mode := range []string{"separate", "child.add", "child.add+spiblock"} {
		for _, inflight := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/inflight=%d", mode, inflight), func(b *testing.B) {
				d, c := apiDaemon(b)
				d.ifaces = nil // no steering entries: the program's cost is not the API's
				d.steerFake = &fakeSteering{spd: fakeSPD{}, locals: map[netip.Addr]bool{}}
				d.eng.Start()
				var calls, next atomic.Int64
				var poolMu sync.Mutex
				pools := map[int][]uint32{}
				blockSPI := func(logical int) (uint32, error) {
					poolMu.Lock()
					defer poolMu.Unlock()
					if len(pools[logical]) == 0 {
						calls.Add(1)
						spis, err := c.AllocSPIs(api.SPIAllocRequest{Local: childLocal, Remote: childRemote, Logical: api.Logical(logical)}, 64)
						if err != nil {
							return 0, err
						}
						pools[logical] = spis
					}
					spi := pools[logical][0]
					pools[logical] = pools[logical][1:]
					return spi, nil
				}
				install := func(i int64) error {
					logical := int(i % 256)
					var req *api.ChildAdd
					if mode == "child.add+spiblock" {
						spi, err := blockSPI(logical)
						if err != nil {
							return err
						}
						req = childReqSPI(logical, spi, 0x10000+uint32(i))
					} else {
						calls.Add(1) // spi.alloc
						req = childReqN(b, c, logical, 0x10000+uint32(i))
					}
					// A reqid each, as Child SAs have: one shared would
					// cost the SPU a relink of every policy of it.
					req.In.ReqID, req.Out.ReqID, req.Policy.ReqID = uint32(i), uint32(i), uint32(i)
					if mode != "separate" {
						calls.Add(1)
						_, err := c.AddChild(req)
						return err
					}
					calls.Add(3)
					if err := c.AddSA(&req.In); err != nil {
						return err
					}
					if err := c.AddSA(req.Out); err != nil {
						return err
					}
					_, err := c.AddPolicy(req.Policy)
					return err
				}
				b.ResetTimer()
				cpu0, wall0 := cpuTime(), time.Now()
				var wg sync.WaitGroup
				for range inflight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if err := install(i); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				cpu, wall := cpuTime()-cpu0, time.Since(wall0)
				b.StopTimer()
				b.ReportMetric(float64(calls.Load())/float64(b.N), "calls/child")
				b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N), "wall-ns/child")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/child")
			})
		}
	}
}
