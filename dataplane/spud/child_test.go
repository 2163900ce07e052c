package spud

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// fakeSteering is the steering program as child.add and child.del see
// it: its SPD (failing with failSPD when set) and its local addresses.
type fakeSteering struct {
	spd     fakeSPD
	locals  map[netip.Addr]bool
	failSPD error
}

func (f *fakeSteering) SetPolicy(p steer.Policy) error {
	if f.failSPD != nil {
		return f.failSPD
	}
	return f.spd.SetPolicy(p)
}
func (f *fakeSteering) RemovePolicy(p steer.Policy) error  { return f.spd.RemovePolicy(p) }
func (f *fakeSteering) AddLocalAddr(a netip.Addr) error    { f.locals[a] = true; return nil }
func (f *fakeSteering) DeleteLocalAddr(a netip.Addr) error { delete(f.locals, a); return nil }

// childDaemon is apiDaemon with a protected interface and a fake steering
// program, its engine started so that commands go through the SPUs.
func childDaemon(t *testing.T) (*Daemon, *api.Client, *fakeSteering) {
	d, c := apiDaemon(t)
	d.ifaces = []api.Interface{{Name: "lan0", Ifindex: 3, Protected: true}, {Name: "wan0", Ifindex: 2}}
	f := &fakeSteering{spd: fakeSPD{}, locals: map[netip.Addr]bool{}}
	d.steerFake = f
	d.eng.Start()
	return d, c, f
}

var (
	childLocal  = netip.MustParseAddr("198.18.0.1")
	childRemote = netip.MustParseAddr("198.19.0.7")
)

// childReq is a whole Child SA anchored on logical, its inbound SPI
// allocated there.
func childReq(t *testing.T, c *api.Client, logical int) *api.ChildAdd {
	t.Helper()
	return childReqN(t, c, logical, 0xc0ffee01)
}

// childReqN is childReq with outbound SPI out.
func childReqN(t testing.TB, c *api.Client, logical int, outSPI uint32) *api.ChildAdd {
	t.Helper()
	r, err := c.AllocSPI(api.SPIAllocRequest{Local: childLocal, Remote: childRemote, Logical: api.Logical(logical)})
	if err != nil {
		t.Fatal(err)
	}
	return childReqSPI(logical, r.SPI, outSPI)
}

// childReqSPI is childReqN's request with the inbound SPI given.
func childReqSPI(logical int, inSPI, outSPI uint32) *api.ChildAdd {
	lts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)}
	rts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.19.128.0/24"), 0)}
	sa := api.SA{SPI: inSPI, Dir: api.In, Local: childLocal, Remote: childRemote, Logical: api.Logical(logical), Mode: api.Tunnel,
		Suite: ipsec.AES128GCM16, EncKey: dumpKey, ReqID: 42, LocalTS: lts, RemoteTS: rts, Name: "iked/peer/net/1"}
	out := sa
	out.SPI, out.Dir = outSPI, api.Out
	return &api.ChildAdd{Logical: logical, In: sa, Out: &out, Policy: &api.Policy{ReqID: 42, Action: api.Protect,
		Local: childLocal, Remote: childRemote, LocalTS: lts, RemoteTS: rts, Name: sa.Name}}
}

// installed counts the SAs and policies the engine holds and the SPD
// entries and local addresses of the fake steering program.
func installed(t *testing.T, d *Daemon, c *api.Client, f *fakeSteering) (sas, pols, spd, locals int) {
	t.Helper()
	s, err := c.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.DumpPolicies()
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.inSPIs) != len(d.localRefs) && len(d.localRefs) > 1 {
		t.Errorf("%d inbound SPIs, %d local endpoints", len(d.inSPIs), len(d.localRefs))
	}
	return len(s), len(p), len(f.spd), len(f.locals)
}

