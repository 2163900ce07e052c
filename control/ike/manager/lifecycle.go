package manager

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

func (m *Manager) established() {
	ike := m.IKE
	m.halfOpenUntil = 0
	// What only IKE_AUTH needed (AUTH signs the IKE_SA_INIT messages and
	// nonces; the first Child SA's keys take the nonces): about a
	// kilobyte per IKE SA, held for its life. A restored IKE SA never had
	// them (they are not persisted).
	ike.HS = nil
	// Nor will the IKE SA sign or check an AUTH again, and the ciphers
	// held the keys as they were: made again at the next message, from
	// keys without SK_pi and SK_pr (64 bytes an IKE SA less, in memory
	// and in its state).
	if ike.Keys != nil {
		ike.Keys.DropAuthKeys()
		ike.DropCiphers()
	}
	m.setDPD()
	m.setTimers(ike, ike.Established, true)
	m.env.Stats().Inc(stats.IKESAsEstablished)
	if l := m.Logger(); l.Enabled(context.Background(), slog.LevelInfo) {
		l.Info("IKE SA established", "local", ike.Local.String(), "local_id", ike.LocalID.String(), "remote_id", ike.RemoteID.String(),
			"proposal", ike.Proposal.String(), "initiator", ike.Initiator, "nat_local", ike.NATLocal, "nat_remote", ike.NATRemote)
	}
	m.env.Established(m)
}

// host is the manager as tasks see it for IKE SA rekeying.
type host struct{ m *Manager }

// NewIKESPI returns an IKE SPI of ours for the new IKE SA of a rekey.
func (h host) NewIKESPI() (uint64, error) { return h.m.env.NewIKESPI(h.m.IKE) }

// ReplaceIKE moves the IKE SA's Child SAs, draining SAs and queued tasks to
// next, which the worker adopts, and leaves this one Rekeyed.
func (h host) ReplaceIKE(next *sa.IKESA, reason string) {
	m := h.m
	old := m.IKE
	now := m.env.Now()
	next.Children, old.Children = old.Children, nil
	next.Draining, old.Draining = old.Draining, nil
	next.ReauthAt = old.ReauthAt
	m.setTimers(next, now, false)
	nm := m.env.Adopt(next)
	nm.setDPD()
	nm.armProbe()
	nm.queue = append(nm.queue, m.queue...)
	if m.more != nil && len(m.more.deferred) > 0 {
		x := nm.rareW()
		x.deferred = append(x.deferred, m.more.deferred...)
		m.more.deferred = nil
	}
	m.queue = nil
	old.State = sa.Rekeyed
	old.RekeyAt, old.ReauthAt, old.ExpireAt = time.Time{}, time.Time{}, time.Time{}
	old.RekeyedUntil = now.Add(RekeyedTimeout)
	m.env.Stats().Inc(stats.IKESAsRekeyed)
	m.Logger().Info("IKE SA rekeyed", "new_ike_id", next.UniqueID, "new_spis", next.SPIs(), "old_spis", old.SPIs(),
		"reason", reason, "initiator", next.Initiator, "children", len(next.Children), "proposal", next.Proposal.String())
	m.env.Changed(nm)
	m.env.Changed(m)
}

// AddRedundantIKE adopts an IKE SA that lost a rekey collision, with no
// Child SAs: we delete it, or wait for the peer to.
func (h host) AddRedundantIKE(ike *sa.IKESA, del bool) {
	m := h.m
	if del {
		nm := m.env.Adopt(ike)
		nm.Queue(task.NewIKEDeleteI("redundant: IKE SA rekey collision lost"))
		return
	}
	ike.State = sa.Rekeyed
	ike.RekeyedUntil = m.env.Now().Add(RekeyedTimeout)
	nm := m.env.Adopt(ike)
	m.env.Changed(nm)
}

// fail ends the IKE SA after a failed exchange we initiated, telling the
// peer when the failure asks for a notify (AUTHENTICATION_FAILED after we
// refused its authentication).
func (m *Manager) fail(f *task.Failure) {
	if f != nil && f.Notify != 0 && m.IKE.Keys != nil {
		msg := &message.Message{Header: message.Header{SPIi: m.IKE.SPIi, SPIr: m.IKE.SPIr, Exchange: message.Informational,
			MessageID: m.IKE.MsgIDOut}, Inner: []message.Payload{&message.Notify{NotifyType: f.Notify}}}
		if m.IKE.Initiator {
			msg.Header.Flags |= message.FlagInitiator
		}
		if out, _, err := m.IKE.Ciphers(); err == nil {
			if b, err := msg.Encode(out); err == nil {
				m.IKE.MsgIDOut++
				m.send(b)
			}
		}
	}
	m.destroy(f, "")
}

