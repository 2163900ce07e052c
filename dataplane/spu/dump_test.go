package spu

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/ipsec"
)

func TestInstallOrder(t *testing.T) {
	var o installOrder[int]
	seqs := map[int]uint64{}
	for k := 0; k < 1000; k++ {
		seqs[k] = o.add(k)
	}
	for k := 0; k < 1000; k += 3 {
		o.del(seqs[k])
	}
	o.del(12345) // not there: nothing happens
	if o.len() != 666 {
		t.Fatalf("len %d, want 666", o.len())
	}
	var got []int
	after := uint64(0)
	for {
		keys, s, more := o.page(after, 100, nil, nil)
		got = append(got, keys...)
		if len(s) > 0 {
			after = s[len(s)-1]
		}
		if !more {
			break
		}
	}
	if len(got) != 666 {
		t.Fatalf("paged %d keys, want 666", len(got))
	}
	for i, k := range got {
		if k%3 == 0 || (i > 0 && k <= got[i-1]) {
			t.Fatalf("key %d at %d: deleted or out of order", k, i)
		}
	}
	// Compaction keeps seqs and keys together.
	for k := 1; k < 1000; k++ {
		if k%3 != 0 {
			o.del(seqs[k])
		}
	}
	if o.len() != 0 || len(o.seqs) > 64 {
		t.Errorf("after deleting everything: %d live, %d slots", o.len(), len(o.seqs))
	}
	if s := o.add(7); s != 1001 {
		t.Errorf("seq after deletions %d, want 1001", s)
	}
	if keys, _, more := o.page(0, 10, nil, nil); len(keys) != 1 || keys[0] != 7 || more {
		t.Errorf("page %v more %v", keys, more)
	}
}

// churnSA is outbound SA i to one of many peers (so on every SPU).
func churnSA(i int) *api.SA {
	remote := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	return &api.SA{SPI: 0x10000 + uint32(i), Dir: api.Out, Local: gwA, Remote: remote, Mode: api.Tunnel,
		Suite: ipsec.AES128GCM16, EncKey: bytes.Repeat([]byte{1}, 20), ReqID: uint32(i + 1)}
}

