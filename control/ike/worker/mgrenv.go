package worker

import (
	"bytes"
	"fmt"
	"log/slog"
	"time"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
)

// mgrEnv is the worker as its task managers see it.
type mgrEnv struct {
	Env
	w *Worker
}

var _ manager.Env = (*mgrEnv)(nil)

func (e *mgrEnv) Changed(m *manager.Manager) { e.Env.Changed(m.IKE) }

// Log is the daemon's logger behind the worker's gate on lines about
// unauthenticated IKE SAs.
func (e *mgrEnv) Log() *slog.Logger { return e.w.mlog }

// Established ends the IKE SA's half-open accounting; the manager has it
// persisted (Changed) once the exchange is done, which a write here would
// only repeat.
func (e *mgrEnv) Established(m *manager.Manager) {
	// What follows is about an authenticated peer: log it whole.
	e.w.unauthenticated = false
	e.w.endHalfOpen(m)
	e.w.forgetInit(m)
}

// Resume runs the rest of an exchange of m that waited for the data plane
// (the daemon calls the data plane's completion on the worker's
// goroutine) as Receive runs a datagram's: a panic ends m alone, and m's
// timers and the worker's pending work are seen to after.
func (e *mgrEnv) Resume(m *manager.Manager, f func()) {
	w := e.w
	defer w.runPending()
	defer w.recovered("install", nil)
	w.unauthenticated, w.current = m.HalfOpen(), m
	f()
	w.unauthenticated, w.current = false, nil
	w.schedule(m)
}

func (e *mgrEnv) Destroyed(m *manager.Manager, f *task.Failure) {
	w := e.w
	ike := m.IKE
	load := w.isLoad(ike)
	w.forget(m)
	if m.EndReason() == manager.ReasonPeerDeleted && len(ike.LastResponse) > 0 && ike.MsgIDIn > 0 {
		w.bury(ike)
	}
	if ike.Established.IsZero() && ike.Initiator {
		// Never established: nothing was persisted, no action applies.
		w.env.Gone(ike)
		return
	}
	w.env.Gone(ike)
	conn := w.env.Config().Connections[ike.ConnName]
	if conn == nil || load {
		// A load run's IKE SA is not re-initiated: the run counts it.
		return
	}
	byPeer := f == nil && m.EndReason() == manager.ReasonPeerDeleted
	dead := f != nil && (f.Reason == stats.DPDTimeout || f.Reason == stats.RetransmitTimeout)
	if !byPeer && !dead {
		return
	}
	seen := map[string]bool{}
	for _, ch := range ike.Children {
		if seen[ch.Name] {
			continue
		}
		seen[ch.Name] = true
		cc := conn.Children[ch.Name]
		if cc == nil {
			continue
		}
		action := cc.CloseAction
		if dead {
			action = cc.DPDAction
		}
		connName, child := conn.Name, ch.Name
		switch action {
		case "trap":
			w.pending = append(w.pending, func() { w.env.InstallTrap(connName, child) })
		case "restart", "start":
			w.pending = append(w.pending, func() {
				if err := w.Initiate(connName, child, nil); err != nil {
					w.log.Warn("restart after the IKE SA ended failed", "conn", connName, "child", child, "err", err.Error())
				}
			})
		}
		if action != "none" && action != "clear" && action != "" {
			m.Logger().Info("applying action", "child", child, "action", action, "dpd", dead)
		}
	}
}

// ChildRekeyDue rekeys a Child SA that reached its rekey time (or a soft
// limit of the data plane). Either side may: the one whose timer fires
// first starts, and a crossing rekey by the other is a collision that
// ChildRekeyI settles.
func (e *mgrEnv) ChildRekeyDue(m *manager.Manager, ch *sa.ChildSA) {
	ch.RekeyAt = time.Time{}
	if rekeyQueued(m, ch) {
		return
	}
	reason := ch.RekeyReason
	if reason == "" {
		reason = task.ReasonTime
	}
	ch.RekeyReason = ""
	m.Logger().Info("child sa rekey due", "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn),
		"spi_out", fmt.Sprintf("%08x", ch.SPIOut), "reason", reason)
	m.Queue(task.NewChildRekeyI(ch, reason))
}

// rekeyQueued reports whether a rekey of ch is queued or in flight.
func rekeyQueued(m *manager.Manager, ch *sa.ChildSA) bool {
	for _, l := range [][]task.Initiator{m.Active(), m.Queued()} {
		for _, t := range l {
			if r, ok := t.(*task.ChildRekeyI); ok && r.Old == ch {
				return true
			}
		}
	}
	return false
}

// ChildExpired deletes a Child SA at the end of its life (time, or a hard
// byte or packet limit of the data plane) and, with reinitiate set and
// no replacement, creates a new one.
func (e *mgrEnv) ChildExpired(m *manager.Manager, ch *sa.ChildSA) {
	e.expire(m, ch, "life_time")
}

