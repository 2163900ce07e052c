package spu

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/ipfrag"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// otherLogical returns a logical SPU that the engine's map puts on another
// physical SPU than logical's.
func otherLogical(t *testing.T, e *Engine, logical uint16) uint16 {
	t.Helper()
	for l := range uint16(e.fn.L()) {
		if e.physical(l) != e.physical(logical) {
			return l
		}
	}
	t.Fatal("every logical SPU is on one SPU")
	return 0
}

// saLogical finds an SA in the dump and returns its logical and physical
// SPU.
func saLogical(t *testing.T, e *Engine, spi uint32, dir api.Dir) (int, int) {
	t.Helper()
	for _, s := range e.DumpSAs() {
		if s.SPI == spi && s.Dir == dir {
			if s.Logical == nil {
				t.Fatalf("sa 0x%08x %s: dumped without its logical SPU", spi, dir)
			}
			return *s.Logical, s.SPU
		}
	}
	t.Fatalf("sa 0x%08x %s: not in the dump", spi, dir)
	return 0, 0
}

// TestAnchorPlacement: an inbound SA sits on the logical SPU its SPI
// encodes, an outbound SA and a policy on their explicit logical SPU or,
// without one, on the hash of their endpoints; a new peer address (NAT)
// keeps the anchor, and a map change moves each by its stored logical SPU.
func TestAnchorPlacement(t *testing.T) {
	fn := testFn(t)
	g := newGateway(t, gwA, lanA, fn)
	e := g.e
	hash := fn.Logical(gwA, gwB)
	ike := otherLogical(t, e, hash) // the IKE SA's logical SPU, not the hash's
	codec, err := fn.Codec()
	if err != nil {
		t.Fatal(err)
	}
	spiIn, _ := codec.Encode(ike, 0x5001)
	out, in, _, _ := mirroredSAs(ipsec.AES128GCM16)
	out.SPI, out.Logical = 0x77770001, api.Logical(int(ike))
	in.Local, in.Remote = gwA, gwB
	in.SPI = spiIn
	dflt, _, _, _ := mirroredSAs(ipsec.AES128GCM16)
	dflt.SPI, dflt.ReqID = 0x77770002, 2
	for _, sa := range []*api.SA{out, in, dflt} {
		if _, _, err := e.AddSA(sa); err != nil {
			t.Fatalf("sa 0x%08x %s: %v", sa.SPI, sa.Dir, err)
		}
	}
	pol, pl, _, err := e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB, Logical: api.Logical(int(ike)),
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err != nil || pl != ike {
		t.Fatalf("policy with logical %d: on %d, %v", ike, pl, err)
	}
	dpol, dl, _, err := e.AddPolicy(api.Policy{ReqID: 2, Action: api.Protect, Local: gwA, Remote: gwB,
		LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.3.0/24"), 0)},
		RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.4.0/24"), 0)}})
	if err != nil || dl != hash {
		t.Fatalf("policy without logical: on %d, want the hash's %d: %v", dl, hash, err)
	}
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			spi  uint32
			dir  api.Dir
			want uint16
		}{{out.SPI, api.Out, ike}, {in.SPI, api.In, ike}, {dflt.SPI, api.Out, hash}} {
			l, p := saLogical(t, e, c.spi, c.dir)
			if l != int(c.want) || p != e.physical(c.want) {
				t.Errorf("%s: sa 0x%08x %s on logical %d spu %d, want logical %d spu %d", when, c.spi, c.dir, l, p, c.want, e.physical(c.want))
			}
		}
		for _, c := range []struct {
			id   uint32
			want uint16
		}{{pol.ID, ike}, {dpol.ID, hash}} {
			found := false
			for _, ps := range e.DumpPolicies() {
				if ps.ID != c.id {
					continue
				}
				found = true
				if ps.Logical == nil || *ps.Logical != int(c.want) || ps.SPU != e.physical(c.want) {
					t.Errorf("%s: policy %d on logical %v spu %d, want logical %d spu %d", when, c.id, ps.Logical, ps.SPU, c.want, e.physical(c.want))
				}
			}
			if !found {
				t.Errorf("%s: policy %d not in the dump", when, c.id)
			}
		}
	}
	check("installed")

	// The peer moved behind a NAT: the SAs keep their anchor, though the
	// hash of the new addresses is elsewhere.
	natted := netip.MustParseAddr("198.19.77.1")
	for _, u := range []*api.SAUpdate{
		{SAID: api.SAID{SPI: out.SPI, Dir: api.Out, Remote: gwB}, Remote: natted},
		{SAID: api.SAID{SPI: in.SPI, Dir: api.In}, Remote: natted},
		{SAID: api.SAID{SPI: dflt.SPI, Dir: api.Out, Remote: gwB}, Remote: natted},
	} {
		if err := e.UpdateSA(u); err != nil {
			t.Fatalf("update sa 0x%08x %s: %v", u.SPI, u.Dir, err)
		}
	}
	check("after the NAT change")

	// Each moves with its own logical SPU, not with its addresses'.
	for _, l := range []uint16{ike, hash} {
		if _, err := e.SetMap(moveAway(t, e, l)); err != nil {
			t.Fatal(err)
		}
		check("after a map change")
	}
}