// A dump paged while SAs come and go between its pages, and while logical
// SPUs move between SPUs, shows every SA that stayed exactly once, and no
// SA deleted before it started.
func TestSAPagesUnderChurn(t *testing.T) {
	fn, err := anchor.NewFunction(anchor.HashKey{4, 5, 6}, 16)
	if err != nil {
		t.Fatal(err)
	}
	g := newGatewayWith(t, gwA, lanA, fn, Config{SPUs: 2, Poll: xsk.Adaptive})
	const n = 6000
	for i := 0; i < n; i++ {
		if _, _, err := g.e.AddSA(churnSA(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Started only now: the commands between pages are what must go
	// through running SPUs.
	g.e.Start()
	t.Cleanup(g.e.Stop)
	gone := map[uint32]bool{} // deleted before the dump or during it
	for i := 0; i < n; i += 10 {
		sa := churnSA(i)
		if err := g.e.DelSA(api.SAID{SPI: sa.SPI, Dir: api.Out, Remote: sa.Remote}); err != nil {
			t.Fatal(err)
		}
		gone[sa.SPI] = true
	}
	seen := map[uint32]int{}
	after, next, pages := uint64(0), n, 0
	for {
		pg := g.e.SAPage(after, 250)
		pages++
		for i, st := range pg.Entries {
			seen[st.SPI]++
			if pg.Seqs[i] <= after || pg.Seqs[i] > pg.Next {
				t.Fatalf("page after %d: entry cursor %d outside it (next %d)", after, pg.Seqs[i], pg.Next)
			}
		}
		after = pg.Next
		if !pg.More {
			break
		}
		// Between pages: delete some, add some, move a logical SPU.
		for j := 0; j < 20; j++ {
			k := (pages*37 + j*101) % n
			sa := churnSA(k)
			if err := g.e.DelSA(api.SAID{SPI: sa.SPI, Dir: api.Out, Remote: sa.Remote}); err == nil {
				gone[sa.SPI] = true
			}
		}
		for j := 0; j < 10; j++ {
			if _, _, err := g.e.AddSA(churnSA(next)); err != nil {
				t.Fatal(err)
			}
			gone[churnSA(next).SPI] = true // added during the dump: may or may not show
			next++
		}
		entries := g.e.Map().Entries()
		entries[pages%len(entries)] ^= 1
		m, err := anchor.MapFromEntries(entries)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.e.SetMap(m); err != nil {
			t.Fatal(err)
		}
	}
	for spi, c := range seen {
		if c > 1 {
			t.Errorf("sa 0x%x shown %d times", spi, c)
		}
	}
	for i := 0; i < n; i++ {
		if spi := churnSA(i).SPI; !gone[spi] && seen[spi] != 1 {
			t.Errorf("sa 0x%x, installed throughout, shown %d times", spi, seen[spi])
		}
	}
	if pages < n*8/10/250 {
		t.Errorf("%d pages", pages)
	}
}

func TestSAStatesAndPolicyPage(t *testing.T) {
	a, _, _, polID := setup(t)
	aOut, _, _, aIn := mirroredSAs(ipsec.AES128GCM16)
	states, found := a.e.SAStates([]api.SAID{{SPI: aIn.SPI, Dir: api.In}, {SPI: 0x7777, Dir: api.In},
		{SPI: aOut.SPI, Dir: api.Out, Remote: aOut.Remote}, {SPI: aOut.SPI, Dir: api.Out}})
	if !found[0] || found[1] || !found[2] || found[3] {
		t.Fatalf("found %v", found)
	}
	if states[0].SPI != aIn.SPI || states[0].Dir != api.In || states[2].Dir != api.Out || !states[2].Active {
		t.Errorf("states %+v", states)
	}
	pg := a.e.PolicyPage(0, 10)
	if len(pg.Entries) != 1 || pg.Entries[0].ID != polID || pg.More || pg.Entries[0].OutSPI != aOut.SPI {
		t.Errorf("policy page %+v", pg)
	}
	if _, err := a.e.DelPolicy(polID); err != nil {
		t.Fatal(err)
	}
	if pg := a.e.PolicyPage(0, 10); len(pg.Entries) != 0 || pg.More {
		t.Errorf("policy page after delete %+v", pg)
	}
}

// TestDumpDescribesTheSAAsAdded: the description a dump gives, rebuilt
// from the esp.SA and the little the tables keep beside it, is the SA as
// sa.add took it, keys redacted (and IPv4-mapped addresses as IPv4), for
// every field a description has.
func TestDumpDescribesTheSAAsAdded(t *testing.T) {
	e := newGateway(t, gwA, lanA, testFn(t)).e
	key := func(n int) []byte { return bytes.Repeat([]byte{5}, n) }
	sel := func(s string) []ipsec.Selector {
		x, err := ipsec.ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return []ipsec.Selector{x}
	}
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	sas := []*api.SA{
		{SPI: 0x1001, Dir: api.In, Local: gwA, Remote: gwB, Mode: api.Tunnel, Suite: ipsec.AES128GCM16, EncKey: key(20),
			ReqID: 7, Name: "a/b", LocalTS: sel("198.18.128.0/24"), RemoteTS: sel("10.0.0.0/8[tcp/80-90]")},
		{SPI: 0x1002, Dir: api.Out, Local: gwA, Remote: gwB, Mode: api.Transport, Suite: ipsec.AES256SHA256,
			EncKey: key(32), IntegKey: key(32), ESN: true, ReplayWindow: -1, Encap: &api.Encap{LocalPort: 4500, RemotePort: 4501},
			ReqID: 8, Lifetime: api.Lifetime{SoftBytes: 1, HardBytes: 2, SoftPackets: 3, HardPackets: 4}},
		{SPI: 0x1003, Dir: api.In, Local: v6a, Remote: v6b, Mode: api.Tunnel, Suite: ipsec.ChaCha20Poly1305, EncKey: key(36),
			ReplayWindow: 4096, ReqID: 9, LocalTS: sel("2001:db8:1::/48[udp]"), RemoteTS: sel("2001:db8:2::/48")},
		{SPI: 0x1004, Dir: api.Out, Local: netip.AddrFrom16(gwA.As16()), Remote: netip.AddrFrom16(gwB.As16()), Mode: api.Tunnel,
			Suite: ipsec.AES128GCM16, EncKey: key(20), ReqID: 10},
	}
	var ids []api.SAID
	for _, sa := range sas {
		if _, _, err := e.AddSA(sa); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, api.SAID{SPI: sa.SPI, Dir: sa.Dir, Remote: sa.Remote})
	}
	states, found := e.SAStates(ids)
	for i, sa := range sas {
		if !found[i] {
			t.Errorf("sa 0x%x not found", sa.SPI)
			continue
		}
		want := sa.Redacted()
		want.Local, want.Remote = want.Local.Unmap(), want.Remote.Unmap()
		want.Logical = states[i].Logical
		if got := states[i].SA; !reflect.DeepEqual(got, want) {
			t.Errorf("sa 0x%x dumps as\n%+v\nwant\n%+v", sa.SPI, got, want)
		}
	}
}

// packedAll lists every SA through PackedSAPage, limit SAs and maxBytes
// a page, decoded.
func packedAll(t *testing.T, e *Engine, limit, maxBytes int) (sas []api.SAState, pages, missing int) {
	t.Helper()
	var after uint64
	for {
		pg := e.PackedSAPage(after, limit, maxBytes)
		pages++
		got, err := api.DecodePackedSAs(pg.SAs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != pg.N {
			t.Fatalf("page after %d: %d SAs decoded, N %d", after, len(got), pg.N)
		}
		sas = append(sas, got...)
		missing += pg.Missing
		if !pg.More {
			return sas, pages, missing
		}
		if pg.Next <= after {
			t.Fatalf("page after %d: next %d", after, pg.Next)
		}
		after = pg.Next
	}
}

// PackedSAPage, each SPU encoding its SAs straight from its tables, gives
// the SAs SAPage describes, in the same order, in pages cut by count and
// by bytes.
func TestPackedSAPageAsSAPage(t *testing.T) {
	g := newGatewayWith(t, gwA, lanA, testFn(t), Config{SPUs: 2})
	const n = 700
	for i := 0; i < n; i++ {
		sa := churnSA(i)
		switch i % 3 {
		case 1:
			sa.Dir, sa.SPI = api.In, 0x80000000|uint32(i)<<8
			sa.LocalTS = []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.1.0/24"), 6)}
			sa.RemoteTS = []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(sa.Remote, 32), 0)}
			sa.Name = "tun/net"
		case 2:
			sa.Encap = &api.Encap{LocalPort: 4500, RemotePort: uint16(1024 + i)}
			sa.Lifetime = api.Lifetime{SoftBytes: uint64(i), HardPackets: 1 << 40}
		}
		if _, _, err := g.e.AddSA(sa); err != nil {
			t.Fatal(err)
		}
	}
	var want []api.SAState
	for after := uint64(0); ; {
		pg := g.e.SAPage(after, 64)
		want = append(want, pg.Entries...)
		if !pg.More {
			break
		}
		after = pg.Next
	}
	if len(want) != n {
		t.Fatalf("SAPage: %d SAs of %d", len(want), n)
	}
	for _, c := range []struct{ limit, bytes, minPages int }{{1000, 1 << 20, 1}, {64, 1 << 20, n / 64}, {1000, 4096, n * 50 / 4096}} {
		got, pages, missing := packedAll(t, g.e, c.limit, c.bytes)
		if missing != 0 || pages < c.minPages {
			t.Errorf("limit %d, %d bytes: %d pages (want %d at least), %d missing", c.limit, c.bytes, pages, c.minPages, missing)
		}
		if len(got) != n {
			t.Fatalf("limit %d, %d bytes: %d SAs of %d", c.limit, c.bytes, len(got), n)
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("limit %d, %d bytes: SA %d\n%+v\nwant (SAPage)\n%+v", c.limit, c.bytes, i, got[i], want[i])
			}
		}
	}
	if allocs := testing.AllocsPerRun(5, func() { g.e.PackedSAPage(0, 1000, 1<<20) }); allocs > 2*n+50 {
		t.Errorf("%.0f allocations for a page of %d SAs: more than their selectors'", allocs, n)
	}
}

