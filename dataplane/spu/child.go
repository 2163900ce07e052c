package spu

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/internal/unixrpc"
)

// AddChild installs a Child SA's inbound SA, its outbound SA (unless out
// is nil) and its policy (unless p is nil) on the SPU of logical, in one
// command: the SPU, and so its packets, see all of them or none. Any part
// refused (invalid, a duplicate, an SPI that does not encode logical)
// leaves nothing installed, and the error names the part. The policy
// comes back with its id and logical SPU filled in.
func (e *Engine) AddChild(logical uint16, in, out *api.SA, p *api.Policy) (pol api.Policy, spu int, err error) {
	if int(logical) >= e.fn.L() {
		return pol, 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "child sa 0x%08x: logical SPU %d out of range (0..%d)", in.SPI, logical, e.fn.L()-1)
	}
	if l := e.fn.LogicalSPI(in.SPI); l != logical {
		return pol, 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "inbound sa 0x%08x: the SPI encodes logical SPU %d, where its packets are steered, not the Child SA's %d", in.SPI, l, logical)
	}
	inCS, inDesc, err := e.childSA(logical, in, api.In, "inbound")
	if err != nil {
		return pol, 0, err
	}
	var outCS *esp.SA
	var outDesc saDesc
	if out != nil {
		if outCS, outDesc, err = e.childSA(logical, out, api.Out, "outbound"); err != nil {
			return pol, 0, err
		}
	}
	// The policy is compiled right after the SAs, whose selectors it
	// then shares (esp.CompileSelectors); its id comes below.
	var x *policy
	if p != nil {
		pol = *p
		if err := pol.Validate(); err != nil {
			return pol, 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
		}
		pol.Logical = api.Logical(int(logical))
		canonicalPolicy(&pol)
		x = newPolicy(&pol, logical)
	}

	inRef, outRef := refOf(in), saRef{}
	e.mu.Lock()
	if _, dup := e.sas[inRef]; dup {
		e.mu.Unlock()
		return pol, 0, fmt.Errorf("inbound sa 0x%08x: %w", in.SPI, unixrpc.ErrExists)
	}
	if out != nil {
		outRef = refOf(out)
		if _, dup := e.sas[outRef]; dup {
			e.mu.Unlock()
			return pol, 0, fmt.Errorf("outbound sa 0x%08x to %s: %w", out.SPI, out.Remote, unixrpc.ErrExists)
		}
	}
	if p != nil {
		if pol.ID == 0 {
			pol.ID = e.freePolicyID()
		} else if _, dup := e.policies[pol.ID]; dup {
			e.mu.Unlock()
			return pol, 0, fmt.Errorf("policy %d: %w", pol.ID, unixrpc.ErrExists)
		}
		e.policies[pol.ID] = newReg(logical, e.polOrder.add(pol.ID))
	}
	e.sas[inRef] = newReg(logical, e.saOrder.add(inRef))
	if out != nil {
		e.sas[outRef] = newReg(logical, e.saOrder.add(outRef))
	}
	e.mu.Unlock()

	if x != nil {
		x.id = pol.ID
	}
	spu = e.physical(logical)
	err = e.doTables(spu, func(s *SPU) {
		s.t.addIn(&inSA{sa: inCS, desc: inDesc, logical: logical})
		if outCS != nil {
			s.t.addOut(&outSA{sa: outCS, desc: outDesc, logical: logical})
		}
		if x != nil {
			s.t.addPolicy(x)
		}
	})
	if err != nil {
		e.mu.Lock()
		e.saOrder.del(e.sas[inRef].seq())
		delete(e.sas, inRef)
		if out != nil {
			e.saOrder.del(e.sas[outRef].seq())
			delete(e.sas, outRef)
		}
		if p != nil {
			e.polOrder.del(e.policies[pol.ID].seq())
			delete(e.policies, pol.ID)
		}
		e.mu.Unlock()
		return pol, spu, err
	}
	return pol, spu, nil
}

