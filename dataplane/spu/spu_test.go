package spu

import (
	"bytes"
	"encoding/binary"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"sync"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk/xsktest"
)

var (
	gwA     = netip.MustParseAddr("198.18.0.1")
	gwB     = netip.MustParseAddr("198.18.0.2")
	lanA    = netip.MustParsePrefix("198.18.1.0/24")
	lanB    = netip.MustParsePrefix("198.18.2.0/24")
	hostA   = netip.MustParseAddr("198.18.1.10")
	hostB   = netip.MustParseAddr("198.18.2.10")
	macWire = [6]byte{2, 0, 0, 0, 0, 0xee}
)

const (
	ifWAN = 2
	ifLAN = 3
)

type fakeRouter struct {
	routes   []fakeRoute
	resolved bool
	asked    int
	gen      uint64
}

type fakeRoute struct {
	p  netip.Prefix
	nh fib.NextHop
}

func (r *fakeRouter) Lookup(dst netip.Addr) (fib.NextHop, bool) {
	for _, rt := range r.routes {
		if rt.p.Contains(dst) {
			nh := rt.nh
			if !nh.Gateway.IsValid() {
				nh.Gateway = dst
			}
			nh.Resolved = r.resolved
			return nh, true
		}
	}
	return fib.NextHop{}, false
}
func (r *fakeRouter) Resolve(int, netip.Addr) { r.asked++ }
func (r *fakeRouter) Gen() uint64             { return r.gen }

// gateway is an engine with two SPUs, each owning one queue of a WAN and a
// LAN port (fakes), as spud would set it up on 2-queue interfaces.
type gateway struct {
	e        *Engine
	wan, lan [2]*xsktest.Port
	out      struct {
		sync.Mutex
		wan, lan [][]byte
	}
}

func newGateway(t testing.TB, local netip.Addr, lanNet netip.Prefix, fn anchor.Function) *gateway {
	t.Helper()
	return newGatewayWith(t, local, lanNet, fn, Config{SPUs: 2})
}

func newGatewayWith(t testing.TB, local netip.Addr, lanNet netip.Prefix, fn anchor.Function, cfg Config) *gateway {
	t.Helper()
	m, err := anchor.NewMap(fn.L(), []uint16{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	router := &fakeRouter{resolved: true, routes: []fakeRoute{
		{lanNet, fib.NextHop{Ifindex: ifLAN, SrcMAC: [6]byte{2, 0, 0, 0, 1, 1}, DstMAC: [6]byte{2, 0, 0, 0, 1, 2}, MTU: 1500}},
		{netip.MustParsePrefix("0.0.0.0/0"), fib.NextHop{Ifindex: ifWAN, Src: local, SrcMAC: [6]byte{2, 0, 0, 0, 2, 1}, DstMAC: macWire, MTU: 1500}},
	}}
	e, err := New(cfg, fn, m, router)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{e: e}
	for q := 0; q < 2; q++ {
		var err error
		if g.wan[q], err = xsktest.NewPort(xsktest.Config{MetaLen: steer.MetaSize}); err != nil {
			t.Fatal(err)
		}
		if g.lan[q], err = xsktest.NewPort(xsktest.Config{MetaLen: steer.MetaSize}); err != nil {
			t.Fatal(err)
		}
		g.wan[q].SetSink(func(p []byte) { g.out.Lock(); g.out.wan = append(g.out.wan, p); g.out.Unlock() })
		g.lan[q].SetSink(func(p []byte) { g.out.Lock(); g.out.lan = append(g.out.lan, p); g.out.Unlock() })
		e.AddPort(q, Port{Port: g.wan[q], Ifindex: ifWAN, Queue: q, Ifname: "wan0"})
		e.AddPort(q, Port{Port: g.lan[q], Ifindex: ifLAN, Queue: q, Ifname: "lan0"})
	}
	return g
}

// steerAs makes a port's fake XDP program write metadata of this class,
// anchor and policy before every packet.
func steerAs(p *xsktest.Port, class steer.Class, logical uint16, policy uint32) {
	p.SetSteer(func(pkt, meta []byte) bool {
		m := steer.Meta{LogicalSPU: logical, Class: class, PolicyID: policy, L3Offset: 14, L4Offset: 34}
		m.Put(meta)
		return true
	})
}

// step runs one loop pass of every SPU, on the test's goroutine.
func (g *gateway) step() {
	for _, s := range g.e.spus {
		s.iterate()
	}
}

func (g *gateway) takeWAN() [][]byte {
	g.out.Lock()
	defer g.out.Unlock()
	p := g.out.wan
	g.out.wan = nil
	return p
}

func (g *gateway) takeLAN() [][]byte {
	g.out.Lock()
	defer g.out.Unlock()
	p := g.out.lan
	g.out.lan = nil
	return p
}

func udpFrame(src, dst netip.Addr, payload []byte) []byte {
	ip := make([]byte, 20+8+len(payload))
	ip[0], ip[8], ip[9] = 0x45, 64, iphdr.ProtoUDP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:16], src.AsSlice())
	copy(ip[16:20], dst.AsSlice())
	iphdr.SetIPv4Checksum(ip[:20])
	binary.BigEndian.PutUint16(ip[20:], 1000)
	binary.BigEndian.PutUint16(ip[22:], 2000)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	copy(ip[28:], payload)
	frame := make([]byte, 14+len(ip))
	frame[12], frame[13] = 0x08, 0x00
	copy(frame[14:], ip)
	return frame
}

