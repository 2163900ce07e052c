package iked

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// quietEnv is a simulated node's worker environment without its log and
// its state copies: a worker of a million IKE SAs would keep both.
type quietEnv struct{ worker.Env }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func (quietEnv) Log() *slog.Logger { return discard }
func (quietEnv) Changed(*sa.IKESA) {}
func (quietEnv) Gone(*sa.IKESA)    {}

// listDaemon is iked as sas.list sees it: workers holding n IKE SAs (each
// with children Child SAs, copies of one a simulated pair established,
// anchored on the worker's SPU), spud answering sa.stats, and the control
// socket; it returns a client of that socket.
func listDaemon(tb testing.TB, workers, n, children int) *ikectl.Client {
	tb.Helper()
	tmpl := establishedIKESA(tb)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	d := &Daemon{log: discard, byPhys: map[int]*loop{}, ctx: ctx, cancel: cancel}
	spus := make([]uint16, workers)
	for i := range spus {
		spus[i] = uint16(i)
	}
	m, err := anchor.NewMap(256, spus)
	if err != nil {
		tb.Fatal(err)
	}
	d.spus.Store(m)
	s := iketest.NewSim(tb)
	node := s.AddNode("gw", tmpl.Local.Addr(), iketest.WriteConfig(tb, simConf("gw-a", "198.18.0.1", "198.18.0.2"), simSecrets))
	for i := range workers {
		l := &loop{d: d, idx: i, spu: i, w: worker.New(i, quietEnv{node.Env()}), cmds: make(chan func(*worker.Worker))}
		d.loops = append(d.loops, l)
		d.byPhys[i] = l
		go func() {
			for {
				select {
				case f := <-l.cmds:
					f(l.w)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	// IDs as iked hands them out: one counter, IKE SAs spread over the
	// workers by their anchor.
	for id := 1; id <= n; id++ {
		c := *tmpl
		c.UniqueID = uint32(id)
		c.SPIi, c.SPIr = uint64(id)<<8|1, uint64(id)<<8|2
		c.Anchored, c.Logical = true, uint16(id%workers)
		c.Children = nil
		for k := range children {
			ch := *tmpl.Children[0]
			ch.UniqueID = uint32(id)
			ch.SPIIn, ch.SPIOut = 0xc0000000|uint32(id)+uint32(k)<<24, 0x40000000|uint32(id)+uint32(k)<<24
			c.Children = append(c.Children, &ch)
		}
		if err := d.loops[id%workers].w.Restore(&c); err != nil {
			tb.Fatal(err)
		}
	}
	dir := tb.TempDir()
	d.dp = &spudDP{path: func() string { return filepath.Join(dir, "spud.sock") }}
	d.dp.c.Store(fakeSpud(tb, d.dp.path()))
	d.ctl = unixrpc.NewServer(discard)
	d.handlers()
	path := filepath.Join(dir, "iked.sock")
	if err := d.ctl.Listen(path); err != nil {
		tb.Fatal(err)
	}
	go d.ctl.Serve()
	tb.Cleanup(func() { d.ctl.Close() })
	c, err := ikectl.Dial(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// fakeSpud answers sa.stats with counters made from the SPI, every SA
// installed.
func fakeSpud(tb testing.TB, path string) *api.Client {
	srv := unixrpc.NewServer(discard)
	srv.Handle(api.OpSAStats, func(body json.RawMessage) (any, error) {
		var req api.SAStatsRequest
		if err := unixrpc.Decode(body, &req); err != nil {
			return nil, err
		}
		return api.AnswerSAStats(&req, func(ids []api.SAID) ([]api.SAStatsEntry, error) {
			r := make([]api.SAStatsEntry, 0, len(ids))
			for _, id := range ids {
				r = append(r, api.SAStatsEntry{SAID: id, Found: true, Stats: api.SAStats{Packets: uint64(id.SPI & 0xffff), Bytes: uint64(id.SPI&0xffff) * 1400}})
			}
			return r, nil
		})
	})
	if err := srv.Listen(path); err != nil {
		tb.Fatal(err)
	}
	go srv.Serve()
	tb.Cleanup(func() { srv.Close() })
	c, err := api.Dial(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

const simSecrets = "ike:\n  a:\n    id: [\"gw-a.example\", \"gw-b.example\"]\n    secret: \"correct horse battery staple\"\n"

func simConf(name, local, remote string) string {
	peer := "gw-b"
	if name == "gw-b" {
		peer = "gw-a"
	}
	return fmt.Sprintf(`connections:
  tun:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    local:
      auth: psk
      id: %q
    remote:
      auth: psk
      id: %q
    children:
      net:
        local_ts: 198.18.1.0/24
        remote_ts: 198.18.2.0/24
        esp_proposals: aes128gcm16
`, local, remote, name+".example", peer+".example")
}

// establishedIKESA is an IKE SA with its Child SA, ciphers included, as a
// simulated initiator established it.
func establishedIKESA(tb testing.TB) *sa.IKESA {
	tb.Helper()
	s := iketest.NewSim(tb)
	a := s.AddNode("gw-a", netip.MustParseAddr("198.18.0.1"), iketest.WriteConfig(tb, simConf("gw-a", "198.18.0.1", "198.18.0.2"), simSecrets))
	s.AddNode("gw-b", netip.MustParseAddr("198.18.0.2"), iketest.WriteConfig(tb, strings.ReplaceAll(simConf("gw-b", "198.18.0.2", "198.18.0.1"), "local_ts: 198.18.1.0/24\n        remote_ts: 198.18.2.0/24", "local_ts: 198.18.2.0/24\n        remote_ts: 198.18.1.0/24"), simSecrets))
	done := false
	var result error
	if err := a.Worker.Initiate("tun", "", func(err error) { result, done = err, true }); err != nil {
		tb.Fatal(err)
	}
	if !s.RunUntil(time.Minute, func() bool { return done }) || result != nil {
		tb.Fatalf("the template tunnel: %v", result)
	}
	l := a.Worker.List()
	if len(l) != 1 || len(l[0].Children) != 1 {
		tb.Fatalf("the template tunnel: %d IKE SAs", len(l))
	}
	ike, err := a.Worker.Detach(l[0].OurSPI())
	if err != nil {
		tb.Fatal(err)
	}
	return ike
}

// TestListSAsPages: sas.list through the socket gives every IKE SA of
// every worker once, in UniqueID order, with its Child SAs' counters,
// page by page: full pages, pages cut short by their Child SAs, and JSON
// pages for a client that does not ask for packed ones.
func TestListSAsPages(t *testing.T) {
	for _, tc := range []struct{ workers, n, children, minPages int }{
		{2, 2*ikectl.MaxSAsPage + 77, 1, 3},
		{3, 12000, 3, 3}, // 16384 Child SAs a page at most: 5461 IKE SAs
		{1, 10, 0, 1},
	} {
		t.Run(fmt.Sprintf("%d-%d-%d", tc.workers, tc.n, tc.children), func(t *testing.T) {
			c := listDaemon(t, tc.workers, tc.n, tc.children)
			next := uint32(1)
			pages := 0
			err := c.SAPages(func(p []ikectl.IKESA) error {
				pages++
				if len(p)*tc.children > ikectl.MaxPageChildren {
					return fmt.Errorf("a page of %d IKE SAs with %d Child SAs each", len(p), tc.children)
				}
				for _, s := range p {
					if s.UniqueID != next {
						return fmt.Errorf("IKE SA %d, want %d", s.UniqueID, next)
					}
					if s.Worker != int(next)%tc.workers || len(s.Children) != tc.children ||
						(tc.children > 0 && (s.Children[0].PacketsIn != uint64(next&0xffff) || s.Children[0].SPIIn != 0xc0000000|next)) {
						return fmt.Errorf("IKE SA %d: %+v", next, s)
					}
					next++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if next != uint32(tc.n)+1 || pages < tc.minPages {
				t.Errorf("%d IKE SAs in %d pages, want %d in %d at least", next-1, pages, tc.n, tc.minPages)
			}
			var r ikectl.SAs
			if err := c.Call(ikectl.OpSAs, ikectl.SAsRequest{After: 3, Limit: 5}, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.IKESAs) != 5 || r.IKESAs[0].UniqueID != 4 || r.Next != 8 || !r.More || len(r.Packed) != 0 {
				t.Errorf("a JSON page of 5 after 3: %d IKE SAs, next %d, more %v", len(r.IKESAs), r.Next, r.More)
			}
		})
	}
}

// BenchmarkListIKESAs lists the IKE SAs of two workers as spuctl list-sas
// fetches them (SAPages through the control socket, iked asking a fake
// spud for each page's counters), in ns per IKE SA and seconds per
// million of wall and CPU time (the machine is shared: CPU time is what
// the listing costs, iked's and spuctl's together). A million when -bench
// names ListIKESAs/1M.
func BenchmarkListIKESAs(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("%dk", n/1000)
		if n >= 1_000_000 {
			name = fmt.Sprintf("%dM", n/1_000_000)
		}
		b.Run(name, func(b *testing.B) {
			if n >= 1_000_000 && !strings.Contains(flag.Lookup("test.bench").Value.String(), name) {
				b.Skip("-bench 'ListIKESAs/1M' runs it")
			}
			c := listDaemon(b, 2, n, 1)
			c.SetTimeout(time.Minute)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				got := 0
				if err := c.SAPages(func(p []ikectl.IKESA) error { got += len(p); return nil }); err != nil {
					b.Fatal(err)
				}
				if got != n {
					b.Fatalf("%d IKE SAs listed of %d", got, n)
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
			b.ReportMetric(per, "ns/ike_sa")
			b.ReportMetric(per*1e6/1e9, "s/1M")
			b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)/float64(n)*1e6, "cpu-s/1M")
		})
	}
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// packedReply writes json.Marshal's bytes for a packed page.
func TestPackedReplyAsMarshal(t *testing.T) {
	for _, r := range []ikectl.SAs{{}, {Next: 7}, {More: true, Next: 1 << 31}, {Packed: []byte{0, 1, 2, 250}}, {Packed: make([]byte, 1000), Next: 3, More: true}} {
		want, _ := json.Marshal(r)
		if got := packedReply(&r); string(got) != string(want) {
			t.Errorf("got %s\nwant %s", got, want)
		}
	}
}

// A page is the same in every encoding: JSON, packed in the JSON, packed
// as data.
func TestListSAsEncodingsAgree(t *testing.T) {
	c := listDaemon(t, 3, 700, 2)
	var pages [3][]ikectl.IKESA
	for i, enc := range []string{"", ikectl.EncodingPacked, ikectl.EncodingPackedData} {
		var after uint32
		for {
			var r ikectl.SAs
			var data []byte
			var err error
			if enc == ikectl.EncodingPackedData {
				data, err = c.CallData(ikectl.OpSAs, ikectl.SAsRequest{After: after, Limit: 300, Encoding: enc}, &r)
				r.Packed = data
			} else {
				err = c.Call(ikectl.OpSAs, ikectl.SAsRequest{After: after, Limit: 300, Encoding: enc}, &r)
			}
			if err != nil {
				t.Fatal(err)
			}
			if enc != "" {
				if len(r.IKESAs) > 0 {
					t.Fatalf("%s: a page in JSON", enc)
				}
				if r.IKESAs, err = ikectl.DecodePackedIKESAs(r.Packed, nil); err != nil {
					t.Fatal(err)
				}
			}
			pages[i] = append(pages[i], r.IKESAs...)
			if !r.More {
				break
			}
			after = r.Next
		}
	}
	for i := range pages {
		if len(pages[i]) != 700 {
			t.Fatalf("encoding %d: %d IKE SAs", i, len(pages[i]))
		}
		for k := range pages[i] {
			// Rekey times count from each request's now.
			s := &pages[i][k]
			s.RekeyIn, s.Established = 0, s.Established.UTC()
			for j := range s.Children {
				s.Children[j].RekeyIn, s.Children[j].ExpireIn, s.Children[j].Installed = 0, 0, s.Children[j].Installed.UTC()
			}
		}
	}
	for i := 1; i < 3; i++ {
		if !reflect.DeepEqual(pages[0], pages[i]) {
			for k := range pages[0] {
				if !reflect.DeepEqual(pages[0][k], pages[i][k]) {
					t.Fatalf("encoding %d, IKE SA %d:\n%+v\nJSON:\n%+v", i, k, pages[i][k], pages[0][k])
				}
			}
		}
	}
}

// A page past the last IKE SA is empty in every encoding, also right after
// pages whose buffers the listing reuses (CI listed 7 IKE SAs of a
// terminated load, the earlier pages' last).
func TestListSAsEmptyPageAfterPages(t *testing.T) {
	c := listDaemon(t, 2, 20, 1)
	for _, enc := range []string{ikectl.EncodingPackedData, ikectl.EncodingPacked, ""} {
		for round := range 3 {
			var r ikectl.SAs
			var data []byte
			var err error
			if enc == ikectl.EncodingPackedData {
				data, err = c.CallData(ikectl.OpSAs, ikectl.SAsRequest{Limit: 7, Encoding: enc}, &r)
			} else {
				err = c.Call(ikectl.OpSAs, ikectl.SAsRequest{Limit: 7, Encoding: enc}, &r)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(data)+len(r.Packed)+len(r.IKESAs) == 0 {
				t.Fatalf("%q: the first page is empty", enc)
			}
			r, data = ikectl.SAs{}, nil
			if enc == ikectl.EncodingPackedData {
				data, err = c.CallData(ikectl.OpSAs, ikectl.SAsRequest{After: 1 << 30, Limit: 7, Encoding: enc}, &r)
			} else {
				err = c.Call(ikectl.OpSAs, ikectl.SAsRequest{After: 1 << 30, Limit: 7, Encoding: enc}, &r)
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Packed == nil {
				r.Packed = data
			}
			got := len(r.IKESAs)
			if len(r.Packed) > 0 {
				l, err := ikectl.DecodePackedIKESAs(r.Packed, nil)
				if err != nil {
					t.Fatal(err)
				}
				got += len(l)
			}
			if got != 0 || r.More {
				t.Errorf("%q, round %d: a page after the last IKE SA lists %d (more %v)", enc, round, got, r.More)
			}
		}
	}
}
