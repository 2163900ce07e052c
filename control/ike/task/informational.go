package task

import (
	"fmt"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
)

// ChildDeleteI deletes Child SAs (RFC 7296 1.4.1): a DELETE with our inbound
// SPIs; the peer answers with its own, and both sides remove the pair.
type ChildDeleteI struct {
	children []*sa.ChildSA
	// spis are inbound SPIs of Child SAs the peer has and we never
	// installed.
	spis   []uint32
	reason string
	done   func(error)
}

// NewChildDeleteI prepares the deletion of Child SAs of one IKE SA.
func NewChildDeleteI(reason string, done func(error), children ...*sa.ChildSA) *ChildDeleteI {
	return &ChildDeleteI{children: children, reason: reason, done: done}
}

// Kind is KindChildDelete.
func (t *ChildDeleteI) Kind() Kind { return KindChildDelete }

// Abort reports the end of the IKE SA (which removes the Child SAs).
func (t *ChildDeleteI) Abort(err error) {
	if t.done != nil {
		t.done(nil)
		t.done = nil
	}
}

// Build lists the SPIs to delete; it fails when every Child SA is already
// gone (deleted by the peer meanwhile), and the task is then dropped.
func (t *ChildDeleteI) Build(c *Ctx, req *message.Message) error {
	d := &message.Delete{Protocol: suite.ProtocolESP}
	var live []*sa.ChildSA
	for _, ch := range t.children {
		if ch.State == sa.ChildDeleted {
			continue
		}
		ch.State = sa.ChildDeleting
		live = append(live, ch)
		d.SPIs = append(d.SPIs, ch.SPIIn)
	}
	t.children = live
	d.SPIs = append(d.SPIs, t.spis...)
	if len(d.SPIs) == 0 {
		t.Abort(nil)
		return fmt.Errorf("no child sa left to delete")
	}
	req.Inner = append(req.Inner, d)
	return nil
}

// Process removes the Child SAs once the peer confirmed.
func (t *ChildDeleteI) Process(c *Ctx, resp *message.Message) Status {
	for _, ch := range t.children {
		removeChild(c, ch, t.reason)
	}
	if t.done != nil {
		t.done(nil)
		t.done = nil
	}
	return Done
}

// removeChild uninstalls a Child SA and forgets it. A Child SA that
// replaces it and waits for its deletion to send (OutPending) gets its
// outbound SA first, so that there is no gap; the inbound SA of a replaced
// Child SA stays for the drain period.
func removeChild(c *Ctx, ch *sa.ChildSA, reason string) {
	succ := c.IKE.Successor(ch)
	if succ != nil && succ.OutPending {
		if err := InstallOutbound(c, succ); err != nil {
			c.Stats().Fail(stats.DataPlane)
			c.Log.Warn("child sa outbound not installed", "child", succ.Name, "child_id", succ.UniqueID, "err", err.Error())
		} else {
			logChild(c, succ, "child sa outbound installed", "replaces_spi_in", hex8(ch.SPIIn))
		}
	}
	if ch.State == sa.ChildDeleted {
		c.IKE.RemoveChild(ch)
		return
	}
	var drain time.Time
	if succ != nil && c.DrainDelay > 0 {
		drain = c.Now().Add(c.DrainDelay)
	}
	if err := uninstall(c.DataPlane(), c.IKE, ch, drain); err != nil {
		c.Stats().Fail(stats.DataPlane)
		c.Log.Warn("child sa removal incomplete", "child", ch.Name, "err", err.Error())
	}
	c.IKE.RemoveChild(ch)
	c.Stats().Inc(stats.ChildSAsDeleted)
	args := []any{"child", ch.Name, "child_id", ch.UniqueID, "spi_in", hex8(ch.SPIIn), "spi_out", hex8(ch.SPIOut), "reason", reason}
	if succ != nil {
		c.Stats().Inc(stats.ChildSAsRekeyed)
		args = append(args, "new_spi_in", hex8(succ.SPIIn), "new_spi_out", hex8(succ.SPIOut))
		if !drain.IsZero() {
			args = append(args, "inbound_drain", c.DrainDelay.String())
		}
	}
	if ch.Redundant {
		args = append(args, "redundant", true)
	}
	c.Log.Info("child sa deleted", args...)
}

// IKEDeleteI deletes the IKE SA and with it every Child SA.
type IKEDeleteI struct {
	reason string
	done   func(error)
}

// NewIKEDeleteI prepares the deletion of the IKE SA.
func NewIKEDeleteI(reason string) *IKEDeleteI { return &IKEDeleteI{reason: reason} }

// WithDone sets a function called once the IKE SA is gone.
func (t *IKEDeleteI) WithDone(done func(error)) *IKEDeleteI { t.done = done; return t }

// Reason says why the IKE SA is deleted.
func (t *IKEDeleteI) Reason() string { return t.reason }

// Kind is KindIKEDelete.
func (t *IKEDeleteI) Kind() Kind { return KindIKEDelete }

// Abort reports the end of the IKE SA, which is what was asked.
func (t *IKEDeleteI) Abort(error) {
	if t.done != nil {
		t.done(nil)
		t.done = nil
	}
}

// Build adds the DELETE of the IKE SA, which is Deleting from now on.
func (t *IKEDeleteI) Build(c *Ctx, req *message.Message) error {
	c.IKE.State = sa.Deleting
	req.Inner = append(req.Inner, &message.Delete{Protocol: suite.ProtocolIKE})
	return nil
}

// Process ends the IKE SA whatever the answer.
func (t *IKEDeleteI) Process(c *Ctx, resp *message.Message) Status { return Destroy }