// childSA builds the cipher state and the keyless description of one SA
// of a Child SA anchored on logical; errors name the part (which).
func (e *Engine) childSA(logical uint16, d *api.SA, dir api.Dir, which string) (*esp.SA, saDesc, error) {
	if d.Dir != dir {
		return nil, saDesc{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s sa 0x%08x: direction %q, want %s", which, d.SPI, d.Dir, dir)
	}
	if err := d.Validate(); err != nil {
		return nil, saDesc{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s %w", which, err)
	}
	if d.Logical != nil && *d.Logical != int(logical) {
		return nil, saDesc{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s sa 0x%08x: logical SPU %d, the Child SA's is %d", which, d.SPI, *d.Logical, logical)
	}
	cfg, err := ToESP(d)
	if err != nil {
		return nil, saDesc{}, fmt.Errorf("%s %w", which, err)
	}
	if dir == api.Out {
		cfg.SpeedPad = e.cfg.SpeedPad
	}
	sa, err := esp.NewSA(cfg)
	if err != nil {
		return nil, saDesc{}, fmt.Errorf("%s sa 0x%08x: %w", which, d.SPI, err)
	}
	return sa, saDesc{reqid: d.ReqID, window: int32(d.ReplayWindow), name: d.Name}, nil
}

// freePolicyID is the next policy id not in use (e.mu held).
func (e *Engine) freePolicyID() uint32 {
	for {
		e.nextPol++
		if e.nextPol == 0 {
			e.nextPol = 1
		}
		if _, used := e.policies[e.nextPol]; !used {
			return e.nextPol
		}
	}
}

// RemovedPolicy is a policy DelChild removed, for the caller's own
// tables (spud's steering entries).
type RemovedPolicy struct {
	Policy  api.Policy // the policy
	Logical uint16     // the logical SPU it was anchored on
}

// ChildRemoved is what DelChild removed: the caller's tables follow.
type ChildRemoved struct {
	Policies []RemovedPolicy // the policies removed
	In, Out  bool            // the inbound, the outbound SA was removed
}

// DelChild removes the policies, the outbound SA (named with its remote)
// and the inbound SA of a Child SA, each optional, with one command per
// SPU they are on (one: a Child SA's are anchored together, but a policy
// handed over from an IKE SA anchored elsewhere is not). Whatever is
// there is removed; the parts that are not are named in the error, which
// then has unixrpc.ErrNotFound in its chain.
func (e *Engine) DelChild(policies []uint32, out, in *api.SAID) (ChildRemoved, error) {
	type part struct {
		spu     int
		polID   uint32
		isSA    bool
		ref     saRef
		logical uint16
		pol     int // the policy's index in removed.Policies
	}
	var parts []part
	var removed ChildRemoved
	var missing []string
	e.mu.Lock()
	for _, id := range policies {
		ref, ok := e.policies[id]
		if !ok {
			missing = append(missing, fmt.Sprintf("policy %d", id))
			continue
		}
		e.polOrder.del(ref.seq())
		delete(e.policies, id)
		// The registry keeps no copy of the policy: the SPU's is read as
		// it is removed.
		removed.Policies = append(removed.Policies, RemovedPolicy{Policy: api.Policy{ID: id}, Logical: ref.logical()})
		parts = append(parts, part{polID: id, logical: ref.logical(), pol: len(removed.Policies) - 1})
	}
	for _, id := range []*api.SAID{out, in} {
		if id == nil {
			continue
		}
		ref := idRef(*id)
		reg, ok := e.sas[ref]
		if !ok {
			missing = append(missing, fmt.Sprintf("sa spi 0x%08x %s", id.SPI, id.Dir))
			continue
		}
		e.saOrder.del(reg.seq())
		delete(e.sas, ref)
		parts = append(parts, part{isSA: true, ref: ref, logical: reg.logical()})
		if id.Dir == api.In {
			removed.In = true
		} else {
			removed.Out = true
		}
	}
	e.mu.Unlock()
	for i := range parts {
		parts[i].spu = e.physical(parts[i].logical)
	}
	var failed []string
	for len(parts) > 0 {
		spu := parts[0].spu
		var here, rest []part
		for _, p := range parts {
			if p.spu == spu {
				here = append(here, p)
			} else {
				rest = append(rest, p)
			}
		}
		parts = rest
		if err := e.doTables(spu, func(s *SPU) {
			for _, p := range here {
				switch {
				case !p.isSA:
					if x := s.t.policies[p.polID]; x != nil {
						removed.Policies[p.pol].Policy = x.api()
					}
					s.t.delPolicy(p.polID)
				case p.ref.dir == refIn:
					s.t.delIn(p.ref.spi)
				default:
					s.t.delOut(outKey{p.ref.spi, p.ref.remote})
				}
			}
		}); err != nil {
			failed = append(failed, err.Error())
		}
	}
	switch {
	case len(failed) > 0:
		// Taken out of the registry, the parts are gone for the API;
		// an SPU that does not run commands is being failed over.
		return removed, errors.New(strings.Join(append(failed, missing...), "; "))
	case len(missing) > 0:
		return removed, fmt.Errorf("%s: %w", strings.Join(missing, ", "), unixrpc.ErrNotFound)
	}
	return removed, nil
}
