package worker

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/task"
)

// joinDone returns a function to call n times; done gets the first error
// after the n-th call. done may be nil.
func joinDone(n int, done func(error)) func(error) {
	if done == nil {
		return nil
	}
	if n == 0 {
		done(nil)
		return nil
	}
	var first error
	return func(err error) {
		if err != nil && first == nil {
			first = err
		}
		if n--; n == 0 {
			done(first)
		}
	}
}

// Endpoints returns the addresses an initiation of conn uses: its first
// remote address (which must be a single address) and our address towards
// it.
func Endpoints(env interface {
	LocalAddrFor(netip.Addr) (netip.Addr, error)
}, conn *config.Conn) (local, remote netip.Addr, err error) {
	for _, p := range conn.Remotes {
		if p.IsSingleIP() {
			remote = p.Addr()
			break
		}
	}
	if !remote.IsValid() {
		return local, remote, fmt.Errorf("connection %q: no single remote address to initiate to (remote_addrs %v)", conn.Name, conn.RemoteAddrs)
	}
	for _, a := range conn.Locals {
		if a.Is4() == remote.Is4() {
			local = a
			break
		}
	}
	if !local.IsValid() {
		if local, err = env.LocalAddrFor(remote); err != nil {
			return local, remote, fmt.Errorf("connection %q: local address towards %s: %w", conn.Name, remote, err)
		}
	}
	return local, remote, nil
}

// findIKE returns a live IKE SA of a connection that new Child SAs can be
// added to.
func (w *Worker) findIKE(conn string) *manager.Manager {
	for _, m := range w.Managers() {
		ike := m.IKE
		if m.Destroyed() || ike.ConnName != conn || w.isLoad(ike) {
			continue
		}
		if ike.State == sa.Established || (ike.Initiator && ike.State < sa.Established) {
			return m
		}
	}
	return nil
}

// hasChild reports whether m has or is negotiating a Child SA of a child.
func hasChild(m *manager.Manager, child string) bool {
	for _, ch := range m.IKE.Children {
		if ch.Name == child && ch.State != sa.ChildDeleted && ch.State != sa.ChildDeleting {
			return true
		}
	}
	for _, l := range [][]task.Initiator{m.Active(), m.Queued()} {
		for _, t := range l {
			if c, ok := t.(*task.ChildCreateI); ok && c.Child().Name == child && c.Replaces == nil {
				return true
			}
		}
	}
	return false
}

// Initiate brings up a connection's Child SA (all its children if child is
// empty), on the connection's IKE SA if one is up or being set up, else on
// a new one. done (may be nil) is called once with the outcome. Calls for a
// Child SA that exists or is being negotiated succeed at once.
func (w *Worker) Initiate(connName, child string, done func(error)) error {
	defer w.runPending()
	cfg := w.env.Config()
	conn := cfg.Connections[connName]
	if conn == nil {
		return fmt.Errorf("no connection %q", connName)
	}
	var children []*config.Child
	if child != "" {
		cc := conn.Children[child]
		if cc == nil {
			return fmt.Errorf("connection %q has no child %q", connName, child)
		}
		children = append(children, cc)
	} else {
		for _, n := range conn.ChildOrder {
			children = append(children, conn.Children[n])
		}
	}
	if m := w.findIKE(conn.Name); m != nil {
		var todo []*config.Child
		for _, cc := range children {
			if !hasChild(m, cc.Name) {
				todo = append(todo, cc)
			}
		}
		d := joinDone(len(todo), done)
		for _, cc := range todo {
			m.Queue(task.NewChildCreateI(conn, cc, d))
		}
		m.Initiate()
		w.schedule(m)
		return nil
	}
	_, err := w.newIKE(conn, children, done)
	return err
}

// newIKE starts a new IKE SA of conn with Child SAs of children; done
// (may be nil) is called once they are all up or one failed.
func (w *Worker) newIKE(conn *config.Conn, children []*config.Child, done func(error)) (*manager.Manager, error) {
	return w.newIKEAs(conn, nil, children, done)
}