// DPDI is a liveness check: an empty INFORMATIONAL request. No answer after
// the retransmissions means the peer is gone (the manager applies the
// children's dpd_action).
type DPDI struct{}

// Kind is KindDPD.
func (t *DPDI) Kind() Kind { return KindDPD }

// Abort does nothing: nothing waits for the task.
func (t *DPDI) Abort(error) {}

// Build adds nothing: the request is empty.
func (t *DPDI) Build(c *Ctx, req *message.Message) error { return nil }

// Process is done with any answer: the peer is alive.
func (t *DPDI) Process(c *Ctx, resp *message.Message) Status { return Done }

// Kind is KindInfo.
func (t *NotifyI) Kind() Kind { return KindInfo }

// Abort does nothing: nothing waits for the task.
func (t *NotifyI) Abort(error) {}

// Process ends the IKE SA whatever the answer: the notify was the last word.
func (t *NotifyI) Process(c *Ctx, resp *message.Message) Status { return Destroy }

// Build adds the notify.
func (t *NotifyI) Build(c *Ctx, req *message.Message) error {
	req.Inner = append(req.Inner, t.N)
	return nil
}

// Kind is KindInfo.
func (t *InfoR) Kind() Kind { return KindInfo }

// Abort does nothing: nothing waits for the task.
func (t *InfoR) Abort(error) {}

// String names the task in logs.
func (t *ChildDeleteI) String() string { return "child delete: " + t.reason }

// String names the task in logs.
func (t *IKEDeleteI) String() string { return "ike delete: " + t.reason }

// String names the task in logs.
func (t *DPDI) String() string { return "dpd" }

// String names the task in logs.
func (t *NotifyI) String() string { return "notify " + t.N.NotifyType.String() }

// String names the task in logs.
func (t *InfoR) String() string { return "informational" }

// String names the task in logs.
func (t *ChildCreateI) String() string { return "child create " + t.child.Name }

// String names the task in logs.
func (t *IKEInitI) String() string { return "ike init" }

// String names the task in logs.
func (t *IKEAuthI) String() string { return "ike auth" }

// NotifyI sends one notify in an INFORMATIONAL request: the initiator's
// AUTHENTICATION_FAILED after it refused the responder (RFC 7296 2.21.2).
type NotifyI struct {
	// N is the notify sent.
	N *message.Notify
}

// InfoR answers an INFORMATIONAL request: DELETEs of the IKE SA or of Child
// SAs, error notifies about the IKE SA, and liveness checks (empty).
type InfoR struct {
	deleteIKE bool
	failed    *message.Notify
	children  []*sa.ChildSA
}

// Process reads the request: the DELETEs (Child SAs by the SPI the peer
// knows them by), the first error notify, or nothing (a liveness check).
func (t *InfoR) Process(c *Ctx, req *message.Message) Status {
	ike := c.IKE
	for _, p := range req.Inner {
		switch p := p.(type) {
		case *message.Delete:
			switch p.Protocol {
			case suite.ProtocolIKE:
				t.deleteIKE = true
			case suite.ProtocolESP:
				for _, spi := range p.SPIs {
					if ch := ike.ChildByOutSPI(spi); ch != nil {
						t.children = append(t.children, ch)
					} else {
						for _, r := range activeChildRekeys(c) {
							r.deleted = append(r.deleted, spi)
						}
					}
				}
			}
		case *message.Notify:
			if p.NotifyType.IsError() && t.failed == nil {
				t.failed = p
			}
		}
	}
	if t.failed != nil {
		r := stats.PeerError
		if t.failed.NotifyType == message.AuthenticationFailed {
			r = stats.AuthFailed
		}
		c.Fail(r, 0, "peer reports %s", t.failed.NotifyType)
		return Failed
	}
	if t.deleteIKE {
		return Destroy
	}
	return Done
}

// Build answers: the DELETE of our SPIs of the Child SAs the peer deleted
// (removed here, a rekey of ours settled first), nothing for the IKE SA
// or a liveness check.
func (t *InfoR) Build(c *Ctx, resp *message.Message) Status {
	switch {
	case t.failed != nil:
		return Failed
	case t.deleteIKE:
		if r := activeIKERekey(c); r != nil {
			// The peer deletes the IKE SA we are rekeying: if it rekeyed it
			// too (and won), its replacement takes the Child SAs.
			r.peerDeleted(c)
		}
		if c.IKE.State != sa.Rekeyed {
			c.IKE.State = sa.Deleting
		}
		return Destroy
	case len(t.children) > 0:
		d := &message.Delete{Protocol: suite.ProtocolESP}
		for _, ch := range t.children {
			// A Child SA we are deleting ourselves (the requests crossed)
			// is removed but not listed (RFC 7296 1.4.1).
			if ch.State != sa.ChildDeleting {
				d.SPIs = append(d.SPIs, ch.SPIIn)
			}
			if r := activeRekey(c, ch); r != nil {
				// The peer deletes the Child SA we are rekeying. If it has
				// a replacement of ours (it rekeyed it and won), that one
				// takes over now; otherwise the old one stays until our
				// rekey settles (RFC 7296 2.25.1).
				r.oldDeleted = true
				if p := r.passive; p != nil && p.State != sa.ChildDeleted && p.State != sa.ChildDeleting {
					removeChild(c, ch, "rekeyed by peer")
				} else {
					c.Log.Info("peer deletes the child sa we are rekeying; kept until our rekey settles", "child", ch.Name,
						"spi_in", hex8(ch.SPIIn))
				}
				continue
			}
			removeChild(c, ch, "deleted by peer")
		}
		if len(d.SPIs) > 0 {
			resp.Inner = append(resp.Inner, d)
		}
	}
	return Done
}