// testFn is setup's anchor function: 16 logical SPUs.
func testFn(t testing.TB) anchor.Function {
	fn, err := anchor.NewFunction(anchor.HashKey{1, 2, 3}, 16)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// spiAB and spiBA are the SPIs of mirroredSAs: their top bits encode the
// logical SPU of the hash of gwA and gwB under testFn, as spud's would
// for an SA installed without an explicit anchor, so that the inbound SAs
// (anchored by their SPI) share the logical SPU of the outbound SAs and
// the policy.
var spiAB, spiBA = func() (uint32, uint32) {
	fn := testFn(nil)
	lg := uint32(fn.Logical(gwA, gwB))
	return lg<<28 | 0x1001, lg<<28 | 0x2001
}()

func mirroredSAs(suite ipsec.Suite) (aOut, bIn, bOut, aIn *api.SA) {
	k1 := bytes.Repeat([]byte{1}, 20)
	k2 := bytes.Repeat([]byte{2}, 20)
	ts := func(p netip.Prefix) []ipsec.Selector { return []ipsec.Selector{ipsec.PrefixSelector(p, 0)} }
	aOut = &api.SA{SPI: spiAB, Dir: api.Out, Local: gwA, Remote: gwB, Mode: api.Tunnel, Suite: suite, EncKey: k1, ReqID: 1, LocalTS: ts(lanA), RemoteTS: ts(lanB)}
	bIn = &api.SA{SPI: spiAB, Dir: api.In, Local: gwB, Remote: gwA, Mode: api.Tunnel, Suite: suite, EncKey: k1, ReqID: 1, LocalTS: ts(lanB), RemoteTS: ts(lanA)}
	bOut = &api.SA{SPI: spiBA, Dir: api.Out, Local: gwB, Remote: gwA, Mode: api.Tunnel, Suite: suite, EncKey: k2, ReqID: 1, LocalTS: ts(lanB), RemoteTS: ts(lanA)}
	aIn = &api.SA{SPI: spiBA, Dir: api.In, Local: gwA, Remote: gwB, Mode: api.Tunnel, Suite: suite, EncKey: k2, ReqID: 1, LocalTS: ts(lanA), RemoteTS: ts(lanB)}
	return
}

func setup(t testing.TB) (a, b *gateway, logical uint16, polA uint32) {
	t.Helper()
	fn := testFn(t)
	a = newGateway(t, gwA, lanA, fn)
	b = newGateway(t, gwB, lanB, fn)
	aOut, bIn, bOut, aIn := mirroredSAs(ipsec.AES128GCM16)
	for _, x := range []struct {
		g  *gateway
		sa *api.SA
	}{{a, aOut}, {a, aIn}, {b, bIn}, {b, bOut}} {
		if _, _, err := x.g.e.AddSA(x.sa); err != nil {
			t.Fatal(err)
		}
	}
	pa, logical, _, err := a.e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB,
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return a, b, logical, pa.ID
}

func TestEncapHandoffDecap(t *testing.T) {
	a, b, logical, pol := setup(t)
	anchorSPU := a.e.physical(logical)
	other := 1 - anchorSPU
	// Cleartext arrives on the queue of the SPU that is not the anchor.
	steerAs(a.lan[other], steer.ClassCleartext, logical, pol)
	payload := []byte("through the tunnel")
	if !a.lan[other].Inject(udpFrame(hostA, hostB, payload)) {
		t.Fatal("inject refused")
	}
	a.step()
	a.step()
	esp := a.takeWAN()
	if len(esp) != 1 {
		t.Fatalf("gw-a sent %d frames on the WAN, want 1 (drops: %v)", len(esp), a.e.SPUStats())
	}
	st := a.e.SPUStats()
	if st[other].HandoffOut != 1 || st[anchorSPU].HandoffIn != 1 || st[anchorSPU].Encap != 1 {
		t.Errorf("handoff and encap counters: %+v", st)
	}
	if esp[0][14+9] != iphdr.ProtoESP || !bytes.Equal(esp[0][0:6], macWire[:]) {
		t.Errorf("not an ESP frame to the next hop: % x", esp[0][:40])
	}
	// gw-b decapsulates it and forwards the inner packet to its LAN.
	steerAs(b.wan[0], steer.ClassESP, logical, 0)
	b.wan[0].Inject(esp[0])
	b.step()
	b.step()
	inner := b.takeLAN()
	if len(inner) != 1 {
		t.Fatalf("gw-b forwarded %d frames, want 1 (stats %+v)", len(inner), b.e.SPUStats())
	}
	if !bytes.HasSuffix(inner[0], payload) || inner[0][14+8] != 62 {
		t.Errorf("inner packet wrong or TTL not decremented twice: % x", inner[0])
	}
	// A replay of the same ESP packet is dropped by the SA.
	b.wan[0].Inject(esp[0])
	b.step()
	b.step()
	if n := len(b.takeLAN()); n != 0 {
		t.Error("replayed packet forwarded")
	}
	sas := b.e.DumpSAs()
	var spi uint32
	for _, s := range sas {
		if s.Dir == api.In && s.Stats.Drops["replay"] != 1 {
			t.Errorf("replay not counted: %+v", s.Stats)
		}
		if s.Dir == api.In {
			spi = s.SPI
		}
	}
	// The SPU's totals have it too, and keep it once the SA is gone.
	saDrops := func() (n uint64) {
		for _, st := range b.e.SPUStats() {
			n += st.Drops["sa_replay"]
		}
		return n
	}
	if n := saDrops(); n != 1 {
		t.Errorf("sa_replay in the SPUs' totals: %d, want 1", n)
	}
	if err := b.e.DelSA(api.SAID{SPI: spi, Dir: api.In}); err != nil {
		t.Fatal(err)
	}
	if n := saDrops(); n != 1 {
		t.Errorf("sa_replay after the SA was deleted: %d, want 1", n)
	}
}

func TestDropsAreCounted(t *testing.T) {
	a, b, logical, pol := setup(t)
	_ = b
	anchorSPU := a.e.physical(logical)
	// Unknown SPI.
	steerAs(a.wan[anchorSPU], steer.ClassESP, logical, 0)
	f := udpFrame(gwB, gwA, make([]byte, 40))
	f[14+9] = iphdr.ProtoESP
	binary.BigEndian.PutUint32(f[14+20:], 0xdead)
	a.wan[anchorSPU].Inject(f)
	// No metadata at all.
	a.wan[1-anchorSPU].SetSteer(func(pkt, meta []byte) bool { return true })
	a.wan[1-anchorSPU].Inject(f)
	// Cleartext the policy does not cover is routed in the clear (bypass).
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	a.lan[anchorSPU].Inject(udpFrame(hostA, netip.MustParseAddr("198.18.9.9"), []byte("x")))
	// A truncated frame.
	a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, nil)[:20])
	a.step()
	a.step()
	st := a.e.SPUStats()
	drops := map[string]uint64{}
	var bypass uint64
	for _, s := range st {
		for k, v := range s.Drops {
			drops[k] += v
		}
		bypass += s.Bypass
	}
	if drops["unknown_spi"] != 1 || drops["no_meta"] != 1 || drops["malformed"] != 1 || bypass != 1 {
		t.Errorf("drops %v bypass %d", drops, bypass)
	}
}