// child.add installs the inbound SA, the outbound SA and the policy on
// the SPU of the Child SA's logical SPU, with the policy's steering
// entry and the inbound SA's local endpoint; child.del takes all of it
// away, and a second child.del names what is not there.
func TestChildAddDel(t *testing.T) {
	d, c, f := childDaemon(t)
	req := childReq(t, c, 7)
	r, err := c.AddChild(req)
	if err != nil {
		t.Fatal(err)
	}
	spu := int(d.eng.Map().Physical(7))
	if r.Logical != 7 || r.SPU != spu || r.PolicyID == 0 {
		t.Fatalf("reply %+v, want logical 7 on SPU %d with a policy id", r, spu)
	}
	sas, err := c.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sas {
		if s.Logical == nil || *s.Logical != 7 || s.SPU != spu || len(s.EncKey) > 0 {
			t.Errorf("sa 0x%08x %s: logical %v spu %d, want 7 on %d", s.SPI, s.Dir, s.Logical, s.SPU, spu)
		}
	}
	pols, err := c.DumpPolicies()
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 2 || len(pols) != 1 || pols[0].ID != r.PolicyID || *pols[0].Logical != 7 || pols[0].SPU != spu || pols[0].OutSPI != req.Out.SPI {
		t.Fatalf("%d SAs, policies %+v: want 2 SAs and policy %d on logical 7 through 0x%08x", len(sas), pols, r.PolicyID, req.Out.SPI)
	}
	if len(f.spd) != 1 || !f.locals[childLocal] {
		t.Errorf("steering: spd %v, locals %v", f.spd, f.locals)
	}
	d.mu.Lock()
	held := !d.spis[req.In.SPI].IsZero()
	d.mu.Unlock()
	if held {
		t.Errorf("spi 0x%08x still held as allocated", req.In.SPI)
	}
	if _, err := c.AddChild(req); !errors.Is(err, unixrpc.ErrExists) || !strings.Contains(err.Error(), "inbound sa") {
		t.Errorf("the same child sa again: %v, want inbound sa exists", err)
	}

	del := &api.ChildDel{Policies: []uint32{r.PolicyID}, Out: &api.SAID{SPI: req.Out.SPI, Dir: api.Out, Remote: childRemote},
		In: &api.SAID{SPI: req.In.SPI, Dir: api.In}}
	if err := c.DelChild(del); err != nil {
		t.Fatal(err)
	}
	if s, p, e, l := installed(t, d, c, f); s+p+e+l != 0 {
		t.Errorf("after child.del: %d SAs, %d policies, %d SPD entries, %d local addresses", s, p, e, l)
	}
	err = c.DelChild(del)
	if !errors.Is(err, unixrpc.ErrNotFound) || !strings.Contains(err.Error(), "policy") || !strings.Contains(err.Error(), "0xc0ffee01 out") {
		t.Errorf("child.del again: %v, want not found naming the parts", err)
	}
	if err := c.DelChild(&api.ChildDel{}); !errors.Is(err, unixrpc.ErrBadRequest) {
		t.Errorf("child.del of nothing: %v", err)
	}
	if err := c.DelChild(&api.ChildDel{Out: &api.SAID{SPI: 0x1000, Dir: api.Out}}); !errors.Is(err, unixrpc.ErrBadRequest) {
		t.Errorf("child.del of an outbound SA without its remote: %v", err)
	}

	// Without the outbound SA and policy (a rekey's responder), and
	// the parts' own anchors left out: the Child SA's.
	req = childReq(t, c, 200)
	req.In.Logical, req.Out, req.Policy = nil, nil, nil
	if r, err := c.AddChild(req); err != nil || r.PolicyID != 0 || r.Logical != 200 {
		t.Fatalf("inbound only: %+v %v", r, err)
	}
	if s, p, e, l := installed(t, d, c, f); s != 1 || p != 0 || e != 0 || l != 1 {
		t.Errorf("inbound only: %d SAs, %d policies, %d SPD entries, %d local addresses", s, p, e, l)
	}
}

