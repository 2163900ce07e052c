package iketest

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

func childAdd() *api.ChildAdd {
	lts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.1.0/24"), 0)}
	rts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.2.0/24"), 0)}
	in := api.SA{SPI: 0x1001, Dir: api.In, Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2"),
		Mode: api.Tunnel, Suite: ipsec.AES128GCM16, EncKey: bytes.Repeat([]byte{1}, 20), ReqID: 5, LocalTS: lts, RemoteTS: rts}
	out := in
	out.SPI, out.Dir = 0x2002, api.Out
	return &api.ChildAdd{Logical: 3, In: in, Out: &out,
		Policy: &api.Policy{ReqID: 5, Action: api.Protect, Local: in.Local, Remote: in.Remote, LocalTS: lts, RemoteTS: rts}}
}

// The fake's child.add is all or nothing, as spud's: a part already there
// or invalid leaves the others out; child.del names what is not there.
func TestDataPlaneChildAtomic(t *testing.T) {
	d := NewDataPlane(0x100)
	taken := childAdd().Out
	if err := d.AddSA(taken); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddChild(childAdd()); err == nil || !strings.Contains(err.Error(), "outbound sa 0x00002002") {
		t.Fatalf("outbound taken: %v", err)
	}
	bad := childAdd()
	bad.Policy.ReqID = 6
	if _, err := d.AddChild(bad); err == nil {
		t.Fatal("a policy of another reqid went in")
	}
	if sas, pols := d.Counts(); sas != 1 || pols != 0 {
		t.Fatalf("refused child sas left %d SAs, %d policies", sas, pols)
	}
	if err := d.DelSA(api.SAID{SPI: taken.SPI, Dir: api.Out, Remote: taken.Remote}); err != nil {
		t.Fatal(err)
	}
	calls := d.Calls
	id, err := d.AddChild(childAdd())
	if err != nil || id == 0 || d.Calls != calls+1 {
		t.Fatalf("child.add: policy %d, %v, %d calls", id, err, d.Calls-calls)
	}
	if sas, pols := d.Counts(); sas != 2 || pols != 1 {
		t.Fatalf("%d SAs, %d policies", sas, pols)
	}
	del := &api.ChildDel{Policies: []uint32{id}, Out: &api.SAID{SPI: 0x2002, Dir: api.Out, Remote: taken.Remote}, In: &api.SAID{SPI: 0x1001, Dir: api.In}}
	if err := d.DelChild(del); err != nil {
		t.Fatal(err)
	}
	if err := d.DelChild(del); err == nil || !strings.Contains(err.Error(), "policy") || !strings.Contains(err.Error(), "0x00001001 in") {
		t.Errorf("child.del again: %v", err)
	}
	d.NoChildOps = true
	if _, err := d.AddChild(childAdd()); !errors.Is(err, task.ErrNoChildOps) {
		t.Errorf("older spud: %v", err)
	}
}
