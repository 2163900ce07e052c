package worker

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/ts"
)

// reauth reauthenticates an IKE SA, make before break: a new IKE SA
// (IKE_SA_INIT, IKE_AUTH without INITIAL_CONTACT) between the same
// addresses with a new Child SA for each child of the old one; the new
// Child SAs take the old ones' reqids and policies over (Install finds
// them as predecessors), and the old IKE SA is deleted once every new
// Child SA is up. If the reauthentication fails, the old IKE SA lives on
// until its over_time expiry.
func (w *Worker) reauth(old *manager.Manager) {
	ike := old.IKE
	conn := w.env.Config().Connections[ike.ConnName]
	if conn == nil || ike.State != sa.Established || old.Destroyed() {
		return
	}
	var children []*sa.ChildSA
	seen := map[string]bool{}
	for _, ch := range ike.Children {
		if ch.Redundant || seen[ch.Name] || conn.Children[ch.Name] == nil ||
			(ch.State != sa.ChildInstalled && ch.State != sa.ChildRekeying && ch.State != sa.ChildRekeyed) {
			continue
		}
		seen[ch.Name] = true
		children = append(children, ch)
	}
	init, err := task.NewIKEInitI(conn)
	if err != nil {
		old.Logger().Warn("reauthentication not started", "err", err.Error())
		return
	}
	// The new IKE SA takes the old one's anchor: it stays on this worker,
	// with the Child SAs and policies it takes over.
	spi, err := w.newSPI(ike.Logical, ike.Anchored)
	if err != nil {
		old.Logger().Warn("reauthentication not started", "err", err.Error())
		return
	}
	// The current addresses and ports: behind a NAT the new IKE SA starts
	// on the NAT-T port, where the mapping exists.
	nike := &sa.IKESA{UniqueID: w.env.NewID(), ConnName: conn.Name, Initiator: true, SPIi: spi,
		Local: ike.Local, Remote: ike.Remote, Logical: ike.Logical, Anchored: ike.Anchored, Created: w.env.Now()}
	if !ike.NAT() {
		nike.Local = netip.AddrPortFrom(ike.Local.Addr(), uint16(conn.LocalPort))
		nike.Remote = netip.AddrPortFrom(ike.Remote.Addr(), uint16(conn.RemotePort))
	}
	m := manager.New(nike, w.menv)
	m.Queue(init)
	auth := task.NewIKEAuthI(conn)
	if conn.Local != nil && !conn.Local.Method.PubKey() && len(ike.LocalID.Data) > 0 &&
		(ike.LocalID.Type != conn.Local.Identity.Type || !bytes.Equal(ike.LocalID.Data, conn.Local.Identity.Data)) {
		// A load run's IKE SA authenticated with an identity of its own:
		// its successor keeps it, or the peer would see another tunnel.
		auth.As(ike.LocalID)
	}
	m.Queue(auth)
	oldSPIs := ike.SPIs()
	finish := func(err error) {
		if err != nil {
			old.Logger().Warn("IKE SA reauthentication failed; the old IKE SA stays until it expires", "new_ike_id", nike.UniqueID,
				"err", err.Error())
			return
		}
		w.env.Stats().Inc(stats.IKESAsReauthed)
		m.Logger().Info("IKE SA reauthenticated", "old_ike_id", ike.UniqueID, "old_spis", oldSPIs, "new_spis", nike.SPIs(),
			"children", len(nike.Children))
		w.pending = append(w.pending, func() {
			old.Delete("reauthenticated", nil)
			w.schedule(old)
		})
	}
	d := joinDone(max(len(children), 1), finish)
	if len(children) == 0 {
		// Childless: the new IKE SA alone replaces the old one.
		m.Queue(task.NewChildCreateI(conn, firstChild(conn), d))
	}
	for _, ch := range children {
		cr := task.NewChildCreateI(conn, conn.Children[ch.Name], d)
		cr.ReqID = ch.ReqID
		m.Queue(cr)
	}
	w.track(spi, m)
	if w.isLoad(ike) {
		w.loadSAs[nike] = true
	}
	old.Logger().Info("IKE SA reauthentication started", "new_ike_id", nike.UniqueID, "children", len(children))
	m.Initiate()
	w.schedule(m)
}