// Delete queues the deletion of the IKE SA (a DELETE exchange, then
// destruction, also if the peer does not answer).
func (m *Manager) Delete(reason string, done func(error)) {
	if m.destroyed {
		if done != nil {
			done(nil)
		}
		return
	}
	if m.IKE.State != sa.Established {
		m.destroy(nil, reason)
		if done != nil {
			done(nil)
		}
		return
	}
	m.Queue(task.NewIKEDeleteI(reason).WithDone(done))
	m.Initiate()
}

// Destroy ends the IKE SA at once, without telling the peer.
func (m *Manager) Destroy(reason string) { m.destroy(nil, reason) }

// destroy removes every Child SA from the data plane, aborts the tasks and
// reports the end of the IKE SA. f is nil for a normal end (reason says
// why).
func (m *Manager) destroy(f *task.Failure, reason string) {
	if m.destroyed {
		return
	}
	m.destroyed = true
	ike := m.IKE
	wasEstablished := ike.State == sa.Established || ike.State == sa.Deleting
	c := m.ctx(0)
	if len(ike.Draining) > 0 {
		if _, err := task.DrainDue(m.env.DataPlane(), ike, time.Time{}, true); err != nil {
			m.Logger().Warn("draining inbound sa removal incomplete", "err", err.Error())
		}
	}
	for _, ch := range append([]*sa.ChildSA(nil), ike.Children...) {
		why := "ike sa gone"
		var err error
		if heir := m.env.Heir(m, ch); heir != nil {
			why = "replaced by a reauthentication"
			var until time.Time
			if d := m.env.Settings().DrainDelay; d > 0 {
				until = m.env.Now().Add(d)
			}
			err = task.UninstallDrained(m.env.DataPlane(), ike, ch, heir, until)
			m.env.Stats().Inc(stats.ChildSAsRekeyed)
		} else {
			err = task.Uninstall(m.env.DataPlane(), ike, ch)
		}
		if err != nil {
			m.env.Stats().Fail(stats.DataPlane)
			m.Logger().Warn("child sa removal incomplete", "child", ch.Name, "err", err.Error())
		}
		m.env.Stats().Inc(stats.ChildSAsDeleted)
		c.Log.Info("child sa deleted", "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn),
			"spi_out", fmt.Sprintf("%08x", ch.SPIOut), "reason", why)
	}
	var err error
	if f != nil {
		err = f.Err
	} else {
		err = fmt.Errorf("ike sa %s", reason)
	}
	for _, t := range m.active {
		t.Abort(err)
	}
	for _, t := range m.queue {
		t.Abort(err)
	}
	x := m.rareW()
	for _, d := range x.deferred {
		d.t.Abort(err)
	}
	// A request waiting for its Child SA's install is never answered; the
	// install, when answered, finds the IKE SA gone and undoes itself.
	m.active, m.queue, m.req, x.deferred, x.waiting, x.held, x.answering = nil, nil, nil, nil, nil, heldResponse{}, nil
	x.frags.reset()
	ike.State = sa.Destroyed
	x.failure = f
	x.endReason = reason
	if f != nil {
		x.endReason = f.Reason.String()
	}
	if f != nil {
		m.env.Stats().Fail(f.Reason)
		msg := "IKE SA failed"
		if wasEstablished {
			msg = "IKE SA deleted"
		}
		m.Logger().Warn(msg, "reason", f.Reason.String(), "err", f.Err.Error())
	} else {
		m.Logger().Info("IKE SA deleted", "reason", reason)
	}
	if wasEstablished {
		m.env.Stats().Inc(stats.IKESAsDeleted)
	}
	m.env.Destroyed(m, f)
}

