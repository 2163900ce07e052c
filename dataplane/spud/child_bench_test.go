package spud

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkChildInstall installs Child SAs (inbound SA, outbound SA,
// policy, on a started engine, through the socket) as iked does, the SPI
// allocated first: with the separate calls (spi.alloc, sa.add twice,
// policy.add: four round trips, three SPU commands) and with child.add
// (spi.alloc, child.add: two round trips, one SPU command), one caller
// at a time (an IKE worker waits for each call) and with 8 callers on
// the one connection (calls pipelined: the client has several in flight,
// spud serves them in turn). It reports the SA API calls, wall and CPU
// time (client and spud) per Child SA.
func BenchmarkChildInstall(b *testing.B) {
	for _, child := range []bool{false, true} {
		for _, inflight := range []int{1, 8} {
			name := "separate"
			if child {
				name = "child.add"
			}
			b.Run(fmt.Sprintf("%s/inflight=%d", name, inflight), func(b *testing.B) {
				d, c := apiDaemon(b)
				d.ifaces = nil // no steering entries: the program's cost is not the API's
				d.steerFake = &fakeSteering{spd: fakeSPD{}, locals: map[netip.Addr]bool{}}
				d.eng.Start()
				var calls, next atomic.Int64
				install := func(i int64) error {
					req := childReqN(b, c, int(i%256), 0x10000+uint32(i))
					// A reqid each, as Child SAs have: one shared would
					// cost the SPU a relink of every policy of it.
					req.In.ReqID, req.Out.ReqID, req.Policy.ReqID = uint32(i), uint32(i), uint32(i)
					calls.Add(1) // spi.alloc
					if child {
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