func TestAcquireWhenPolicyHasNoSA(t *testing.T) {
	a, _, logical, pol := setup(t)
	if err := a.e.DelSA(api.SAID{SPI: spiAB, Dir: api.Out, Remote: gwB}); err != nil {
		t.Fatal(err)
	}
	anchorSPU := a.e.physical(logical)
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	for i := 0; i < 3; i++ {
		a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte("x")))
	}
	a.step()
	select {
	case ev := <-a.e.Events:
		if ev.Kind != api.EventAcquire || ev.Acquire.PolicyID != pol || ev.Acquire.Dst != hostB {
			t.Errorf("event %+v", ev)
		}
	default:
		t.Fatal("no acquire")
	}
	select {
	case ev := <-a.e.Events:
		t.Errorf("second acquire within a second: %+v", ev)
	default:
	}
}

// TestPacketPathAllocatesNothing runs the whole per-packet path (receive,
// metadata, policy, encapsulation, transmit) and its inverse.
func TestPacketPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	a, b, logical, pol := setup(t)
	anchorSPU := a.e.physical(logical)
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	steerAs(b.wan[anchorSPU], steer.ClassESP, logical, 0)
	frame := udpFrame(hostA, hostB, make([]byte, 64))
	var esp []byte
	a.wan[anchorSPU].SetSink(func(p []byte) { esp = append(esp[:0], p...) })
	b.lan[0].SetSink(func([]byte) {})
	b.lan[1].SetSink(func([]byte) {})
	// Warm up (maps, neighbour caches).
	a.lan[anchorSPU].Inject(frame)
	a.step()
	allocs := testing.AllocsPerRun(200, func() {
		a.lan[anchorSPU].Inject(frame)
		a.e.spus[anchorSPU].iterate()
		b.wan[anchorSPU].Inject(esp)
		b.e.spus[anchorSPU].iterate()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet round trip", allocs)
	}
	if st := b.e.SPUStats(); st[anchorSPU].Decap < 200 {
		t.Errorf("decapsulated %d", st[anchorSPU].Decap)
	}
}

