package spu

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"unsafe"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/ipsec"
)

var memProfile = flag.String("tunnel-memprofile", "", "write TestMemoryPerTunnel's heap profile here")

// tunnel is tunnel i of TestMemoryPerTunnel: an inbound SA, an outbound SA
// and a protect policy, as iked installs them for one Child SA, to one of
// many peers with a /32 of its own.
func tunnel(i int) (in, out *api.SA, pol api.Policy) {
	key := bytes.Repeat([]byte{byte(i)}, 20)
	peer := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	host := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	local := netip.MustParseAddr("198.18.0.1")
	lts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)}
	rts := []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(host, 32), 0)}
	reqid := uint32(i + 1)
	in = &api.SA{SPI: 0x100000 + uint32(i), Dir: api.In, Local: local, Remote: peer, Mode: api.Tunnel,
		Suite: ipsec.AES128GCM16, EncKey: key, ReqID: reqid, Name: "peer/child", LocalTS: lts, RemoteTS: rts}
	out = &api.SA{SPI: 0x100000 + uint32(i), Dir: api.Out, Local: local, Remote: peer, Mode: api.Tunnel,
		Suite: ipsec.AES128GCM16, EncKey: key, ReqID: reqid, Name: "peer/child", LocalTS: lts, RemoteTS: rts}
	pol = api.Policy{ReqID: reqid, Action: api.Protect, Local: local, Remote: peer, LocalTS: lts, RemoteTS: rts,
		Name: "peer/child"}
	return in, out, pol
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryPerTunnel installs tunnels into an engine (no sockets, as
// spud's handlers do after the steering program took the policy) and
// reports the Go heap they take: the figure issue 16 bounds per tunnel.
// -tunnel-memprofile writes a heap profile to see by whom.
func TestMemoryPerTunnel(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	t.Logf("sizes: esp.SA %d, inSA %d, outSA %d, policy %d, api.SA %d, api.Policy %d",
		unsafe.Sizeof(esp.SA{}), unsafe.Sizeof(inSA{}), unsafe.Sizeof(outSA{}), unsafe.Sizeof(policy{}),
		unsafe.Sizeof(api.SA{}), unsafe.Sizeof(api.Policy{}))
	fn := testFn(t)
	m, err := anchor.NewMap(fn.L(), []uint16{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{SPUs: 2, Poll: xsk.Adaptive}, fn, m, &fakeRouter{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	before := heapInUse()
	// Each request is garbage once installed, as spud's decoded requests
	// are: what stays is the engine's.
	for i := range n {
		in, out, pol := tunnel(i)
		if _, _, err := e.AddSA(in); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.AddSA(out); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := e.AddPolicy(pol); err != nil {
			t.Fatal(err)
		}
	}
	after := heapInUse()
	t.Logf("%d tunnels: Go heap %d -> %d bytes, %.0f bytes per tunnel", n, before, after, float64(int64(after)-int64(before))/float64(n))
	// The same tunnels once each has carried a packet each way: cipher
	// states, replay windows and next hops made, as when all are busy
	// (the SPUs' loops are not running, so none is cooled).
	outs := map[uint32]*esp.SA{}
	for _, sp := range e.spus {
		for k, o := range sp.t.out {
			outs[k.spi] = o.sa
		}
	}
	buf := make([]byte, 256)
	for _, sp := range e.spus {
		for spi, x := range sp.t.in {
			i := int(spi - 0x100000)
			host := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			ip := udpFrame(host, netip.MustParseAddr("198.18.128.1"), []byte("x"))[14:]
			copy(buf[esp.Headroom:], ip)
			r := outs[spi].Encap(buf, esp.Headroom, len(ip))
			if d := x.sa.Decap(buf, r.Off, r.Len); d.Verdict != esp.Forward {
				t.Fatalf("sa 0x%x: %v", spi, d.Reason)
			}
		}
	}
	warm := heapInUse()
	t.Logf("%d tunnels, every SA warm: Go heap %d bytes, %.0f bytes per tunnel", n, warm, float64(int64(warm)-int64(before))/float64(n))
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.KeepAlive(e)
}
