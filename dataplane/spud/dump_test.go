package spud

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
	"golang.org/x/sys/unix"
)

type noRoutes struct{}

func (noRoutes) Lookup(netip.Addr) (fib.NextHop, bool) { return fib.NextHop{}, false }
func (noRoutes) Resolve(int, netip.Addr)               {}
func (noRoutes) Gen() uint64                           { return 0 }

// apiDaemon is a spud without interfaces: an engine of two SPUs without
// sockets and the SA API's handlers, enough for the operations that read
// the tables. SAs go in through the engine (sa.add would touch the
// steering program).
func apiDaemon(t testing.TB) (*Daemon, *api.Client) {
	t.Helper()
	fn, err := anchor.NewFunction(anchor.HashKey{9}, anchor.DefaultLogicalSPUs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := anchor.NewMap(fn.L(), []uint16{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Adaptive: busy SPUs would take both cores of a small test machine.
	eng, err := spu.New(spu.Config{SPUs: 2, Log: log, Poll: xsk.Adaptive}, fn, m, noRoutes{})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fn.Codec()
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: log, fn: fn, codec: codec, eng: eng, srv: unixrpc.NewServer(log), spis: map[uint32]time.Time{}}
	d.inSPIs, d.localRefs = newInSPIs()
	d.srv.AllowUID = os.Getuid()
	path := filepath.Join(t.TempDir(), "spud.sock")
	if err := d.srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	d.handlers()
	go d.srv.Serve()
	c, err := api.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		d.srv.Close()
		eng.Stop()
	})
	return d, c
}

var dumpKey = bytes.Repeat([]byte{7}, 20)

// dumpSA is SA i: inbound for even i, outbound to one of many peers for odd.
func dumpSA(i int) *api.SA {
	remote := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	sa := &api.SA{SPI: 0x100000 + uint32(i), Dir: api.In, Local: netip.MustParseAddr("198.18.0.1"), Remote: remote,
		Mode: api.Tunnel, Suite: ipsec.AES128GCM16, EncKey: dumpKey, ReqID: uint32(i/2 + 1), Name: "peer/child",
		LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)},
		RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(remote, 32), 0)}}
	if i%2 == 1 {
		sa.Dir = api.Out
	}
	return sa
}

func idOf(sa *api.SA) api.SAID {
	id := api.SAID{SPI: sa.SPI, Dir: sa.Dir}
	if sa.Dir == api.Out {
		id.Remote = sa.Remote
	}
	return id
}

