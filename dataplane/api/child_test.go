package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

func validChild() *ChildAdd {
	lts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.1.0/24"), 0)}
	rts := []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.2.0/24"), 0)}
	in := SA{SPI: 0x1001, Dir: In, Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2"),
		Mode: Tunnel, Suite: ipsec.AES128GCM16, EncKey: bytes.Repeat([]byte{1}, 20), ReqID: 5, LocalTS: lts, RemoteTS: rts}
	out := in
	out.SPI, out.Dir = 0x2002, Out
	return &ChildAdd{Logical: 3, In: in, Out: &out,
		Policy: &Policy{ReqID: 5, Action: Protect, Local: in.Local, Remote: in.Remote, LocalTS: lts, RemoteTS: rts}}
}

// ChildAdd.Validate refuses what sa.add and policy.add would, and parts
// that are not one Child SA's, naming the part; ChildDel.Validate
// refuses a request that names nothing or an SA of the wrong direction.
func TestChildValidate(t *testing.T) {
	if err := validChild().Validate(256); err != nil {
		t.Fatal(err)
	}
	only := validChild()
	only.Out, only.Policy = nil, nil
	if err := only.Validate(256); err != nil {
		t.Errorf("inbound only: %v", err)
	}
	for _, c := range []struct {
		edit func(*ChildAdd)
		want string
	}{
		{func(r *ChildAdd) { r.Logical = 256 }, "child sa 0x00001001: logical SPU 256 out of range (0..255)"},
		{func(r *ChildAdd) { r.Logical = -1 }, "logical SPU -1 out of range"},
		{func(r *ChildAdd) { r.In.Dir = Out }, `inbound sa 0x00001001: direction "out", want in`},
		{func(r *ChildAdd) { r.In.SPI = 7 }, "inbound sa spi 0x00000007: SPIs below 256 are reserved"},
		{func(r *ChildAdd) { r.In.Logical = Logical(4) }, "inbound sa 0x00001001: logical SPU 4, the Child SA's is 3"},
		{func(r *ChildAdd) { r.Out.Dir = In }, `outbound sa 0x00002002: direction "in", want out`},
		{func(r *ChildAdd) { r.Out.EncKey = nil }, "outbound sa spi 0x00002002: suite"},
		{func(r *ChildAdd) { r.Out.Logical = Logical(0) }, "outbound sa 0x00002002: logical SPU 0, the Child SA's is 3"},
		{func(r *ChildAdd) { r.Out.ReqID = 6 }, "outbound sa 0x00002002: reqid 6, the inbound sa's is 5"},
		{func(r *ChildAdd) { r.Policy.Action = Bypass }, "protects through its reqid 5"},
		{func(r *ChildAdd) { r.Policy.ReqID = 6 }, "protects through its reqid 5"},
		{func(r *ChildAdd) { r.Policy.LocalTS = nil }, "needs local and remote selectors"},
		{func(r *ChildAdd) { r.Policy.Logical = Logical(9) }, "policy 0: logical SPU 9, the Child SA's is 3"},
	} {
		r := validChild()
		c.edit(r)
		if err := r.Validate(256); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
	out := &SAID{SPI: 0x2002, Dir: Out, Remote: netip.MustParseAddr("198.18.0.2")}
	for _, c := range []struct {
		req  ChildDel
		want string
	}{
		{ChildDel{}, "names nothing to remove"},
		{ChildDel{In: &SAID{SPI: 0x1001, Dir: Out}}, `inbound sa 0x00001001: direction "out"`},
		{ChildDel{Out: &SAID{SPI: 0x2002, Dir: Out}}, "outbound sa 0x00002002: want direction out and its remote"},
		{ChildDel{Out: &SAID{SPI: 0x2002, Dir: In, Remote: out.Remote}}, "outbound sa 0x00002002"},
		{ChildDel{Policies: []uint32{1}, Out: out, In: &SAID{SPI: 0x1001, Dir: In}}, ""},
	} {
		err := c.req.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.req, err, c.want)
		}
	}
}

// UnknownOp tells a spud's refusal of an operation it does not know from
// any other refusal.
func TestUnknownOp(t *testing.T) {
	unknown := fmt.Errorf("spud: child.add: %w", &unixrpc.Error{Code: unixrpc.CodeBadRequest, Message: `unknown operation "child.add"`})
	if !UnknownOp(unknown, OpChildAdd) || UnknownOp(unknown, OpChildDel) {
		t.Error("unknown operation child.add not told")
	}
	for _, err := range []error{nil, errors.New(`unknown operation "child.add"`),
		&unixrpc.Error{Code: unixrpc.CodeBadRequest, Message: "inbound sa 0x00001001: direction"},
		&unixrpc.Error{Code: unixrpc.CodeExists, Message: `unknown operation "child.add"`}} {
		if UnknownOp(err, OpChildAdd) {
			t.Errorf("%v taken for an unknown operation", err)
		}
	}
}