func firstChild(conn *config.Conn) *config.Child {
	return conn.Children[conn.ChildOrder[0]]
}

// sameTunnel reports whether two IKE SAs are of one connection with one
// peer (a reauthentication and the IKE SA it replaces): the same address
// and, once authenticated, the same identity. Many peers behind one
// address (sites behind a NAT, a load generator with an identity per IKE
// SA) may share a connection whose remote id is a pattern: their IKE SAs
// replace nothing of each other's.
func sameTunnel(a, b *sa.IKESA) bool {
	return a != b && a.ConnName == b.ConnName && a.ConnName != "" && a.Remote.Addr() == b.Remote.Addr() &&
		(!hasIDs(a) || !hasIDs(b) || (a.RemoteID.Type == b.RemoteID.Type && bytes.Equal(a.RemoteID.Data, b.RemoteID.Data)))
}

// Predecessor finds the Child SA of another IKE SA of the same tunnel
// that ch (made by a reauthentication) replaces: a live one of the same
// child and selectors that nothing replaces yet, in the oldest such IKE
// SA. A peer with unique: never keeps many IKE SAs of one tunnel, so this
// is two passes over the tunnel's IKE SAs of the worker, not a search per
// candidate. With none here, the predecessor may be on another worker
// (ike_anchor ike-sa): elsewhere holds the Child SA back and asks there.
//
// The Child SA of a load run's IKE SA replaces nothing: it shares the
// reqid and policy of the run's other Child SAs of the tunnel (Install
// marks it as replacing that one, which only this package reads across
// IKE SAs, and ignores for load IKE SAs). Load IKE SAs are never
// predecessors of others.
func (e *mgrEnv) Predecessor(ike *sa.IKESA, ch *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) {
	if e.w.isLoad(ike) {
		return e.loadSibling(ike, ch)
	}
	if h := e.w.reauthHint; h.ch != nil && e.w.heldBy(h.ike, h.ch, ike, ch) {
		if verifyHints {
			hintHits.Add(1)
			if o, p := e.search(ike, ch); o != h.ike || p != h.ch {
				panic(fmt.Sprintf("worker: predecessor hint %d/%08x, search %v/%v", h.ike.UniqueID, h.ch.SPIIn, o, p))
			}
		}
		e.w.reauthHint = childHint{ike, ch}
		return h.ike, h.ch
	}
	best, found := e.search(ike, ch)
	if found != nil {
		e.w.reauthHint = childHint{ike, ch}
		return best, found
	}
	return e.w.elsewhere(ike, ch)
}

// SharesPolicy reports whether ike is of a load run, whose Child SAs of
// one tunnel share a reqid and policy.
func (e *mgrEnv) SharesPolicy(ike *sa.IKESA) bool { return e.w.isLoad(ike) }

var _ task.PolicySharer = (*mgrEnv)(nil)

// verifyHints makes Predecessor check every hint it takes against the
// search (tests).
var verifyHints = false

// hintHits counts the hints taken while verifyHints is on.
var hintHits atomic.Int64