// newIKEAs is newIKE with a local identity of its own in place of the
// connection's, when id is not nil (a load run's).
func (w *Worker) newIKEAs(conn *config.Conn, id *config.Identity, children []*config.Child, done func(error)) (*manager.Manager, error) {
	local, remote, err := Endpoints(w.env, conn)
	if err != nil {
		return nil, err
	}
	init, err := task.NewIKEInitI(conn)
	if err != nil {
		return nil, err
	}
	lg, anchored := w.tunnelAnchor(local, remote)
	spi, err := w.newSPI(lg, anchored)
	if err != nil {
		return nil, err
	}
	ike := &sa.IKESA{UniqueID: w.env.NewID(), ConnName: conn.Name, Initiator: true, SPIi: spi, Logical: lg, Anchored: anchored,
		Local:   netip.AddrPortFrom(local, uint16(conn.LocalPort)),
		Remote:  netip.AddrPortFrom(remote, uint16(conn.RemotePort)),
		Created: w.env.Now()}
	m := manager.New(ike, w.menv)
	m.Queue(init)
	auth := task.NewIKEAuthI(conn)
	if id != nil {
		auth.As(*id)
	}
	m.Queue(auth)
	d := joinDone(len(children), done)
	for _, cc := range children {
		m.Queue(task.NewChildCreateI(conn, cc, d))
	}
	w.track(spi, m)
	m.Logger().Info("initiating IKE SA", "local", ike.Local.String(), "children", len(children))
	m.Initiate()
	w.schedule(m)
	return m, nil
}

// Target picks IKE or Child SAs for Terminate and Rekey: by connection
// name or IKE SA unique id, and optionally a child name or Child SA unique
// id (then only Child SAs are deleted). (Not a traffic selector: that is
// ipsec.Selector.)
type Target struct {
	Conn    string
	IKEID   uint32
	Child   string
	ChildID uint32
}

func (s Target) childOnly() bool { return s.Child != "" || s.ChildID != 0 }

// Terminate deletes the IKE SAs (or Child SAs) the selector picks, telling
// the peer. It returns how many it started to delete; done (may be nil) is
// called once they are all gone.
func (w *Worker) Terminate(sel Target, done func(error)) int {
	defer w.runPending()
	type job struct {
		m        *manager.Manager
		children []*sa.ChildSA
	}
	var jobs []job
	for _, m := range w.Managers() {
		ike := m.IKE
		if m.Destroyed() || (sel.IKEID != 0 && ike.UniqueID != sel.IKEID) || (sel.Conn != "" && ike.ConnName != sel.Conn) {
			continue
		}
		if !sel.childOnly() {
			jobs = append(jobs, job{m: m})
			continue
		}
		var chs []*sa.ChildSA
		for _, ch := range ike.Children {
			if (sel.Child == "" || ch.Name == sel.Child) && (sel.ChildID == 0 || ch.UniqueID == sel.ChildID) &&
				ch.State != sa.ChildDeleted && ch.State != sa.ChildDeleting {
				chs = append(chs, ch)
			}
		}
		if len(chs) > 0 {
			jobs = append(jobs, job{m: m, children: chs})
		}
	}
	d := joinDone(len(jobs), done)
	for _, j := range jobs {
		if j.children == nil {
			j.m.Delete("terminated by the operator", d)
		} else {
			j.m.Queue(task.NewChildDeleteI("terminated by the operator", d, j.children...))
			j.m.Initiate()
		}
		w.schedule(j.m)
	}
	return len(jobs)
}

// List returns copies of the worker's IKE SAs and Child SAs, without keys,
// for listing.
func (w *Worker) List() []sa.IKESA { return listOf(w.Managers()) }

// ListAfter is List for a page: the IKE SAs with a UniqueID above after,
// in UniqueID order, at most limit of them. The worker keeps its IKE SAs
// in that order (order.go): a page costs its own IKE SAs and a binary
// search, not a pass over all of them.
func (w *Worker) ListAfter(after uint32, limit int) []sa.IKESA {
	if limit <= 0 {
		return nil
	}
	return listOf(w.byID.after(make([]*manager.Manager, 0, min(limit, w.byID.Len())), after, limit))
}

// VisitAfter calls visit with each IKE SA whose UniqueID is above after,
// in UniqueID order, at most limit of them, until visit returns false: a
// listing reads them where they are rather than copying them
// (ListAfter). visit runs on the worker's goroutine and must neither keep
// nor change what it is given (keys included).
func (w *Worker) VisitAfter(after uint32, limit int, visit func(*sa.IKESA) bool) {
	w.byID.visit(after, limit, func(m *manager.Manager) bool { return visit(m.IKE) })
}

