package task

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/dataplane/api"
)

// childDP is fakeDP with child.add and child.del: all or nothing, each
// part refused as fakeDP would refuse its separate call, and counting
// the calls of each kind. old makes it a data plane without them.
type childDP struct {
	*fakeDP
	old   bool
	calls map[string]int
}

func (d *childDP) AddSA(s *api.SA) error {
	d.calls["sa.add"]++
	return d.fakeDP.AddSA(s)
}

func (d *childDP) DelSA(id api.SAID) error {
	d.calls["sa.del"]++
	return d.fakeDP.DelSA(id)
}

func (d *childDP) AddPolicy(p *api.Policy) (uint32, error) {
	d.calls["policy.add"]++
	return d.fakeDP.AddPolicy(p)
}

func (d *childDP) DelPolicy(id uint32) error {
	d.calls["policy.del"]++
	return d.fakeDP.DelPolicy(id)
}

func (d *childDP) AddChild(req *api.ChildAdd) (uint32, error) {
	d.calls["child.add"]++
	if d.old {
		return 0, ErrNoChildOps
	}
	if err := req.Validate(256); err != nil {
		return 0, err
	}
	// Every part is checked before any goes in.
	if err := d.failAdd[api.In]; err != nil {
		return 0, fmt.Errorf("inbound: %w", err)
	}
	if _, ok := d.SAs[d.key(&req.In)]; ok {
		return 0, fmt.Errorf("inbound sa %08x exists", req.In.SPI)
	}
	if req.Out != nil {
		if err := d.failAdd[api.Out]; err != nil {
			return 0, fmt.Errorf("outbound: %w", err)
		}
		if _, ok := d.SAs[d.key(req.Out)]; ok {
			return 0, fmt.Errorf("outbound sa %08x exists", req.Out.SPI)
		}
	}
	if req.Policy != nil && d.failPolicy != nil {
		return 0, fmt.Errorf("policy: %w", d.failPolicy)
	}
	d.SAs[d.key(&req.In)] = req.In
	if req.Out != nil {
		d.SAs[d.key(req.Out)] = *req.Out
	}
	if req.Policy == nil {
		return 0, nil
	}
	return d.fakeDP.AddPolicy(req.Policy)
}

func (d *childDP) DelChild(req *api.ChildDel) error {
	d.calls["child.del"]++
	if d.old {
		return ErrNoChildOps
	}
	if err := req.Validate(); err != nil {
		return err
	}
	var errs []error
	for _, id := range req.Policies {
		errs = append(errs, d.fakeDP.DelPolicy(id))
	}
	for _, id := range []*api.SAID{req.Out, req.In} {
		if id != nil {
			errs = append(errs, d.fakeDP.DelSA(*id))
		}
	}
	return errors.Join(errs...)
}

// anchoredHarness is newHarness with an IKE SA anchored on logical SPU 9
// and childDP as its data plane.
func anchoredHarness(t *testing.T, old bool) (*harness, *childDP) {
	h := newHarness(t)
	h.ike.Anchored, h.ike.Logical = true, 9
	dp := &childDP{fakeDP: h.env.dp, old: old, calls: map[string]int{}}
	h.env.dpOver = dp
	return h, dp
}

// An anchored IKE SA's Child SA goes into a ChildDataPlane in one call,
// inbound SA, outbound SA and policy anchored on its logical SPU, and
// comes out in one.
func TestInstallOneCall(t *testing.T) {
	h, dp := anchoredHarness(t, false)
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
	}
	if len(dp.calls) != 1 || dp.calls["child.add"] != 1 {
		t.Errorf("calls %v, want one child.add", dp.calls)
	}
	ch := h.ike.Children[0]
	if len(dp.SAs) != 2 || len(dp.Policies) != 1 || len(ch.PolicyIDs) != 1 || ch.State != sa.ChildInstalled {
		t.Fatalf("data plane: %d SAs, %d policies; child policies %v state %v", len(dp.SAs), len(dp.Policies), ch.PolicyIDs, ch.State)
	}
	for _, s := range dp.SAs {
		if s.Logical == nil || *s.Logical != 9 {
			t.Errorf("sa %08x %s anchored on %v, want 9", s.SPI, s.Dir, s.Logical)
		}
	}
	if p := dp.Policies[ch.PolicyIDs[0]]; p.Logical == nil || *p.Logical != 9 || p.ReqID != ch.ReqID {
		t.Errorf("policy %+v", p)
	}
	clear(dp.calls)
	if err := Uninstall(dp, h.ike, ch); err != nil {
		t.Fatal(err)
	}
	if len(dp.calls) != 1 || dp.calls["child.del"] != 1 || len(dp.SAs)+len(dp.Policies) != 0 || ch.State != sa.ChildDeleted {
		t.Errorf("uninstall: calls %v, left %d SAs and %d policies, state %v", dp.calls, len(dp.SAs), len(dp.Policies), ch.State)
	}
}

