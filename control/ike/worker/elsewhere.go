package worker

// A reauthentication whose predecessor is on another worker. With
// ike_anchor ike-sa a responder anchors each new IKE SA by the hash of the
// endpoints and the initiator's SPI, so the IKE SA that reauthenticates a
// tunnel lands on any worker, not on the one of the IKE SA it replaces.
// Each worker touches only its own IKE SAs; the two talk through the
// daemon's command queues (Poster, else Env.Others), never under a lock
// held across them, and find each other through the daemon's table of
// which workers hold IKE SAs of a peer (PeerCounts, one lookup), not by a
// pass over anything:
//
//  1. The new Child SA's worker (the successor's) finds no predecessor of
//     its own but other workers with IKE SAs of the peer: it installs the
//     Child SA's inbound SA only, under a reqid of its own (its SPU's
//     tables cannot use the predecessor's policy), and asks them (ask).
//  2. The first of them that holds a predecessor (the search a worker
//     runs for its own successors) claims it for the successor and says
//     so; if none does, the successor's worker installs the outbound SA
//     and a policy at once (predecessorFound).
//  3. When the predecessor's IKE SA goes (the peer deletes it once every
//     new Child SA is up), its worker leaves the predecessor's SAs and
//     policies in the data plane and hands them to the successor's worker
//     (handOverElsewhere), which installs the successor's outbound SA and
//     policy first, then removes the predecessor's policies and outbound
//     SA, and keeps its inbound SA for the drain period (takeOver): make
//     before break, as on one worker.
//
// A successor also sends once packets arrive through it or its hold
// expires (manager's pending outbound), with its policy. What is lost on a
// restart of iked is the claim: the successor then sends on those terms.

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// Poster is implemented by an Env that runs a function on one other
// worker of the daemon (by ID), later, on that worker's goroutine. Without
// it a worker reaches another through Env.Others, which every other worker
// gets.
type Poster interface {
	On(worker int, f func(*Worker))
}

// post runs f on worker to, later, on its goroutine.
func (w *Worker) post(to int, f func(*Worker)) {
	if p, ok := w.env.(Poster); ok {
		p.On(to, f)
		return
	}
	w.env.Others(func(o *Worker) {
		if o.ID == to {
			f(o)
		}
	})
}

// predQuery asks another worker for the predecessor of a new Child SA: a
// copy of what the search compares, and where the Child SA is.
type predQuery struct {
	from  int    // the successor's worker
	spi   uint64 // our SPI of the successor's IKE SA
	child uint32 // the successor's unique id
	reqid uint32 // the successor's reqid, which its rekeys keep
	conn  string
	peer  netip.Addr
	id    config.Identity
	name  string
	lts   []ipsec.Selector
	rts   []ipsec.Selector
}

// claim is a Child SA of this worker (by reqid) that a Child SA of
// another worker replaces.
type claim struct {
	worker int
	spi    uint64
	child  uint32
	reqid  uint32
	// handed: the claimed Child SA's IKE SA went, and what it left is
	// the successor's worker's now.
	handed bool
}

// handOver is what a predecessor leaves in the data plane for its
// successor's worker to remove, once the successor sends.
type handOver struct {
	from     int
	name     string
	policies []uint32
	out      *api.SAID
	in       uint32
}

// claimed reports whether a Child SA of another worker replaces p.
func (w *Worker) claimed(p *sa.ChildSA) bool {
	if len(w.claims) == 0 {
		return false
	}
	_, ok := w.claims[p.ReqID]
	return ok
}

// dropClaims forgets the claims on the Child SAs of an IKE SA that left
// the worker: those it handed over when it ended, all of them when it
// moved. Another IKE SA of the tunnel here may share their reqid (a
// reauthentication on this worker), whose claim then stays.
func (w *Worker) dropClaims(ike *sa.IKESA, moved bool) {
	if len(w.claims) == 0 {
		return
	}
	for _, ch := range ike.Children {
		if c, ok := w.claims[ch.ReqID]; ok && (moved || c.handed) {
			delete(w.claims, ch.ReqID)
		}
	}
}

