package iked

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/dataplane/anchor"
)

func testIKESA(t testing.TB, spi uint64) *sa.IKESA {
	t.Helper()
	alg := suite.Algorithms{Protocol: suite.ProtocolIKE, Encr: suite.EncrAESGCM16, EncrKeyBits: 128, PRF: suite.PRFHMACSHA256, Group: suite.GroupCurve25519}
	keys, err := suite.DeriveIKEKeys(alg, make([]byte, 32), make([]byte, 32), make([]byte, 32), spi, spi+1)
	if err != nil {
		t.Fatal(err)
	}
	ike := &sa.IKESA{UniqueID: 7, ConnName: "c", Initiator: true, SPIi: spi, SPIr: spi + 1, State: sa.Established,
		Local: netip.MustParseAddrPort("198.18.0.1:4500"), Remote: netip.MustParseAddrPort("198.18.0.2:4500"), MsgIDOut: 5, MsgIDIn: 3,
		LastResponse: [][]byte{{1, 2, 3}}}
	if err := ike.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	return ike
}

// TestDispatchHandsOff: a datagram that reached another worker's socket
// goes to the worker of its anchor, counted.
func TestDispatchHandsOff(t *testing.T) {
	var hk anchor.HashKey
	hk[0] = 1
	fn, err := anchor.NewFunction(hk, 256)
	if err != nil {
		t.Fatal(err)
	}
	m, err := anchor.NewMap(256, []uint16{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), fn: fn, byPhys: map[int]*loop{}}
	d.spus.Store(m)
	d.cfg.Store(&config.Config{})
	for i := range 2 {
		l := newLoop(d, i, i)
		d.loops = append(d.loops, l)
		d.byPhys[i] = l
	}
	local := netip.MustParseAddr("198.18.0.1")
	var peers [2]netip.Addr
	for a := netip.MustParseAddr("198.18.0.2"); !peers[0].IsValid() || !peers[1].IsValid(); a = a.Next() {
		peers[m.Physical(fn.Logical(local, a))] = a
	}
	for spu, peer := range peers {
		dg := manager.Datagram{Local: netip.AddrPortFrom(local, 500), Remote: netip.AddrPortFrom(peer, 500), Data: []byte{1}}
		before := d.stats.Get(stats.Handoffs)
		d.dispatch(d.loops[spu], dg)
		d.dispatch(d.loops[1-spu], dg)
		if got := d.stats.Get(stats.Handoffs) - before; got != 1 {
			t.Errorf("peer %s: %d handoffs, want 1", peer, got)
		}
		if n := len(d.loops[spu].in); n != 2 {
			t.Errorf("peer %s anchored on spu %d: its worker got %d datagrams, want both", peer, spu, n)
		}
		for len(d.loops[spu].in) > 0 {
			<-d.loops[spu].in
		}
	}
}

func TestListenAddrs(t *testing.T) {
	cfg := &config.Config{Order: []string{"a", "b"}, Connections: map[string]*config.Conn{
		"a": {Locals: []netip.Addr{netip.MustParseAddr("198.18.0.1")}},
		"b": {Locals: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")}},
	}}
	got, err := listenAddrs(cfg)
	if err != nil || len(got) != 2 {
		t.Errorf("listen addresses %v %v", got, err)
	}
	cfg.Listen = config.List{"198.18.0.9"}
	if got, _ := listenAddrs(cfg); len(got) != 1 || got[0] != netip.MustParseAddr("198.18.0.9") {
		t.Errorf("explicit listen %v", got)
	}
}

// A worker's queue is bounded in bytes as well as in datagrams: 4,096
// datagrams of 64 KiB would have pinned 256 MiB per worker.
func TestDatagramQueueBytes(t *testing.T) {
	var hk anchor.HashKey
	fn, err := anchor.NewFunction(hk, 256)
	if err != nil {
		t.Fatal(err)
	}
	m, err := anchor.NewMap(256, []uint16{0})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), fn: fn, byPhys: map[int]*loop{}}
	d.spus.Store(m)
	d.cfg.Store(&config.Config{})
	l := newLoop(d, 0, 0)
	d.loops, d.byPhys[0] = []*loop{l}, l
	dg := manager.Datagram{Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.18.0.2:500"),
		Data: make([]byte, 64<<10)}
	for range 200 {
		d.dispatch(l, dg)
	}
	if got, want := len(l.in), datagramQueueBytes/(64<<10); got != want {
		t.Errorf("%d datagrams of 64 KiB queued, want %d", got, want)
	}
	if got := d.dropped.Load(); got != uint64(200-len(l.in)) {
		t.Errorf("%d dropped, want %d", got, 200-len(l.in))
	}
	// Taking one out makes room for one.
	<-l.in
	l.queued.Add(-(64 << 10))
	before := len(l.in)
	d.dispatch(l, dg)
	if len(l.in) != before+1 {
		t.Errorf("no room after one datagram left the queue")
	}
}
