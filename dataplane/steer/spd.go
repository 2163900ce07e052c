package steer

import (
	"fmt"
	"net/netip"
)

// Policy is an SPD entry as the steering program sees it: cleartext that
// arrives on interface Ifindex with a source in Local and a destination in
// Remote is steered to the tunnel's anchor SPU.
//
// Protocol and ports are not looked at in XDP: userspace does the exact SPD
// match after steering.
type Policy struct {
	Ifindex    int          // the protected interface the cleartext arrives on
	Local      netip.Prefix // local traffic selector: the packet's source
	Remote     netip.Prefix // remote traffic selector: the packet's destination
	ID         uint32       // reported in the metadata (Meta.PolicyID)
	LogicalSPU uint16       // the tunnel's anchor: anchor.Function.Logical of its endpoints
	Bypass     bool         // matching packets go to the kernel, counted PassBypass
}

type policyKey struct {
	ifindex       int
	local, remote netip.Prefix
}

func (p *Policy) key() policyKey { return policyKey{p.Ifindex, p.Local, p.Remote} }

// normalize checks p and masks its prefixes.
func (p Policy) normalize() (Policy, error) {
	if p.Ifindex <= 0 {
		return p, fmt.Errorf("steer: policy %d: ifindex %d is not an interface", p.ID, p.Ifindex)
	}
	if !p.Local.IsValid() || !p.Remote.IsValid() {
		return p, fmt.Errorf("steer: policy %d: invalid traffic selector %v -> %v", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Is4In6() || p.Remote.Addr().Is4In6() {
		return p, fmt.Errorf("steer: policy %d: v4-mapped selector %v -> %v: use IPv4 prefixes", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Is4() != p.Remote.Addr().Is4() {
		return p, fmt.Errorf("steer: policy %d: selectors %v -> %v mix IPv4 and IPv6", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Zone() != "" || p.Remote.Addr().Zone() != "" {
		return p, fmt.Errorf("steer: policy %d: selectors %v -> %v have a zone", p.ID, p.Local, p.Remote)
	}
	p.Local, p.Remote = p.Local.Masked(), p.Remote.Masked()
	return p, nil
}

// The SPD in the maps, in two LPM stages: (ifindex, destination prefix) ->
// group, (group, source prefix) -> policy. The lookup in XDP takes the
// longest destination match first and only then looks at the source, so on
// its own it would miss a policy whose destination prefix is wider than
// another policy's, for a source only the wider one covers. spdTable
// compensates: each group holds the policies of its own destination prefix
// and of every wider destination prefix of the same interface, so the
// lookup finds a policy covering both addresses whenever one exists. Among
// several it takes the longest source prefix, then the longest destination
// prefix; the SPD's own order is userspace's business.
type spdTable struct {
	policies map[policyKey]Policy

	groups    map[groupKey]uint32 // allocated groups: destination -> group
	owner     map[uint32]groupKey // group -> its destination
	dst       map[groupKey]bool   // installed stage 1
	src       map[srcKey]spdValue // installed stage 2
	nextGroup uint32
	free      []uint32
}

type groupKey struct {
	ifindex int
	dst     netip.Prefix
}

type srcKey struct {
	group uint32
	src   netip.Prefix
}

type spdValue struct {
	id      uint32
	logical uint16
	flags   uint16
}

// spdWriter is where spdTable puts its entries: the BPF maps, or a fake.
type spdWriter interface {
	putDst(k groupKey, group uint32) error
	delDst(k groupKey) error
	putSrc(k srcKey, v spdValue) error
	delSrc(k srcKey) error
}

func newSPDTable() spdTable {
	return spdTable{
		policies: make(map[policyKey]Policy),
		groups:   make(map[groupKey]uint32),
		owner:    make(map[uint32]groupKey),
		dst:      make(map[groupKey]bool),
		src:      make(map[srcKey]spdValue),
	}
}

func (p *Policy) value() spdValue {
	v := spdValue{id: p.ID, logical: p.LogicalSPU}
	if p.Bypass {
		v.flags |= policyBypass
	}
	return v
}

const policyBypass = 0x1 // SPUGATE_POLICY_BYPASS

// desired computes stage 1 and stage 2 for one interface and family.
// Stage 2 is keyed by destination prefix here; groups come later.
func (t *spdTable) desired(ifindex int, is4 bool) map[netip.Prefix]map[netip.Prefix]spdValue {
	var pols []Policy
	dsts := make(map[netip.Prefix]map[netip.Prefix]spdValue)
	for _, p := range t.policies {
		if p.Ifindex == ifindex && p.Remote.Addr().Is4() == is4 {
			pols = append(pols, p)
			dsts[p.Remote] = nil
		}
	}
	for d := range dsts {
		entries := make(map[netip.Prefix]spdValue)
		best := make(map[netip.Prefix]int) // source prefix -> destination bits of the chosen policy
		for i := range pols {
			p := &pols[i]
			// p's destination covers the whole group when it is at most
			// as long and contains the group's prefix.
			if p.Remote.Bits() > d.Bits() || !p.Remote.Contains(d.Addr()) {
				continue
			}
			if b, ok := best[p.Local]; ok && b >= p.Remote.Bits() {
				continue
			}
			best[p.Local] = p.Remote.Bits()
			entries[p.Local] = p.value()
		}
		dsts[d] = entries
	}
	return dsts
}

// sync brings the installed entries of (ifindex, family) to the desired
// ones through w, in an order that never leaves a lookup pointing at a
// group without its entries: new stage-2 entries first, then stage 1, then
// removals of stage 1, then of stage 2.
func (t *spdTable) sync(w spdWriter, ifindex int, is4 bool) error {
	want := t.desired(ifindex, is4)

	// Groups for new destinations.
	for d := range want {
		gk := groupKey{ifindex, d}
		if _, ok := t.groups[gk]; ok {
			continue
		}
		var g uint32
		if n := len(t.free); n > 0 {
			g, t.free = t.free[n-1], t.free[:n-1]
		} else {
			t.nextGroup++
			g = t.nextGroup
		}
		t.owner[g] = gk
		t.groups[gk] = g // allocated; its stage-1 entry is put after its stage-2 entries
	}

	// 1. Stage-2 additions and changes.
	for d, entries := range want {
		g := t.groups[groupKey{ifindex, d}]
		for s, v := range entries {
			sk := srcKey{g, s}
			if old, ok := t.src[sk]; ok && old == v {
				continue
			}
			if err := w.putSrc(sk, v); err != nil {
				return err
			}
			t.src[sk] = v
		}
	}
	// 2. Stage 1 for new groups.
	for d := range want {
		gk := groupKey{ifindex, d}
		if t.dst[gk] {
			continue
		}
		if err := w.putDst(gk, t.groups[gk]); err != nil {
			return err
		}
		t.dst[gk] = true
	}
	// 3. Stage-1 removals, 4. then stage-2 removals.
	var dropped []uint32
	for gk, g := range t.groups {
		if gk.ifindex != ifindex || gk.dst.Addr().Is4() != is4 {
			continue
		}
		if _, ok := want[gk.dst]; ok {
			continue
		}
		if t.dst[gk] {
			if err := w.delDst(gk); err != nil {
				return err
			}
			delete(t.dst, gk)
		}
		delete(t.groups, gk)
		dropped = append(dropped, g)
	}
	for sk := range t.src {
		gk, ok := t.owner[sk.group]
		if !ok || gk.ifindex != ifindex || gk.dst.Addr().Is4() != is4 {
			continue
		}
		if t.groups[gk] == sk.group {
			if _, keep := want[gk.dst][sk.src]; keep {
				continue
			}
		}
		if err := w.delSrc(sk); err != nil {
			return err
		}
		delete(t.src, sk)
	}
	for _, g := range dropped {
		delete(t.owner, g)
		t.free = append(t.free, g)
	}
	return nil
}

// set adds or replaces a policy and syncs its interface and family. On a
// write error the policy change is undone (and synced back, best effort).
func (t *spdTable) set(w spdWriter, p Policy) error {
	p, err := p.normalize()
	if err != nil {
		return err
	}
	k := p.key()
	old, had := t.policies[k]
	t.policies[k] = p
	if err := t.sync(w, p.Ifindex, p.Remote.Addr().Is4()); err != nil {
		if had {
			t.policies[k] = old
		} else {
			delete(t.policies, k)
		}
		_ = t.sync(w, p.Ifindex, p.Remote.Addr().Is4())
		return fmt.Errorf("steer: policy %d %v -> %v on ifindex %d: %w", p.ID, p.Local, p.Remote, p.Ifindex, err)
	}
	return nil
}

// delete removes the policy with these selectors, if any.
func (t *spdTable) delete(w spdWriter, ifindex int, local, remote netip.Prefix) error {
	k := policyKey{ifindex, local.Masked(), remote.Masked()}
	old, had := t.policies[k]
	if !had {
		return fmt.Errorf("steer: no policy %v -> %v on ifindex %d", local, remote, ifindex)
	}
	delete(t.policies, k)
	if err := t.sync(w, ifindex, remote.Addr().Is4()); err != nil {
		t.policies[k] = old
		_ = t.sync(w, ifindex, remote.Addr().Is4())
		return fmt.Errorf("steer: delete policy %d %v -> %v on ifindex %d: %w", old.ID, local, remote, ifindex, err)
	}
	return nil
}

// list returns the policies.
func (t *spdTable) list() []Policy {
	out := make([]Policy, 0, len(t.policies))
	for _, p := range t.policies {
		out = append(out, p)
	}
	return out
}