// elsewhere is Predecessor for a responder's Child SA whose predecessor
// may be on another worker: if other workers hold IKE SAs of the peer, it
// returns a stand-in predecessor with a new reqid, which makes Install
// hold the outbound SA back and install no policy, and asks them once the
// event is handled.
func (w *Worker) elsewhere(ike *sa.IKESA, ch *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) {
	if ch.Initiator || ike.Initiator || ch.UniqueID == 0 {
		return nil, nil
	}
	ws := w.peers.workersOf(nil, ike)
	if len(ws) == 0 {
		return nil, nil
	}
	if m := w.bySPI[ike.OurSPI()]; m == nil || m.IKE != ike {
		return nil, nil
	}
	q := predQuery{from: w.ID, spi: ike.OurSPI(), child: ch.UniqueID, reqid: w.env.NewReqID(), conn: ike.ConnName, peer: ike.Remote.Addr(),
		id: config.Identity{Type: ike.RemoteID.Type, Data: bytes.Clone(ike.RemoteID.Data)}, name: ch.Name,
		lts: slices.Clone(ch.LocalTS), rts: slices.Clone(ch.RemoteTS)}
	w.pending = append(w.pending, func() { w.ask(q, ws) })
	return &sa.IKESA{}, &sa.ChildSA{Name: ch.Name, ReqID: q.reqid}
}

// ask asks the first of workers for q's predecessor, which passes the
// question on to the next if it holds none.
func (w *Worker) ask(q predQuery, workers []int) {
	w.post(workers[0], func(o *Worker) { o.answer(q, workers[1:]) })
}

// answer looks for q's predecessor among the worker's IKE SAs (as for a
// successor of its own) and claims it, or passes q on.
func (w *Worker) answer(q predQuery, rest []int) {
	defer w.runPending()
	key := &sa.IKESA{ConnName: q.conn, Remote: netip.AddrPortFrom(q.peer, 0), RemoteID: q.id}
	o, p := w.menv.search(key, &sa.ChildSA{Name: q.name, LocalTS: q.lts, RemoteTS: q.rts})
	if p == nil {
		if len(rest) > 0 {
			w.ask(q, rest)
			return
		}
		w.post(q.from, func(x *Worker) { x.predecessorFound(q, -1, 0, 0) })
		return
	}
	if w.claims == nil {
		w.claims = map[uint32]claim{}
	}
	w.claims[p.ReqID] = claim{worker: q.from, spi: q.spi, child: q.child, reqid: q.reqid}
	m := w.bySPI[o.OurSPI()]
	if m != nil {
		m.Logger().Info("child sa to be replaced by a reauthentication on another worker", "child", p.Name,
			"spi_in", fmt.Sprintf("%08x", p.SPIIn), "new_worker", q.from, "new_child_id", q.child)
	}
	spiIn, reqid, self := p.SPIIn, p.ReqID, w.ID
	w.post(q.from, func(x *Worker) { x.predecessorFound(q, self, reqid, spiIn) })
}

// predecessorFound is the answer to q: holder is the worker that claimed
// the predecessor (reqid, inbound SPI spiIn there), or -1 if none did, and
// the successor sends at once.
func (w *Worker) predecessorFound(q predQuery, holder int, reqid, spiIn uint32) {
	defer w.runPending()
	m, ch := w.childOf(q.spi, q.child, 0)
	if ch == nil {
		if holder >= 0 {
			// The successor is gone: the predecessor is no one's.
			w.post(holder, func(o *Worker) { o.unclaim(reqid, q.spi, q.child) })
		}
		return
	}
	if holder >= 0 {
		ch.Replaces = spiIn
		m.Logger().Info("child sa replaces one on another worker: its outbound sa waits for that one to go", "child", ch.Name,
			"child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn), "replaces_spi_in", fmt.Sprintf("%08x", spiIn),
			"old_worker", holder)
		return
	}
	if ch.OutPending {
		m.InstallPendingOutbound(ch)
		w.schedule(m)
	}
}