// A refused part leaves nothing of the Child SA: each way a part can be
// refused, the error names it and has its code.
func TestChildAddAllOrNothing(t *testing.T) {
	d, c, f := childDaemon(t)
	// What stays installed throughout: an outbound SA and a policy the
	// failing requests collide with.
	taken := childReq(t, c, 3)
	taken.Out.SPI = 0xdead0001
	r, err := c.AddChild(taken)
	if err != nil {
		t.Fatal(err)
	}
	s0, p0, e0, l0 := installed(t, d, c, f)
	for _, tc := range []struct {
		name  string
		edit  func(*api.ChildAdd)
		fail  error // set on the fake steering program
		code  error
		wants string
	}{
		{"logical out of range", func(r *api.ChildAdd) { r.Logical = 256 }, nil, unixrpc.ErrBadRequest, "child sa 0x"}, {"logical out of range 2", func(r *api.ChildAdd) { r.Logical = 256 }, nil, unixrpc.ErrBadRequest, "logical SPU 256 out of range (0..255)"},
		{"inbound direction", func(r *api.ChildAdd) { r.In.Dir = api.Out }, nil, unixrpc.ErrBadRequest, "inbound sa"},
		{"inbound key", func(r *api.ChildAdd) { r.In.EncKey = r.In.EncKey[:4] }, nil, unixrpc.ErrBadRequest, "inbound sa spi"},
		{"inbound anchor", func(r *api.ChildAdd) { r.In.Logical = api.Logical(4) }, nil, unixrpc.ErrBadRequest, "inbound sa"},
		{"spi elsewhere", func(r *api.ChildAdd) { r.Logical, r.In.Logical, r.Out.Logical, r.Policy.Logical = 4, nil, nil, nil },
			nil, unixrpc.ErrBadRequest, "the SPI encodes logical SPU 9"},
		{"outbound direction", func(r *api.ChildAdd) { r.Out.Dir = api.In }, nil, unixrpc.ErrBadRequest, "outbound sa"},
		{"outbound key", func(r *api.ChildAdd) { r.Out.EncKey = nil }, nil, unixrpc.ErrBadRequest, "outbound sa spi"},
		{"outbound anchor", func(r *api.ChildAdd) { r.Out.Logical = api.Logical(0) }, nil, unixrpc.ErrBadRequest, "outbound sa"},
		{"outbound reqid", func(r *api.ChildAdd) { r.Out.ReqID = 43 }, nil, unixrpc.ErrBadRequest, "reqid 43"},
		{"outbound exists", func(r *api.ChildAdd) { r.Out.SPI = taken.Out.SPI }, nil, unixrpc.ErrExists, "outbound sa 0xdead0001"},
		{"policy action", func(r *api.ChildAdd) { r.Policy.Action = api.Bypass }, nil, unixrpc.ErrBadRequest, "policy"},
		{"policy selectors", func(r *api.ChildAdd) { r.Policy.RemoteTS = nil }, nil, unixrpc.ErrBadRequest, "needs local and remote selectors"},
		{"policy anchor", func(r *api.ChildAdd) { r.Policy.Logical = api.Logical(1) }, nil, unixrpc.ErrBadRequest, "policy"},
		{"policy interface", func(r *api.ChildAdd) { r.Policy.Interfaces = []string{"wan0"} }, nil, unixrpc.ErrBadRequest, `interface "wan0"`},
		{"policy exists", func(r *api.ChildAdd) { r.Policy.ID = taken.Policy.ID }, nil, unixrpc.ErrExists, "policy"},
		{"policy table full", func(*api.ChildAdd) {}, &steer.TableFullError{Map: "spd4_dst", Size: 16, Policies: 16},
			unixrpc.ErrExhausted, "policy table full: 16 IPv4 policies"},
		{"steering entry", func(*api.ChildAdd) {}, errors.New("map update: no space"), nil, "steering entry 198.18.128.0/24 -> 198.19.128.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := childReq(t, c, 9)
			taken.Policy.ID = r.PolicyID
			tc.edit(req)
			f.failSPD = tc.fail
			defer func() { f.failSPD = nil }()
			_, err := c.AddChild(req)
			if err == nil || !strings.Contains(err.Error(), tc.wants) || (tc.code != nil && !errors.Is(err, tc.code)) {
				t.Fatalf("%v, want %v naming %q", err, tc.code, tc.wants)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %q", err)
			}
			if s, p, e, l := installed(t, d, c, f); s != s0 || p != p0 || e != e0 || l != l0 {
				t.Errorf("left %d SAs, %d policies, %d SPD entries, %d local addresses; want %d, %d, %d, %d", s, p, e, l, s0, p0, e0, l0)
			}
			d.mu.Lock()
			in := d.inSPIs[req.In.SPI]
			d.mu.Unlock()
			if in.IsValid() {
				t.Errorf("inbound spi 0x%08x filed as installed", req.In.SPI)
			}
		})
	}
	// And after all that, the same Child SA goes in whole.
	if _, err := c.AddChild(childReq(t, c, 9)); err != nil {
		t.Fatal(err)
	}
}