// InstallPendingOutbound installs the held-back outbound SA of one of
// the IKE SA's Child SAs (whose predecessor in another IKE SA goes), and
// its policy if it has none (installPendingOut); for a Child SA that
// sends already, only the policy if it has none (it replaced one of its
// IKE SA that held back, whose rekey sent on without one).
func (m *Manager) InstallPendingOutbound(ch *sa.ChildSA) {
	if ch.Redundant {
		return
	}
	if !ch.OutPending {
		if needsPolicy(m.IKE, ch) && ch.State == sa.ChildInstalled {
			if err := m.addPolicy(ch); err != nil {
				m.env.Stats().Fail(stats.DataPlane)
				m.Logger().Warn("child sa policy not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
				return
			}
			m.env.Changed(m)
		}
		return
	}
	if err := m.installPendingOut(ch); err != nil {
		m.env.Stats().Fail(stats.DataPlane)
		m.Logger().Warn("child sa outbound not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
		return
	}
	m.Logger().Info("child sa outbound installed", "child", ch.Name, "child_id", ch.UniqueID,
		"spi_in", fmt.Sprintf("%08x", ch.SPIIn), "spi_out", fmt.Sprintf("%08x", ch.SPIOut))
	m.env.Changed(m)
}

// EndReason says why the IKE SA ended ("" while it lives).
func (m *Manager) EndReason() string { return m.rare().endReason }

// Failure is why the IKE SA was destroyed, nil if deleted normally.
func (m *Manager) Failure() *task.Failure { return m.rare().failure }

// giveUp ends the IKE SA after the last retransmission went unanswered.
func (m *Manager) giveUp() {
	r := m.req
	reason := stats.RetransmitTimeout
	deleting := false
	for _, t := range m.active {
		switch t.Kind() {
		case task.KindDPD:
			reason = stats.DPDTimeout
		case task.KindIKEDelete:
			deleting = true
		}
	}
	total := time.Duration(0)
	for i := 0; i <= r.tries; i++ {
		total += m.timeout(i)
	}
	if deleting {
		m.destroy(nil, fmt.Sprintf("deleted (peer did not confirm within %v)", total.Round(time.Millisecond)))
		return
	}
	m.destroy(&task.Failure{Reason: reason, Err: fmt.Errorf("no response to %s request %d after %d retransmissions (%v)",
		r.exchange, r.id, r.tries, total.Round(time.Millisecond))}, "")
}

// installPendingOut installs a held-back outbound SA and then, for a
// Child SA that no policy of its reqid sends through, its own policy: the
// successor of a Child SA of another worker's IKE SA (ike_anchor ike-sa)
// is anchored on another logical SPU than its predecessor's policy, whose
// SPU's tables cannot reach its outbound SA, so it holds a reqid of its
// own and gets its policy once it may send, after its outbound SA (spud's
// steering names the newest policy of the selectors at once). A rekey's or
// a reauthentication's on one worker shares its predecessor's policy.
func (m *Manager) installPendingOut(ch *sa.ChildSA) error {
	c := m.ctx(0)
	if err := task.InstallOutbound(c, ch); err != nil {
		return err
	}
	if !needsPolicy(m.IKE, ch) {
		return nil
	}
	return m.addPolicy(ch)
}

// addPolicy installs a policy of ch's own.
func (m *Manager) addPolicy(ch *sa.ChildSA) error {
	conn := m.ctx(0).Conn()
	if conn == nil {
		return nil
	}
	name := task.SAName(conn.Name, ch.Name, ch.UniqueID)
	ike := m.IKE
	id, err := m.env.DataPlane().AddPolicy(&api.Policy{ReqID: ch.ReqID, Action: api.Protect, Local: ike.Local.Addr(),
		Remote: ike.Remote.Addr(), Logical: task.Anchor(ike), LocalTS: slices.Clone(ch.LocalTS), RemoteTS: slices.Clone(ch.RemoteTS),
		Name: name})
	if err != nil {
		return fmt.Errorf("install policy %s === %s: %w", ipsec.Selectors(ch.LocalTS), ipsec.Selectors(ch.RemoteTS), err)
	}
	ch.PolicyIDs = append(ch.PolicyIDs, id)
	return nil
}

// needsPolicy reports whether ch holds no policy and neither does any
// other live Child SA of its IKE SA with its reqid, nor a trap.
func needsPolicy(ike *sa.IKESA, ch *sa.ChildSA) bool {
	if ch.Trap || len(ch.PolicyIDs) > 0 || ch.ReqID == 0 {
		return false
	}
	for _, o := range ike.Children {
		if o != ch && o.ReqID == ch.ReqID && len(o.PolicyIDs) > 0 && o.State != sa.ChildDeleted {
			return false
		}
	}
	return true
}