// TestFirstPacketsWaitForTheNeighbour: packets to a next hop whose MAC is
// not known yet wait (as in the kernel's neighbour queue) and go out once
// it is resolved, instead of being lost.
func TestFirstPacketsWaitForTheNeighbour(t *testing.T) {
	a, _, logical, pol := setup(t)
	r := a.e.router.(*fakeRouter)
	r.resolved = false
	anchorSPU := a.e.physical(logical)
	steerAs(a.lan[anchorSPU], steer.ClassCleartext, logical, pol)
	for i := 0; i < 3; i++ {
		a.lan[anchorSPU].Inject(udpFrame(hostA, hostB, []byte{byte(i)}))
	}
	a.step()
	if n := len(a.takeWAN()); n != 0 || r.asked == 0 {
		t.Fatalf("sent %d before resolution, asked %d", n, r.asked)
	}
	a.step()
	if n := len(a.takeWAN()); n != 0 {
		t.Fatalf("sent %d with nothing changed", n)
	}
	r.resolved = true
	r.gen++
	a.step()
	out := a.takeWAN()
	if len(out) != 3 {
		t.Fatalf("sent %d of the 3 waiting packets", len(out))
	}
	for _, st := range a.e.SPUStats() {
		if st.Drops["no_neighbour"] != 0 {
			t.Errorf("drops %v", st.Drops)
		}
	}
}

// TestUpdateSARemote: an outbound SA whose remote changes (the peer moved
// behind a NAT) is known by its new remote afterwards, in the registry and
// on its SPU, also once its logical SPU moved to another SPU: iked deletes
// and queries it by the new one.
func TestUpdateSARemote(t *testing.T) {
	a, _, _, _ := setup(t)
	var out api.SAState
	for _, s := range a.e.DumpSAs() {
		if s.Dir == api.Out {
			out = s
		}
	}
	if out.SPI == 0 {
		t.Fatal("no outbound SA")
	}
	moved := netip.MustParseAddr("198.18.99.7")
	if err := a.e.UpdateSA(&api.SAUpdate{SAID: api.SAID{SPI: out.SPI, Dir: api.Out, Remote: out.Remote}, Remote: moved}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		states, found := a.e.SAStates([]api.SAID{{SPI: out.SPI, Dir: api.Out, Remote: moved}, {SPI: out.SPI, Dir: api.Out, Remote: out.Remote}})
		if !found[0] || found[1] || states[0].Remote != moved {
			t.Errorf("%s: by the new remote %v, by the old %v (%+v)", when, found[0], found[1], states[0].SA)
		}
		n := 0
		for _, s := range a.e.DumpSAs() {
			if s.SPI == out.SPI && s.Dir == api.Out {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: the dump holds the SA %d times", when, n)
		}
	}
	check("after the update")
	// Its logical SPU moves: drain every SPU in turn but the last.
	for id := 0; id < a.e.NumSPUs()-1; id++ {
		if _, err := a.e.Drain(id); err != nil {
			t.Fatal(err)
		}
	}
	check("after a move")
	if err := a.e.DelSA(api.SAID{SPI: out.SPI, Dir: api.Out, Remote: out.Remote}); err == nil {
		t.Error("deleted by its old remote")
	}
	if err := a.e.DelSA(api.SAID{SPI: out.SPI, Dir: api.Out, Remote: moved}); err != nil {
		t.Errorf("delete by the new remote: %v", err)
	}
	for _, s := range a.e.DumpSAs() {
		if s.SPI == out.SPI && s.Dir == api.Out {
			t.Errorf("the SA is still there: %+v", s.SA)
		}
	}
}
