package spud_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// tunnelMemoryEnv sets TestPrivilegedTunnelMemory's tunnel count, and
// tunnelMemoryGOGCEnv spud's -gogc (default: spud's).
const (
	tunnelMemoryEnv     = "SPUGATE_TUNNEL_MEMORY"
	tunnelMemoryGOGCEnv = "SPUGATE_TUNNEL_MEMORY_GOGC"
)

// cpuTicks is a process's user and system time, in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's name, which may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// smapsKiB is a field of a process's smaps_rollup (Rss, Anonymous), in KiB.
func smapsKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/smaps_rollup", field, pid)
	return 0
}

// TestPrivilegedTunnelMemory: a real spud (its default GOGC unless
// $SPUGATE_TUNNEL_MEMORY_GOGC says, steering program, SA API) takes
// $SPUGATE_TUNNEL_MEMORY tunnels (default 10,000), each a Child SA as iked installs it (child.add: inbound and
// outbound SA and a protect policy to a /32 of its own, the inbound SPI
// from a block spi.alloc granted for its logical SPU), 8 calls in flight
// on one connection; spud's resident memory per tunnel is logged once
// installed and again after 3 s idle (the figure issue 16 bounds: 1 KiB
// at a million), with spud's CPU time per tunnel. Nothing carries a
// packet: every SA is cold.
func TestPrivilegedTunnelMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: installs 10,000 tunnels")
	}
	n := 10_000
	if v := os.Getenv(tunnelMemoryEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1<<24 {
			t.Fatalf("%s=%q: want a tunnel count", tunnelMemoryEnv, v)
		}
	}
	ln := labtest.Line(t, lab.LineOptions{}, "ping")
	var o daemons.SpudOptions
	if v := os.Getenv(tunnelMemoryGOGCEnv); v != "" {
		o.Args = []string{"-gogc", v}
	}
	s, err := daemons.StartSpud(ln.GwA, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	pl := ln.Plan
	pid := s.Proc.PID
	rss0, anon0, cpu0 := smapsKiB(t, pid, "Rss"), smapsKiB(t, pid, "Anonymous"), cpuTicks(t, pid)
	lts := []ipsec.Selector{ipsec.PrefixSelector(pl.LanA4, 0)}
	var poolMu sync.Mutex
	pools := map[int][]uint32{}
	spi := func(logical int) (uint32, error) {
		poolMu.Lock()
		defer poolMu.Unlock()
		if len(pools[logical]) == 0 {
			spis, err := s.Client.AllocSPIs(api.SPIAllocRequest{Local: pl.GwAWan4, Remote: pl.GwBWan4, Logical: api.Logical(logical)}, 64)
			if err != nil {
				return 0, err
			}
			pools[logical] = spis
		}
		v := pools[logical][0]
		pools[logical] = pools[logical][1:]
		return v, nil
	}
	install := func(i int) error {
		logical := i % 256
		in, err := spi(logical)
		if err != nil {
			return err
		}
		host := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		rts := []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(host, 32), 0)}
		reqid := uint32(i + 1)
		sa := api.SA{SPI: in, Dir: api.In, Local: pl.GwAWan4, Remote: pl.GwBWan4, Logical: api.Logical(logical), Mode: api.Tunnel,
			Suite: ipsec.AES128GCM16, EncKey: bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 10), ReqID: reqid, LocalTS: lts, RemoteTS: rts,
			Name: "peer/child"}
		out := sa
		out.SPI, out.Dir = 0x10000+uint32(i), api.Out
		_, err = s.Client.AddChild(&api.ChildAdd{Logical: logical, In: sa, Out: &out, Policy: &api.Policy{ReqID: reqid,
			Action: api.Protect, Local: pl.GwAWan4, Remote: pl.GwBWan4, LocalTS: lts, RemoteTS: rts, Name: sa.Name}})
		return err
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := install(i); err != nil {
					t.Errorf("tunnel %d of %d: %v", i+1, n, err)
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	took := time.Since(start)
	l, err := s.Client.SPUs()
	if err != nil {
		t.Fatal(err)
	}
	sas := 0
	for _, spu := range l.SPUs {
		sas += spu.SAs
	}
	if sas != 2*n {
		t.Errorf("SPUs hold %d SAs, want %d", sas, 2*n)
	}
	perTunnel := func(kib, kib0 int) float64 { return float64(kib-kib0) * 1024 / float64(n) }
	rss, anon := smapsKiB(t, pid, "Rss"), smapsKiB(t, pid, "Anonymous")
	cpu := cpuTicks(t, pid) - cpu0
	t.Logf("%d tunnels in %v (%.0f/s), spud's CPU %.1f µs a tunnel; spud RSS %d -> %d KiB: %.0f bytes a tunnel (anonymous %.0f)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(cpu)*1e4/float64(n), rss0, rss, perTunnel(rss, rss0), perTunnel(anon, anon0))
	time.Sleep(3 * time.Second)
	rss, anon = smapsKiB(t, pid, "Rss"), smapsKiB(t, pid, "Anonymous")
	t.Logf("after 3 s idle: spud RSS %d KiB: %.0f bytes a tunnel (anonymous %.0f)", rss, perTunnel(rss, rss0), perTunnel(anon, anon0))
}