// An SPU declared failed has its SAs listed all the same: while its
// logical SPUs move (the listing waits for the move), and when no SPU is
// left in service to take them (they are read where they are, its loop
// having ended). Counters come for all of them too.
func TestListingAfterSPUFailure(t *testing.T) {
	fn, err := anchor.NewFunction(anchor.HashKey{7, 8, 9}, 16)
	if err != nil {
		t.Fatal(err)
	}
	g := newGatewayWith(t, gwA, lanA, fn, Config{SPUs: 2, Poll: xsk.Adaptive})
	const n = 3000
	var ids []api.SAID
	for i := 0; i < n; i++ {
		sa := churnSA(i)
		if _, _, err := g.e.AddSA(sa); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, api.SAID{SPI: sa.SPI, Dir: api.Out, Remote: sa.Remote})
	}
	g.e.Start()
	t.Cleanup(g.e.Stop)
	check := func(what string) {
		t.Helper()
		got, _, missing := packedAll(t, g.e, 500, 1<<20)
		if len(got) != n || missing != 0 {
			t.Errorf("%s: %d SAs of %d listed, %d missing", what, len(got), n, missing)
		}
		_, found, missing, why := g.e.SACounters(ids)
		k := 0
		for _, f := range found {
			if f {
				k++
			}
		}
		if k != n || missing != 0 {
			t.Errorf("%s: counters of %d SAs of %d, %d missing (%s)", what, k, n, missing, why)
		}
	}
	check("before")
	for _, victim := range []int{0, 1} {
		if err := g.e.InjectFault(victim); err != nil {
			t.Fatal(err)
		}
		check("right after spu " + string(rune('0'+victim)) + "'s fault")
		deadline := time.Now().Add(3 * time.Second)
		for g.e.SPUState(victim) != "failed" {
			if time.Now().After(deadline) {
				t.Fatalf("spu %d: %s", victim, g.e.SPUState(victim))
			}
			time.Sleep(5 * time.Millisecond)
		}
		check("spu " + string(rune('0'+victim)) + " failed")
	}
}