// TestAnchorRefusals: an explicit logical SPU out of range, or one that
// disagrees with an inbound SA's SPI, is a bad request naming the SA or
// policy.
func TestAnchorRefusals(t *testing.T) {
	fn := testFn(t) // L = 16
	e := newGateway(t, gwA, lanA, fn).e
	out, in, _, _ := mirroredSAs(ipsec.AES128GCM16)
	in.Local, in.Remote = gwA, gwB
	in.SPI = 3<<28 | 0x42
	for _, c := range []struct {
		sa   *api.SA
		l    int
		want string
	}{
		{out, 16, "logical SPU 16 out of range (0..15)"},
		{out, -1, "logical SPU -1 is negative"},
		{in, 4, "logical SPU 4 asked, but the SPI encodes 3"},
	} {
		sa := *c.sa
		sa.Logical = api.Logical(c.l)
		_, _, err := e.AddSA(&sa)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "sa spi 0x") {
			t.Errorf("sa 0x%08x %s with logical %d: %v, want %q", sa.SPI, sa.Dir, c.l, err, c.want)
		}
		if c.l >= 0 && !errors.Is(err, unixrpc.ErrBadRequest) {
			t.Errorf("sa 0x%08x with logical %d: %v is not a bad request", sa.SPI, c.l, err)
		}
	}
	// The SPI's own logical SPU, given explicitly, is fine.
	in.Logical = api.Logical(3)
	if _, _, err := e.AddSA(in); err != nil {
		t.Errorf("inbound SA with its SPI's logical SPU: %v", err)
	}
	_, _, _, err := e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB, Logical: api.Logical(99), Name: "site-9",
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err == nil || !strings.Contains(err.Error(), "policy 0 (site-9): logical SPU 99 out of range (0..15)") {
		t.Errorf("policy with logical 99: %v", err)
	}
	if len(e.DumpSAs()) != 1 || len(e.DumpPolicies()) != 0 {
		t.Errorf("refused entries were installed: %d SAs, %d policies", len(e.DumpSAs()), len(e.DumpPolicies()))
	}
}

// TestReassembledESPGoesToItsSPIsAnchor: the fragments of an ESP packet
// are steered by the outer addresses to one SPU, which reassembles them
// and hands the whole packet to the SPU of its SPI's logical SPU (its IKE
// SA's), which decapsulates it.
func TestReassembledESPGoesToItsSPIsAnchor(t *testing.T) {
	fn := testFn(t)
	a := newGateway(t, gwA, lanA, fn)
	b := newGateway(t, gwB, lanB, fn)
	hash := fn.Logical(gwA, gwB)
	ike := otherLogical(t, b.e, hash)
	codec, _ := fn.Codec()
	spi, _ := codec.Encode(ike, 0x1234)
	aOut, bIn, _, _ := mirroredSAs(ipsec.AES128GCM16)
	aOut.SPI, bIn.SPI = spi, spi
	aOut.Logical = api.Logical(int(ike))
	if _, _, err := a.e.AddSA(aOut); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.e.AddSA(bIn); err != nil {
		t.Fatal(err)
	}
	pol, _, _, err := a.e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB, Logical: api.Logical(int(ike)),
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	q := a.e.physical(ike)
	steerAs(a.lan[q], steer.ClassCleartext, ike, pol.ID)
	payload := make([]byte, 1200)
	a.lan[q].Inject(udpFrame(hostA, hostB, payload))
	a.step()
	a.step()
	wan := a.takeWAN()
	if len(wan) != 1 {
		t.Fatalf("gw-a sent %d frames, want 1", len(wan))
	}
	ip := wan[0][14:]
	const mtu = 576
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 0, mtu)
	}
	n, err := ipfrag.Fragment(bufs, ip, mtu, 1)
	if err != nil || n < 2 {
		t.Fatalf("fragment: %d fragments, %v", n, err)
	}
	frag := b.e.physical(hash)
	steerAs(b.wan[frag], steer.ClassESPFragment, hash, 0)
	for _, f := range bufs[:n] {
		b.wan[frag].Inject(append(append([]byte{}, wan[0][:14]...), f...))
	}
	for range 4 {
		b.step()
	}
	if got := b.takeLAN(); len(got) != 1 {
		t.Fatalf("gw-b forwarded %d packets, want 1 (stats %+v)", len(got), b.e.SPUStats())
	}
	st := b.e.SPUStats()
	anchor := b.e.physical(ike)
	if st[frag].FragHandoff != 1 || st[frag].Decap != 0 || st[anchor].Decap != 1 || st[anchor].HandoffIn != 1 {
		t.Errorf("reassembled on spu %d, anchored on spu %d: stats %+v", frag, anchor, st)
	}
}
