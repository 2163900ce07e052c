package iked

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/dataplane/anchor"
)

func testIKESA(t *testing.T, spi uint64) *sa.IKESA {
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

func TestStateStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state folder mode %04o", fi.Mode().Perm())
	}
	ike := testIKESA(t, 0x1122334455667788)
	if err := s.save(ike); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(s.path(ike))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v mode %v", err, fi.Mode())
	}
	// A torn write and a garbage file do not stop the restore.
	os.WriteFile(filepath.Join(dir, "x.json.tmp"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o600)
	got, errs, err := s.load()
	if err != nil || len(got) != 1 || len(errs) != 1 {
		t.Fatalf("load: %d IKE SAs, errors %v, %v", len(got), errs, err)
	}
	if !strings.Contains(errs[0].Error(), "kept as bad.json.corrupt") {
		t.Errorf("the corrupt file's error does not say where it is: %v", errs[0])
	}
	r := got[0]
	if r.SPIi != ike.SPIi || r.MsgIDOut != 5 || r.MsgIDIn != 3 || r.Out == nil || r.In == nil || len(r.LastResponse) != 1 {
		t.Errorf("restored %+v", r)
	}
	// The restored ciphers open what the original sealed.
	msg := []byte("header-and-sk-payload-header")
	b, err := ike.Out.Seal(append([]byte(nil), msg...), []byte("inner"))
	if err != nil {
		t.Fatal(err)
	}
	peer := *ike
	peer.Initiator = false
	if err := peer.RestoreCiphers(); err != nil {
		t.Fatal(err)
	}
	if p, err := peer.In.Open(msg, b[len(msg):]); err != nil || string(p) != "inner" {
		t.Errorf("restored keys do not match: %v", err)
	}
	// The unreadable file is kept aside, as evidence, not read again.
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); err == nil {
		t.Errorf("the unreadable state file is still read at restore")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bad.json.corrupt")); err != nil || string(b) != "{" {
		t.Errorf("the unreadable state file was not kept aside: %q %v", b, err)
	}
	if _, errs, _ := s.load(); len(errs) != 0 {
		t.Errorf("a kept-aside file is read again: %v", errs)
	}
	// A state that could not be written sets its older file aside: not
	// restored, but reported lost once.
	if err := s.discard(ike); err != nil {
		t.Fatal(err)
	}
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 1 {
		t.Errorf("after a discard: %d restored, lost %v; want none and one", len(got), lost)
	}
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 0 {
		t.Errorf("a stale state is reported twice: %d, %v", len(got), lost)
	}
	if err := s.discard(ike); err != nil {
		t.Errorf("discarding what is gone: %v", err)
	}
	// A write that works again clears the stale file.
	s.save(ike)
	s.discard(ike)
	s.save(ike)
	if got, lost, _ := s.load(); len(got) != 1 || len(lost) != 0 {
		t.Errorf("after a write that worked again: %d restored, lost %v", len(got), lost)
	}
	s.save(ike)
	s.remove(ike)
	if got, _, _ := s.load(); len(got) != 0 {
		t.Errorf("removed state still loads")
	}
	os.Chmod(dir, 0o755)
	if _, err := openStore(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("a loose state folder was not tightened: %04o", fi.Mode().Perm())
	}
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