// child.del removes a policy on another SPU than the Child SA's SAs (one
// handed over from an IKE SA anchored elsewhere) with them: one command
// on each SPU.
func TestChildDelAcrossSPUs(t *testing.T) {
	d, c, f := childDaemon(t)
	m := d.eng.Map()
	other := -1
	for l := 0; l < d.fn.L(); l++ {
		if m.Physical(uint16(l)) != m.Physical(7) {
			other = l
			break
		}
	}
	if other < 0 {
		t.Fatal("every logical SPU on one SPU")
	}
	req := childReq(t, c, 7)
	pol := *req.Policy
	req.Policy = nil
	if _, err := c.AddChild(req); err != nil {
		t.Fatal(err)
	}
	pol.Logical = api.Logical(other)
	r, err := c.AddPolicy(&pol)
	if err != nil {
		t.Fatal(err)
	}
	if r.SPU == int(m.Physical(7)) {
		t.Fatalf("policy on SPU %d, the SAs' too", r.SPU)
	}
	if err := c.DelChild(&api.ChildDel{Policies: []uint32{r.ID}, Out: &api.SAID{SPI: req.Out.SPI, Dir: api.Out, Remote: childRemote},
		In: &api.SAID{SPI: req.In.SPI, Dir: api.In}}); err != nil {
		t.Fatal(err)
	}
	if s, p, e, l := installed(t, d, c, f); s+p+e+l != 0 {
		t.Errorf("after child.del: %d SAs, %d policies, %d SPD entries, %d local addresses", s, p, e, l)
	}
	sas, pols, _ := d.eng.Counts()
	for i := range sas {
		if sas[i]+pols[i] != 0 {
			t.Errorf("SPU %d still holds %d SAs, %d policies", i, sas[i], pols[i])
		}
	}
}

// child.add takes its request packed (as api.Client sends it) and in JSON
// (an older client's, spuctl's), to the same Child SA; a packed request
// that does not decode is a bad request saying why.
func TestChildAddEncodings(t *testing.T) {
	_, c, _ := childDaemon(t)
	packed := childReqN(t, c, 3, 0xc0ffee01)
	inJSON := childReqN(t, c, 4, 0xc0ffee02)
	inJSON.In.ReqID, inJSON.Out.ReqID, inJSON.Policy.ReqID = 43, 43, 43
	var r1, r2 api.ChildAddReply
	if err := c.Call(api.OpChildAdd, api.PackedRequest{Packed: api.AppendPackedChildAdd(nil, packed)}, &r1); err != nil {
		t.Fatalf("packed: %v", err)
	}
	if err := c.Call(api.OpChildAdd, inJSON, &r2); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if r1.Logical != 3 || r2.Logical != 4 || r1.PolicyID == 0 || r2.PolicyID == 0 {
		t.Errorf("replies %+v %+v", r1, r2)
	}
	sas, err := c.DumpSAs(false)
	if err != nil || len(sas) != 4 {
		t.Fatalf("%d SAs, %v", len(sas), err)
	}
	for _, s := range sas {
		want := packed.In
		if s.ReqID == 43 {
			want = inJSON.In
		}
		if s.Name != want.Name || s.Local != want.Local || s.Remote != want.Remote || len(s.LocalTS) != 1 || s.LocalTS[0] != want.LocalTS[0] {
			t.Errorf("sa 0x%08x: %+v", s.SPI, s.SA)
		}
	}
	bad := api.AppendPackedChildAdd(nil, packed)
	err = c.Call(api.OpChildAdd, api.PackedRequest{Packed: bad[:len(bad)-3]}, nil)
	if !errors.Is(err, unixrpc.ErrBadRequest) || !strings.Contains(err.Error(), "packed child.add") {
		t.Errorf("a packed request cut short: %v", err)
	}
}