// search is Predecessor without the hint.
func (e *mgrEnv) search(ike *sa.IKESA, ch *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) {
	// Inbound SPIs are unique in the data plane: a Child SA anywhere in
	// the tunnel that replaces one names it by its SPI.
	replaced := map[uint32]bool{}
	markReplaced := func(o *sa.IKESA) {
		for _, c := range o.Children {
			if c.Replaces != 0 && !c.Redundant && c.State != sa.ChildDeleted {
				replaced[c.Replaces] = true
			}
		}
	}
	if m := e.w.bySPI[ike.OurSPI()]; m != nil && m.IKE == ike && !m.Destroyed() && !e.w.isLoad(ike) {
		// ike itself, which the index may file under an address it
		// left during this event.
		markReplaced(ike)
	}
	tunnel := e.w.peers.ofPeer(ike)
	for m := range tunnel {
		o := m.IKE
		if o == ike || m.Destroyed() || !sameTunnel(o, ike) || e.w.isLoad(o) {
			continue
		}
		markReplaced(o)
	}
	var best *sa.IKESA
	var found *sa.ChildSA
	for m := range tunnel {
		o := m.IKE
		if (best != nil && o.UniqueID >= best.UniqueID) || m.Destroyed() || !sameTunnel(o, ike) ||
			(o.State != sa.Established && o.State != sa.Deleting) || e.w.isLoad(o) {
			continue
		}
		for _, p := range o.Children {
			// Cheap tests first: with unique: never every older Child SA
			// of the tunnel is already replaced, and selectors compare slowly.
			if p.Name != ch.Name || p.Redundant || p.State == sa.ChildDeleted || p.State == sa.ChildDeleting ||
				(p.SPIIn != 0 && replaced[p.SPIIn]) || e.w.claimed(p) {
				continue
			}
			if sameChild(p, ch) {
				best, found = o, p
				break
			}
		}
	}
	return best, found
}

// childHint is a Child SA that the tunnel's next one from another IKE SA
// most likely pairs with, so that the search over the worker's IKE SAs is
// not paid for each of thousands in a row: for Predecessor, the one it last
// found a predecessor for (a peer with unique: never); for a load, the
// load Child SA that last took the tunnel's policy.
type childHint struct {
	ike *sa.IKESA
	ch  *sa.ChildSA
}

// heldBy reports whether hinted Child SA p of IKE SA o is still what the
// search would find for ch of ike: o alive, of the same tunnel, p live with
// the same child and selectors and not replaced. A replacement from
// another IKE SA is made only through Predecessor, which moves the hint
// to it, so only o itself (a rekey) needs looking at.
func (w *Worker) heldBy(o *sa.IKESA, p *sa.ChildSA, ike *sa.IKESA, ch *sa.ChildSA) bool {
	m := w.bySPI[o.OurSPI()]
	if m == nil || m.IKE != o || m.Destroyed() || !sameTunnel(o, ike) || w.isLoad(o) ||
		(o.State != sa.Established && o.State != sa.Deleting) {
		return false
	}
	return !p.Redundant && p.State != sa.ChildDeleted && p.State != sa.ChildDeleting && !w.claimed(p) &&
		slices.Contains(o.Children, p) && o.Successor(p) == nil && sameChild(p, ch)
}

// sameChild reports whether p and ch are Child SAs of the same child with
// the same selectors: one may stand in for the other.
func sameChild(p, ch *sa.ChildSA) bool {
	return p.Name == ch.Name && ts.Equal(p.LocalTS, ch.LocalTS) && ts.Equal(p.RemoteTS, ch.RemoteTS)
}

// Heir installs the pending outbound SA of the Child SA of another IKE SA
// that replaces ch, and returns that IKE SA; for a successor on another
// worker, it hands ch's SAs and policies over to that worker
// (handOverElsewhere).
func (e *mgrEnv) Heir(m *manager.Manager, ch *sa.ChildSA) *sa.IKESA {
	w := e.w
	if w.isLoad(m.IKE) {
		e.loadHandOver(m, ch)
		return nil
	}
	for om := range w.peers.ofPeer(m.IKE) {
		o := om.IKE
		if om == m || om.Destroyed() || !sameTunnel(o, m.IKE) || w.isLoad(o) {
			continue
		}
		if s := o.Successor(ch); s != nil {
			om.InstallPendingOutbound(s)
			w.pending = append(w.pending, func() {
				w.env.Changed(om.IKE)
				w.schedule(om)
			})
			m.Logger().Info("child sa handed over to the reauthenticated IKE SA", "child", ch.Name,
				"old_spi_in", fmt.Sprintf("%08x", ch.SPIIn), "new_spi_in", fmt.Sprintf("%08x", s.SPIIn), "new_ike_id", o.UniqueID)
			return o
		}
	}
	if len(w.claims) > 0 {
		return w.handOverElsewhere(m, ch)
	}
	return nil
}