// A refusal of any part of child.add is the Child SA's: refused to the
// peer, nothing in the data plane, and no separate calls to make up for
// it.
func TestInstallOneCallFailureLeavesNothing(t *testing.T) {
	for name, fail := range map[string]func(*fakeDP){
		"inbound":  func(d *fakeDP) { d.failAdd[api.In] = errRefused },
		"outbound": func(d *fakeDP) { d.failAdd[api.Out] = errRefused },
		"policy":   func(d *fakeDP) { d.failPolicy = errRefused },
	} {
		t.Run(name, func(t *testing.T) {
			h, dp := anchoredHarness(t, false)
			fail(dp.fakeDP)
			_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
			h.refused(t, resp, message.NoAdditionalSAs)
			h.logHas(t, "notify=NO_ADDITIONAL_SAS", name+": refused by the test")
			if len(dp.calls) != 1 || dp.calls["child.add"] != 1 {
				t.Errorf("calls %v, want the one child.add", dp.calls)
			}
		})
	}
}

// A data plane without child.add (a spud older than it) gets the
// separate calls, and so does the Child SA of an IKE SA without an
// anchor, which child.add needs.
func TestInstallSeparateCalls(t *testing.T) {
	for name, mk := range map[string]func(t *testing.T) (*harness, *childDP){
		"older spud": func(t *testing.T) (*harness, *childDP) { return anchoredHarness(t, true) },
		"no anchor": func(t *testing.T) (*harness, *childDP) {
			h, dp := anchoredHarness(t, false)
			h.ike.Anchored = false
			return h, dp
		},
	} {
		t.Run(name, func(t *testing.T) {
			h, dp := mk(t)
			_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
			if n := notifyIn(resp); n != nil {
				t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
			}
			if dp.calls["sa.add"] != 2 || dp.calls["policy.add"] != 1 || len(dp.SAs) != 2 || len(dp.Policies) != 1 {
				t.Errorf("calls %v, data plane %d SAs %d policies: want the separate calls", dp.calls, len(dp.SAs), len(dp.Policies))
			}
			clear(dp.calls)
			if err := Uninstall(dp, h.ike, h.ike.Children[0]); err != nil {
				t.Fatal(err)
			}
			if len(dp.SAs)+len(dp.Policies) != 0 {
				t.Errorf("uninstall left %d SAs, %d policies (calls %v)", len(dp.SAs), len(dp.Policies), dp.calls)
			}
			if name == "older spud" && (dp.calls["sa.del"] != 2 || dp.calls["policy.del"] != 1) {
				t.Errorf("uninstall calls %v, want the separate calls", dp.calls)
			}
		})
	}
}

// A Child SA removed with its inbound SA left to drain: child.del takes
// the policy and the outbound SA, the inbound SA stays, listed to drain.
func TestUninstallOneCallDrains(t *testing.T) {
	h, dp := anchoredHarness(t, false)
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s", n.NotifyType)
	}
	ch := h.ike.Children[0]
	clear(dp.calls)
	if err := UninstallDrained(dp, h.ike, ch, h.ike, epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, in := dp.SAs[api.SAID{SPI: ch.SPIIn, Dir: api.In}]
	if dp.calls["child.del"] != 1 || len(dp.calls) != 1 || len(dp.SAs) != 1 || !in || len(dp.Policies) != 0 ||
		len(h.ike.Draining) != 1 || h.ike.Draining[0].SPI != ch.SPIIn {
		t.Errorf("calls %v, %d SAs (inbound %v), %d policies, draining %v", dp.calls, len(dp.SAs), in, len(dp.Policies), h.ike.Draining)
	}
}