func (e *mgrEnv) expire(m *manager.Manager, ch *sa.ChildSA, reason string) {
	if ch.State == sa.ChildDeleting || ch.State == sa.ChildDeleted {
		return
	}
	replaced := m.IKE.Successor(ch) != nil || ch.Redundant || ch.State == sa.ChildRekeyed
	e.w.env.Stats().Inc(stats.ChildSAsExpired)
	m.Logger().Info("child sa expired", "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn),
		"spi_out", fmt.Sprintf("%08x", ch.SPIOut), "reason", reason, "replaced", replaced)
	m.Queue(task.NewChildDeleteI("expired ("+reason+")", nil, ch))
	if replaced {
		return
	}
	conn := e.w.env.Config().Connections[m.IKE.ConnName]
	if conn == nil || conn.Children[ch.Name] == nil || !bool(conn.Children[ch.Name].Reinitiate) {
		return
	}
	for _, o := range m.IKE.Children {
		if o != ch && o.Name == ch.Name && o.Live() && !o.Redundant {
			return // another Child SA of the child carries on
		}
	}
	m.Logger().Info("child sa re-initiated after its hard expiry", "child", ch.Name)
	cr := task.NewChildCreateI(conn, conn.Children[ch.Name], nil)
	cr.ReqID = ch.ReqID
	m.Queue(cr)
}

// NewIKESPI returns an unused IKE SPI for the IKE SA that replaces ike:
// on ike's anchor, so that the new IKE SA stays with its Child SAs.
func (e *mgrEnv) NewIKESPI(ike *sa.IKESA) (uint64, error) {
	return e.w.newSPI(ike.Logical, ike.Anchored)
}

// Adopt registers the IKE SA a rekey created; its queued tasks start once
// the event at hand is handled.
func (e *mgrEnv) Adopt(ike *sa.IKESA) *manager.Manager {
	w := e.w
	m := manager.New(ike, w.menv)
	w.track(ike.OurSPI(), m)
	w.pending = append(w.pending, func() {
		if !m.Destroyed() {
			m.Initiate()
		}
		w.schedule(m)
	})
	return m
}

// ReauthDue starts the reauthentication of an IKE SA: a new IKE SA with
// new Child SAs for the same children, then the old one is deleted (make
// before break, as strongSwan's make_before_break).
func (e *mgrEnv) ReauthDue(m *manager.Manager) {
	e.w.reauth(m)
}

// HasOtherIKESA: another IKE SA, in any state, with the same peer address
// and the same peer identity (configured or authenticated). The first IKE
// SA of a batch started together sends INITIAL_CONTACT at most.
//
// With an anchor per IKE SA, the peer's IKE SAs with us (those it
// initiated) may be on other workers, whose connections and identities
// cannot be read from here: any IKE SA of theirs with the address counts
// (the daemon's count, one lookup). Holding INITIAL_CONTACT back is the
// safe side of the doubt: sent, it makes the peer drop a live IKE SA.
func (e *mgrEnv) HasOtherIKESA(ike *sa.IKESA) bool {
	cfg := e.w.env.Config()
	conn := cfg.Connections[ike.ConnName]
	for m := range e.w.peers.atAddr(ike.Remote.Addr()) {
		o := m.IKE
		if o == ike || m.Destroyed() || o.Remote.Addr() != ike.Remote.Addr() {
			continue
		}
		if o.ConnName == ike.ConnName || conn == nil {
			return true
		}
		if o.State == sa.Established && conn.Remote.Identity.Matches(o.RemoteID.Type, o.RemoteID.Data) {
			return true
		}
		if oc := cfg.Connections[o.ConnName]; oc != nil && oc.Remote.Identity.Type == conn.Remote.Identity.Type &&
			bytes.Equal(oc.Remote.Identity.Data, conn.Remote.Identity.Data) {
			return true
		}
	}
	return e.w.peers.others(ike.Remote.Addr()) > 0
}

// InitialContact destroys every other IKE SA between the same identities
// and peer address: the peer says it has forgotten them.
//
// With an anchor per IKE SA the others may be on other workers: they are
// told too, and each destroys its own (the one at hand is on this worker).
func (e *mgrEnv) InitialContact(ike *sa.IKESA) {
	e.w.initialContact(ike, ike)
	if a := e.w.env.Anchoring(); a != nil && a.PerIKESA {
		key := &sa.IKESA{LocalID: ike.LocalID, RemoteID: ike.RemoteID, Remote: ike.Remote}
		e.w.env.Others(func(o *Worker) {
			defer o.runPending()
			for _, m := range o.initialContact(key, nil) {
				o.schedule(m)
			}
		})
	}
}

// initialContact destroys the established IKE SAs of the worker, but keep,
// between key's identities and peer address, and returns them.
func (w *Worker) initialContact(key, keep *sa.IKESA) []*manager.Manager {
	var old []*manager.Manager
	for m := range w.peers.ofPeer(key) {
		o := m.IKE
		if o == keep || m.Destroyed() || o.State != sa.Established || o.Remote.Addr() != key.Remote.Addr() {
			continue
		}
		if o.RemoteID.Type == key.RemoteID.Type && bytes.Equal(o.RemoteID.Data, key.RemoteID.Data) &&
			o.LocalID.Type == key.LocalID.Type && bytes.Equal(o.LocalID.Data, key.LocalID.Data) {
			old = append(old, m)
		}
	}
	for _, m := range old {
		w.env.Stats().Inc(stats.InitialContacts)
		m.Destroy(manager.ReasonInitialContact)
	}
	return old
}