// IDsAfter appends to ids the UniqueIDs of ListAfter's page, in order:
// what a listing over several workers merges before it copies the IKE SAs
// of its page, so that none is copied for nothing.
func (w *Worker) IDsAfter(ids []uint32, after uint32, limit int) []uint32 {
	return w.byID.idsAfter(ids, after, limit)
}

// listOf copies the IKE SAs of ms without their keys.
func listOf(ms []*manager.Manager) []sa.IKESA {
	if len(ms) == 0 {
		return nil
	}
	out := make([]sa.IKESA, 0, len(ms))
	for _, m := range ms {
		c := *m.IKE
		c.Keys, c.Out, c.In, c.HS, c.LastResponse = nil, nil, nil, nil, nil
		c.InFlight = nil
		c.Children = nil
		for _, ch := range m.IKE.Children {
			cc := *ch
			cc.Keys = nil
			c.Children = append(c.Children, &cc)
		}
		out = append(out, c)
	}
	return out
}

// Restore adopts an IKE SA read back from the state file, or one another
// worker detached (its ciphers are made from its keys when needed).
func (w *Worker) Restore(ike *sa.IKESA) error {
	if ike.Keys == nil {
		return errors.New("restore: IKE SA without keys")
	}
	if w.bySPI[ike.OurSPI()] != nil {
		return fmt.Errorf("restore: IKE SA %s exists", ike.SPIs())
	}
	m := manager.Restore(ike, w.menv)
	w.track(ike.OurSPI(), m)
	m.Logger().Info("IKE SA restored", "children", len(ike.Children), "msgid_out", ike.MsgIDOut, "msgid_in", ike.MsgIDIn)
	m.Initiate()
	w.schedule(m)
	return nil
}

// Do runs f with the worker's managers, for commands the daemon needs that
// have no method here; f must not keep them.
func (w *Worker) Do(f func(ms []*manager.Manager)) {
	defer w.runPending()
	ms := w.Managers()
	f(ms)
	for _, m := range ms {
		w.schedule(m)
	}
}

// LifetimeEvent is a data-plane event about a Child SA's SA.
type LifetimeEvent int

// Lifetime events.
const (
	SoftLimit LifetimeEvent = iota // a soft byte or packet limit: rekey now
	HardLimit                      // a hard limit: the SA passes no more traffic
	SeqNear                        // outbound sequence numbers nearly exhausted: rekey now
)

// ChildEvent applies a data-plane lifetime event to the Child SA with an
// SPI (ours inbound, or the peer's outbound): a soft limit or sequence
// numbers running out make it due for a rekey now, a hard limit deletes
// it (and re-initiates it if so configured). bytes and packets are the
// SA's counts, which say which limit was reached.
func (w *Worker) ChildEvent(spi uint32, inbound bool, ev LifetimeEvent, bytes, packets uint64) {
	defer w.runPending()
	for _, m := range w.Managers() {
		for _, ch := range m.IKE.Children {
			if (inbound && ch.SPIIn != spi) || (!inbound && ch.SPIOut != spi) {
				continue
			}
			switch ev {
			case HardLimit:
				reason := hardReason(w.childConfig(m, ch), bytes, packets)
				m.Logger().Info("child sa reached its hard lifetime", "child", ch.Name, "child_id", ch.UniqueID, "reason", reason,
					"bytes", bytes, "packets", packets)
				w.menv.expire(m, ch, reason)
				m.Initiate()
			case SoftLimit, SeqNear:
				if ch.State != sa.ChildInstalled {
					break
				}
				reason := task.ReasonSeq
				if ev == SoftLimit {
					reason = softReason(ch, bytes, packets)
				}
				ch.RekeyReason = reason
				ch.RekeyAt = w.env.Now()
			}
			w.schedule(m)
			return
		}
	}
}

// softReason names the soft limit a data-plane event reports: the one
// configured, or the one the counts reached (spud may not send them).
func softReason(ch *sa.ChildSA, bytes, packets uint64) string {
	switch {
	case ch.RekeyBytes > 0 && ch.RekeyPackets == 0:
		return task.ReasonBytes
	case ch.RekeyPackets > 0 && ch.RekeyBytes == 0:
		return task.ReasonPackets
	case ch.RekeyBytes > 0 && bytes >= ch.RekeyBytes:
		return task.ReasonBytes
	case ch.RekeyPackets > 0 && packets >= ch.RekeyPackets:
		return task.ReasonPackets
	}
	return task.ReasonBytes + " or " + task.ReasonPackets
}

