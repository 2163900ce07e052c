package worker

import (
	"bytes"
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

func (e *mgrEnv) Established(m *manager.Manager) {
	e.w.endHalfOpen(m)
	e.w.forgetInit(m)
	e.Env.Changed(m.IKE)
}

func (e *mgrEnv) Destroyed(m *manager.Manager, f *task.Failure) {
	w := e.w
	w.forget(m)
	ike := m.IKE
	if ike.Established.IsZero() && ike.Initiator {
		// Never established: nothing was persisted, no action applies.
		w.env.Gone(ike)
		return
	}
	w.env.Gone(ike)
	conn := w.env.Config().Connections[ike.ConnName]
	if conn == nil {
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

// ChildRekeyDue replaces a Child SA by a new one (make-before-break) until
// CHILD_REKEY exists (issue 7). Only the side that initiated the Child SA
// replaces it, so that both ends do not race.
func (e *mgrEnv) ChildRekeyDue(m *manager.Manager, ch *sa.ChildSA) {
	conn := e.w.env.Config().Connections[m.IKE.ConnName]
	if conn == nil || !ch.Initiator {
		ch.RekeyAt = time.Time{}
		return
	}
	cc := conn.Children[ch.Name]
	if cc == nil {
		ch.RekeyAt = time.Time{}
		return
	}
	ch.State = sa.ChildRekeying
	ch.RekeyAt = time.Time{}
	t := task.NewChildCreateI(conn, cc, func(err error) {
		if err != nil && ch.State == sa.ChildRekeying {
			ch.State = sa.ChildInstalled
		}
	})
	t.Replaces = ch
	m.Logger().Info("child sa rekey due: replacing it", "child", ch.Name, "child_id", ch.UniqueID)
	m.Queue(t)
}

// ChildExpired deletes a Child SA at the end of its life time.
func (e *mgrEnv) ChildExpired(m *manager.Manager, ch *sa.ChildSA) {
	m.Logger().Info("child sa expired", "child", ch.Name, "child_id", ch.UniqueID)
	m.Queue(task.NewChildDeleteI("expired", nil, ch))
}

// HasOtherIKESA: another IKE SA, in any state, with the same peer address
// and the same peer identity (configured or authenticated). The first IKE
// SA of a batch started together sends INITIAL_CONTACT at most.
func (e *mgrEnv) HasOtherIKESA(ike *sa.IKESA) bool {
	cfg := e.w.env.Config()
	conn := cfg.Connections[ike.ConnName]
	for _, m := range e.w.bySPI {
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
	return false
}

// InitialContact destroys every other IKE SA between the same identities
// and peer address: the peer says it has forgotten them.
func (e *mgrEnv) InitialContact(ike *sa.IKESA) {
	var old []*manager.Manager
	for _, m := range e.w.bySPI {
		o := m.IKE
		if o == ike || m.Destroyed() || o.State != sa.Established || o.Remote.Addr() != ike.Remote.Addr() {
			continue
		}
		if o.RemoteID.Type == ike.RemoteID.Type && bytes.Equal(o.RemoteID.Data, ike.RemoteID.Data) &&
			o.LocalID.Type == ike.LocalID.Type && bytes.Equal(o.LocalID.Data, ike.LocalID.Data) {
			old = append(old, m)
		}
	}
	for _, m := range old {
		e.w.env.Stats().Inc(stats.InitialContacts)
		m.Destroy(manager.ReasonInitialContact)
	}
}