// unclaim drops a claim whose successor went.
func (w *Worker) unclaim(reqid uint32, spi uint64, child uint32) {
	if c, ok := w.claims[reqid]; ok && c.spi == spi && c.child == child {
		delete(w.claims, reqid)
	}
}

// childOf returns the live Child SA with unique id child of the worker's
// IKE SA whose SPI (ours) is spi, else (reqid not 0) the newest live one
// with that reqid: what a rekey of it made.
func (w *Worker) childOf(spi uint64, child, reqid uint32) (*manager.Manager, *sa.ChildSA) {
	m := w.bySPI[spi]
	if m == nil || m.Destroyed() {
		return nil, nil
	}
	var heir *sa.ChildSA
	for _, ch := range m.IKE.Children {
		if ch.State == sa.ChildDeleted || ch.State == sa.ChildDeleting || ch.Redundant {
			continue
		}
		if ch.UniqueID == child {
			return m, ch
		}
		if reqid != 0 && ch.ReqID == reqid {
			heir = ch
		}
	}
	if heir != nil {
		return m, heir
	}
	return nil, nil
}

// handOverElsewhere is Heir for a Child SA that a Child SA of another
// worker replaces: it leaves ch's SAs and policies in the data plane and
// hands them to that worker (takeOver), and returns a stand-in heir, so
// that destroy removes nothing of ch.
func (w *Worker) handOverElsewhere(m *manager.Manager, ch *sa.ChildSA) *sa.IKESA {
	c, ok := w.claims[ch.ReqID]
	if !ok || ch.State == sa.ChildDeleted {
		return nil
	}
	h := handOver{from: w.ID, name: ch.Name, policies: ch.PolicyIDs, in: ch.SPIIn}
	if ch.SPIOut != 0 && !ch.OutPending {
		h.out = &api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: m.IKE.Remote.Addr()}
	}
	ch.PolicyIDs = nil
	ch.State = sa.ChildDeleted
	c.handed = true
	w.claims[ch.ReqID] = c
	m.Logger().Info("child sa handed over to the reauthenticated IKE SA on another worker", "child", ch.Name,
		"spi_in", fmt.Sprintf("%08x", ch.SPIIn), "new_worker", c.worker, "new_child_id", c.child)
	w.post(c.worker, func(o *Worker) { o.takeOver(c, h) })
	return &sa.IKESA{}
}

// takeOver completes a hand-over: the successor's outbound SA and policy
// go in, then the predecessor's policies and outbound SA go, and its
// inbound SA stays for the drain period in the successor's IKE SA. With
// the successor gone, the predecessor's SAs and policies just go.
func (w *Worker) takeOver(c claim, h handOver) {
	defer w.runPending()
	m, ch := w.childOf(c.spi, c.child, c.reqid)
	if ch != nil {
		m.InstallPendingOutbound(ch)
	}
	dp := w.env.DataPlane()
	var errs []error
	for _, id := range h.policies {
		if err := dp.DelPolicy(id); err != nil {
			errs = append(errs, fmt.Errorf("policy %d: %w", id, err))
		}
	}
	if h.out != nil {
		if err := dp.DelSA(*h.out); err != nil {
			errs = append(errs, fmt.Errorf("outbound sa 0x%08x: %w", h.out.SPI, err))
		}
	}
	if h.in != 0 {
		if d := w.env.Settings().DrainDelay; ch != nil && d > 0 {
			m.IKE.Draining = append(m.IKE.Draining, sa.DrainingSA{SPI: h.in, Name: h.name, Until: w.env.Now().Add(d)})
			w.env.Changed(m.IKE)
		} else if err := dp.DelSA(api.SAID{SPI: h.in, Dir: api.In}); err != nil {
			errs = append(errs, fmt.Errorf("inbound sa 0x%08x: %w", h.in, err))
		}
	}
	if len(errs) > 0 {
		w.env.Stats().Fail(stats.DataPlane)
		w.log.Warn("removal of a child sa handed over from another worker incomplete", "child", h.name, "from_worker", h.from,
			"err", fmt.Sprint(errs))
	}
	if m != nil {
		w.schedule(m)
	}
}