// hardReason names the hard limit a data-plane event reports.
func hardReason(cc *config.Child, bytes, packets uint64) string {
	switch {
	case cc == nil || (cc.LifeBytes == 0 && cc.LifePackets == 0):
		return "sequence numbers exhausted"
	case cc.LifeBytes > 0 && cc.LifePackets == 0:
		return "life_bytes"
	case cc.LifePackets > 0 && cc.LifeBytes == 0:
		return "life_packets"
	case bytes >= uint64(cc.LifeBytes):
		return "life_bytes"
	case packets >= uint64(cc.LifePackets):
		return "life_packets"
	}
	return "life_bytes or life_packets"
}

func (w *Worker) childConfig(m *manager.Manager, ch *sa.ChildSA) *config.Child {
	conn := w.env.Config().Connections[m.IKE.ConnName]
	if conn == nil {
		return nil
	}
	return conn.Children[ch.Name]
}

// Rekey starts a rekey of the selected Child SAs (or of the IKE SAs, when
// no child is named), as an operator asks; it returns how many.
func (w *Worker) Rekey(sel Target, ike bool) int {
	defer w.runPending()
	n := 0
	for _, m := range w.Managers() {
		i := m.IKE
		if m.Destroyed() || i.State != sa.Established || (sel.IKEID != 0 && i.UniqueID != sel.IKEID) || (sel.Conn != "" && i.ConnName != sel.Conn) {
			continue
		}
		if ike {
			m.Queue(task.NewIKERekeyI(task.ReasonOperator))
			n++
		} else {
			for _, ch := range i.Children {
				if ch.State == sa.ChildInstalled && !ch.Redundant && (sel.Child == "" || ch.Name == sel.Child) &&
					(sel.ChildID == 0 || ch.UniqueID == sel.ChildID) && !rekeyQueued(m, ch) {
					m.Queue(task.NewChildRekeyI(ch, task.ReasonOperator))
					n++
				}
			}
		}
		m.Initiate()
		w.schedule(m)
	}
	return n
}

// Find returns the live IKE SA whose SPI (ours) is ourSPI, or nil: for a
// command on the worker's goroutine, which must neither keep nor change
// it. Unlike List, it copies nothing (a migration asks it about each IKE
// SA it waits to move, every 50 ms).
func (w *Worker) Find(ourSPI uint64) *sa.IKESA {
	if m := w.bySPI[ourSPI]; m != nil && !m.Destroyed() {
		return m.IKE
	}
	return nil
}

// ErrBusy is returned by Detach for an IKE SA with an exchange of ours in
// flight or queued, a request of the peer's waiting for its Child SA's
// install (whose answer comes back to this worker), or not established
// yet: move it once it is idle.
var ErrBusy = errors.New("IKE SA has an exchange in flight")

// Detach takes an established, idle IKE SA out of the worker without
// touching the data plane or telling the peer, and returns it (ciphers
// included) for another worker's Restore: the step of migrating an IKE SA
// between workers when the SPU map changes (issue 8). Datagrams of the IKE
// SA that reach this worker afterwards are unknown here; the caller moves
// the datagram routing first.
func (w *Worker) Detach(ourSPI uint64) (*sa.IKESA, error) {
	m := w.bySPI[ourSPI]
	if m == nil || m.Destroyed() {
		return nil, fmt.Errorf("no IKE SA with SPI %016x", ourSPI)
	}
	if m.IKE.State == sa.Created || m.IKE.State == sa.Connecting {
		// Being set up: it moves once established, and its datagrams stay
		// with this worker meanwhile (it failed where they went to the new
		// owner, which does not know it).
		return nil, ErrBusy
	}
	if m.IKE.State != sa.Established && m.IKE.State != sa.Rekeyed {
		return nil, fmt.Errorf("IKE SA %s is %s, not established", m.IKE.SPIs(), m.IKE.State)
	}
	if m.Busy() || m.Installing() || len(m.Queued()) > 0 || m.Deferred() > 0 {
		return nil, ErrBusy
	}
	delete(w.bySPI, ourSPI)
	w.byID.remove(m)
	m.DropFragments()
	w.forgetInit(m)
	w.endHalfOpen(m)
	w.peers.remove(m)
	delete(w.sched, m)
	delete(w.loadSAs, m.IKE)
	// A successor on another worker then sends on its own terms (its hold
	// expires, or traffic arrives through it).
	w.dropClaims(m.IKE, true)
	m.Logger().Info("IKE SA detached for migration")
	return m.IKE, nil
}
