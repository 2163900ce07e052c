package spud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/unixrpc"
)

// childSteering is what the SA and Child SA operations change in the
// steering program besides the SPUs' tables: the local endpoints it takes
// ESP for and the SPD entries of policies.
type childSteering interface {
	spdProgram
	AddLocalAddr(netip.Addr) error
	DeleteLocalAddr(netip.Addr) error
}

// steering is the steering program the SA and Child SA operations write
// to.
func (d *Daemon) steering() childSteering {
	if d.steerFake != nil {
		return d.steerFake
	}
	return d.prog
}

// addChild serves child.add: a Child SA's inbound SA, outbound SA and
// policy as one command on their SPU, then the policy's steering entries
// and the inbound SA's local endpoint. Any part refused undoes the others
// (SPU command and steering entries), so iked never has half a Child SA
// to clean up.
func (d *Daemon) addChild(req *api.ChildAdd) (api.ChildAddReply, error) {
	if err := req.Validate(d.fn.L()); err != nil {
		return api.ChildAddReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	if req.Policy != nil {
		if err := d.checkInterfaces(req.Policy); err != nil {
			return api.ChildAddReply{}, err
		}
	}
	d.mu.Lock()
	dup := d.inSPIs[req.In.SPI].IsValid()
	d.mu.Unlock()
	if dup {
		return api.ChildAddReply{}, fmt.Errorf("inbound sa 0x%08x: %w", req.In.SPI, unixrpc.ErrExists)
	}
	logical := uint16(req.Logical)
	pol, spuID, err := d.eng.AddChild(logical, &req.In, req.Out, req.Policy)
	if err != nil {
		return api.ChildAddReply{}, err
	}
	prog := d.steering()
	if req.Policy != nil {
		entries := d.steerEntries(pol, logical)
		for i, e := range entries {
			err := d.spd.add(prog, e)
			if err == nil {
				continue
			}
			for _, done := range entries[:i] {
				d.spd.del(prog, done)
			}
			var out *api.SAID
			if req.Out != nil {
				out = &api.SAID{SPI: req.Out.SPI, Dir: api.Out, Remote: req.Out.Remote}
			}
			if _, derr := d.eng.DelChild([]uint32{pol.ID}, out, &api.SAID{SPI: req.In.SPI, Dir: api.In}); derr != nil {
				d.log.Error("spud: child.add: undoing a refused child sa", "spi", fmt.Sprintf("0x%08x", req.In.SPI), "err", derr.Error())
			}
			var full *steer.TableFullError
			if errors.As(err, &full) {
				d.policyTableFull.Add(1)
				d.log.Warn("spud: child sa refused: policy table full", "spi", fmt.Sprintf("0x%08x", req.In.SPI), "local", e.Local.String(), "remote", e.Remote.String(), "err", full.Error())
				return api.ChildAddReply{}, unixrpc.Errorf(unixrpc.CodeExhausted, "policy %d: %s", pol.ID, tableFullText(full))
			}
			return api.ChildAddReply{}, fmt.Errorf("policy %d: steering entry %s -> %s: %w", pol.ID, e.Local, e.Remote, err)
		}
	}
	d.inAdded(prog, &req.In)
	if req.Out != nil {
		d.resolveSoon(req.Out.Remote)
	}
	// At debug level (-v): iked logs its Child SAs, and a line of text a
	// Child SA was a tenth of spud's CPU for installing it.
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("spud: child sa added", "in", fmt.Sprintf("0x%08x", req.In.SPI), "out", outSPI(req.Out), "policy", pol.ID,
			"suite", req.In.Suite, "local", req.In.Local, "remote", req.In.Remote, "encap", req.In.Encap != nil, "reqid", req.In.ReqID,
			"logical", logical, "spu", spuID, "name", req.In.Name)
	}
	return api.ChildAddReply{PolicyID: pol.ID, Logical: int(logical), SPU: spuID}, nil
}

// resolveSoon resolves the next hop to remote now rather than on the
// first packet, in the background, unless it is resolved already: a
// goroutine for each of the Child SAs to one peer (a load generator's
// thousands) cost more than the lookup that spares it.
func (d *Daemon) resolveSoon(remote netip.Addr) {
	if d.fib == nil {
		return
	}
	if nh, ok := d.fib.Lookup(remote); ok && (nh.Resolved || nh.Local) {
		return
	}
	go d.fib.WaitResolved(remote, 3*time.Second)
}

// outSPI is an optional outbound SA's SPI for the log ("none" without).
func outSPI(s *api.SA) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("0x%08x", s.SPI)
}

// delChild serves child.del: the policies, outbound and inbound SA named,
// with one command per SPU they are on, then their steering entries and
// the inbound SA's local endpoint.
func (d *Daemon) delChild(req *api.ChildDel) error {
	if err := req.Validate(); err != nil {
		return unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	var local localID
	if req.In != nil {
		d.mu.Lock()
		local = d.inSPIs[req.In.SPI]
		d.mu.Unlock()
	}
	removed, err := d.eng.DelChild(req.Policies, req.Out, req.In)
	prog := d.steering()
	for _, rp := range removed.Policies {
		for _, e := range d.steerEntries(rp.Policy, rp.Logical) {
			if serr := d.spd.del(prog, e); serr != nil {
				d.log.Warn("spud: steering entry of a deleted policy", "id", rp.Policy.ID, "local", e.Local.String(), "remote", e.Remote.String(), "err", serr.Error())
			}
		}
	}
	if removed.In {
		d.inRemoved(prog, req.In.SPI, local)
	}
	d.log.Debug("spud: child sa deleted", "policies", len(removed.Policies), "out", removed.Out, "in", removed.In)
	return err
}