func fill(t testing.TB, d *Daemon, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, _, err := d.eng.AddSA(dumpSA(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// A table far larger than one frame of the SA API (a dump in one reply
// failed with too_large past ~40,000 SAs) goes through page by page, every
// SA installed throughout exactly once though SAs come and go between the
// pages, and pages cut short where their entries would not fit.
func TestDumpPagesALargeTable(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	d, c := apiDaemon(t)
	fill(t, d, n)
	d.eng.Start()
	if n == 100_000 {
		b, _ := json.Marshal(api.SADump{SAs: d.eng.DumpSAs()})
		if len(b) <= unixrpc.MaxMessage {
			t.Fatalf("the whole table takes %d bytes, within one frame: not the test it is meant to be", len(b))
		}
		t.Logf("%d SAs in one reply: %d bytes, over the frame limit of %d", n, len(b), unixrpc.MaxMessage)
	}
	start := time.Now()
	changed := map[uint32]bool{} // added or deleted during the dump: may or may not come
	seen := make(map[uint32]int, n)
	next, pages := n, 0
	for page, err := range c.SAPages(0) {
		if err != nil {
			t.Fatal(err)
		}
		if pages++; len(page) > api.MaxPackedPage {
			t.Fatalf("page of %d SAs", len(page))
		}
		for _, s := range page {
			seen[s.SPI]++
		}
		// Delete SAs behind, at and ahead of the cursor, and add new ones.
		for j := 0; j < 50; j++ {
			k := (pages*7919 + j*104729) % n
			if err := d.eng.DelSA(idOf(dumpSA(k))); err == nil {
				changed[dumpSA(k).SPI] = true
			}
		}
		for j := 0; j < 20; j++ {
			if _, _, err := d.eng.AddSA(dumpSA(next)); err != nil {
				t.Fatal(err)
			}
			changed[dumpSA(next).SPI] = true
			next++
		}
	}
	for spi, k := range seen {
		if k > 1 {
			t.Errorf("sa 0x%x came %d times", spi, k)
		}
	}
	missing := 0
	for i := 0; i < n; i++ {
		if spi := dumpSA(i).SPI; !changed[spi] && seen[spi] != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d SAs installed throughout did not come", missing)
	}
	t.Logf("%d pages, with SAs added and deleted between them, in %v", pages, time.Since(start))
	if pages < n/api.MaxPackedPage {
		t.Errorf("%d pages of at most %d for %d SAs", pages, api.MaxPackedPage, n)
	}

	// Pages cut at pageBytes: more, shorter pages, the same SAs.
	defer func(b int) { pageBytes = b }(pageBytes)
	pageBytes = 256 << 10
	short := 0
	all := 0
	for page, err := range c.SAPages(0) {
		if err != nil {
			t.Fatal(err)
		}
		short++
		all += len(page)
	}
	if want := n + (next - n) - len(changed)/2; all < want-len(changed) || short <= pages {
		t.Errorf("pages of at most %d bytes: %d SAs in %d pages (%d pages of %d SAs before)", pageBytes, all, short, pages, api.MaxPackedPage)
	}
}

// An old client's dump (no limit, no cursor) gets the whole table when it
// has at most a page of SAs, and the first page, marked More, otherwise;
// a limit above the cap is capped.
func TestDumpWithoutLimit(t *testing.T) {
	d, c := apiDaemon(t)
	fill(t, d, 100)
	var r api.SADump
	if err := c.Call(api.OpSADump, nil, &r); err != nil || len(r.SAs) != 100 || r.More {
		t.Fatalf("no body: %d SAs, more %v, %v", len(r.SAs), r.More, err)
	}
	fill2 := api.MaxPage + 50
	for i := 100; i < fill2; i++ {
		if _, _, err := d.eng.AddSA(dumpSA(i)); err != nil {
			t.Fatal(err)
		}
	}
	r = api.SADump{}
	if err := c.Call(api.OpSADump, api.DumpRequest{}, &r); err != nil || len(r.SAs) != api.MaxPage || !r.More {
		t.Fatalf("no limit: %d SAs, more %v, %v", len(r.SAs), r.More, err)
	}
	pg, err := c.SAPage(api.DumpRequest{After: r.Next, Limit: 1 << 20})
	if err != nil || len(pg.SAs) != 50 || pg.More {
		t.Fatalf("second page: %d SAs, more %v, %v", len(pg.SAs), pg.More, err)
	}
	if pg.SAs[0].SPI != dumpSA(api.MaxPage).SPI {
		t.Errorf("second page starts with 0x%x, want 0x%x (install order)", pg.SAs[0].SPI, dumpSA(api.MaxPage).SPI)
	}
	var rpcErr *unixrpc.Error
	if _, err := c.SAPage(api.DumpRequest{Keys: true}); !errors.As(err, &rpcErr) || rpcErr.Code != unixrpc.CodeBadRequest {
		t.Errorf("keys: %v", err)
	}
}

// sa.stats answers the SAs asked, in order, not found for those that are
// not installed; too many SAs, or an outbound SA without its remote, are
// refused by name.
func TestSAStatsQuery(t *testing.T) {
	d, c := apiDaemon(t)
	fill(t, d, 10)
	d.eng.Start()
	ids := []api.SAID{idOf(dumpSA(4)), {SPI: 0x4242, Dir: api.In}, idOf(dumpSA(3)), idOf(dumpSA(0))}
	if err := d.eng.DelSA(idOf(dumpSA(0))); err != nil {
		t.Fatal(err)
	}
	st, err := c.SAStats(ids)
	if err != nil || len(st) != 4 {
		t.Fatalf("%+v %v", st, err)
	}
	for i, want := range []bool{true, false, true, false} {
		if st[i].Found != want || st[i].SPI != ids[i].SPI || st[i].Dir != ids[i].Dir {
			t.Errorf("answer %d: %+v, want found %v for %+v", i, st[i], want, ids[i])
		}
	}
	var r api.SAStatsReply
	err = c.Call(api.OpSAStats, api.SAStatsRequest{SAs: make([]api.SAID, api.MaxQuery+1)}, &r)
	if err == nil || !strings.Contains(err.Error(), "4097 SAs asked, at most 4096") {
		t.Errorf("too many: %v", err)
	}
	err = c.Call(api.OpSAStats, api.SAStatsRequest{SAs: []api.SAID{{SPI: 0x1234, Dir: api.Out}}}, &r)
	if err == nil || !strings.Contains(err.Error(), "sa spi 0x00001234 out: an outbound SA is named by its SPI and remote") {
		t.Errorf("outbound without remote: %v", err)
	}
}

// BenchmarkListSAs: a full listing (SAPages, every page, as spuctl sa list
// fetches it) of 100,000 SAs through the SA API's socket, client and
// server in this process, per SA and per million, in wall and CPU time.
// The million runs only when -bench names it (-bench 'ListSAs/1M'): it
// takes ten gigabytes and a minute to fill.
func BenchmarkListSAs(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("%dk", n/1000)
		if n >= 1_000_000 {
			name = fmt.Sprintf("%dM", n/1_000_000)
		}
		b.Run(name, func(b *testing.B) {
			if n >= 1_000_000 && !strings.Contains(flag.Lookup("test.bench").Value.String(), name) {
				b.Skip("-bench 'ListSAs/1M' runs it")
			}
			d, c := apiDaemon(b)
			fill(b, d, n)
			d.eng.Start()
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				got := 0
				for page, err := range c.SAPages(0) {
					if err != nil {
						b.Fatal(err)
					}
					got += len(page)
				}
				if got != n {
					b.Fatalf("%d SAs listed of %d", got, n)
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
			b.ReportMetric(per, "ns/sa")
			b.ReportMetric(per*1e6/1e9, "s/1M")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)/float64(n)*1e6, "cpu-s/1M")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system: on a
// shared machine, what a benchmark costs whatever else runs.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
