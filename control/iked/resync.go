package iked

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/ts"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// trapEntry is an installed trap.
type trapEntry struct {
	task.Trap
	Conn, Child   string
	Local, Remote netip.Addr
}

// trapTable is immutable once stored; changes copy it (under trapMu), so
// that workers read it with no lock.
type trapTable struct {
	byName  map[string]trapEntry
	byReqID map[uint32]trapEntry
	// pairs counts the traps between two addresses (local, remote), which
	// anchor the IKE SAs between them (between).
	pairs map[[2]netip.Addr]int
}

func (t *trapTable) with(e trapEntry) *trapTable {
	n := &trapTable{byName: map[string]trapEntry{}, byReqID: map[uint32]trapEntry{}}
	for k, v := range t.byName {
		n.byName[k] = v
	}
	for k, v := range t.byReqID {
		n.byReqID[k] = v
	}
	n.byName[e.Conn+"/"+e.Child] = e
	n.byReqID[e.ReqID] = e
	n.index()
	return n
}

func (t *trapTable) without(key string) *trapTable {
	n := &trapTable{byName: map[string]trapEntry{}, byReqID: map[uint32]trapEntry{}}
	for k, v := range t.byName {
		if k != key {
			n.byName[k] = v
			n.byReqID[v.ReqID] = v
		}
	}
	n.index()
	return n
}

// index counts the traps by their endpoints.
func (t *trapTable) index() {
	t.pairs = map[[2]netip.Addr]int{}
	for _, e := range t.byName {
		t.pairs[[2]netip.Addr{e.Local, e.Remote}]++
	}
}

// between reports whether a trap lies between local and remote: with
// ike_anchor ike-sa, the IKE SAs a peer there initiates are anchored by
// the endpoints, where the trap's policy is, so that their Child SAs take
// the trap over (worker.TrapFinder).
func (t *trapTable) between(local, remote netip.Addr) bool {
	return t.pairs[[2]netip.Addr{local, remote}] > 0
}

// hostAddrs answers worker.Endpoints' question from the kernel.
type hostAddrs struct{}

func (hostAddrs) LocalAddrFor(remote netip.Addr) (netip.Addr, error) { return localAddrFor(remote) }

// trapSelectors are the selectors of a child's trap.
func trapSelectors(conn *config.Conn, cc *config.Child) (local, remote netip.Addr, lts, rts []ipsec.Selector, err error) {
	local, remote, err = worker.Endpoints(hostAddrs{}, conn)
	if err != nil {
		return
	}
	return local, remote, ts.FromConfig(cc.LocalSelectors, local), ts.FromConfig(cc.RemoteSelectors, remote), nil
}

// installTrap installs the trap policy of a child, unless it has one.
func (d *Daemon) installTrap(connName, child string) error {
	d.trapMu.Lock()
	defer d.trapMu.Unlock()
	key := connName + "/" + child
	if _, ok := d.traps.Load().byName[key]; ok {
		return nil
	}
	conn := d.cfg.Load().Connections[connName]
	if conn == nil || conn.Children[child] == nil {
		return fmt.Errorf("no child %q in connection %q", child, connName)
	}
	local, remote, lts, rts, err := trapSelectors(conn, conn.Children[child])
	if err != nil {
		return err
	}
	e := trapEntry{Trap: task.Trap{ReqID: d.reqid.Add(1), Logical: int(d.fn.Logical(local, remote)), LocalTS: lts, RemoteTS: rts},
		Conn: connName, Child: child, Local: local, Remote: remote}
	id, err := d.dp.AddPolicy(&api.Policy{ReqID: e.ReqID, Action: api.Protect, Local: local, Remote: remote,
		LocalTS: slices.Clone(lts), RemoteTS: slices.Clone(rts), Name: task.TrapName(connName, child)})
	if err != nil {
		return fmt.Errorf("trap policy %s === %s: %w", ipsec.Selectors(lts), ipsec.Selectors(rts), err)
	}
	e.PolicyID = id
	d.traps.Store(d.traps.Load().with(e))
	d.log.Info("iked: trap installed", "conn", connName, "child", child, "reqid", e.ReqID, "policy", id,
		"local_ts", ipsec.Selectors(lts), "remote_ts", ipsec.Selectors(rts))
	return nil
}

// removeTrap removes a child's trap policy.
func (d *Daemon) removeTrap(connName, child string) {
	d.trapMu.Lock()
	defer d.trapMu.Unlock()
	key := connName + "/" + child
	e, ok := d.traps.Load().byName[key]
	if !ok {
		return
	}
	if err := d.dp.DelPolicy(e.PolicyID); err != nil {
		d.log.Warn("iked: remove trap", "conn", connName, "child", child, "err", err.Error())
	}
	d.traps.Store(d.traps.Load().without(key))
	d.log.Info("iked: trap removed", "conn", connName, "child", child)
}

// adoptTraps rebuilds the trap table from spud's policies: a trap policy
// of a configured child with the configured selectors is kept as that
// child's trap.
func (d *Daemon) adoptTraps(pols []api.PolicyState) {
	d.trapMu.Lock()
	defer d.trapMu.Unlock()
	cfg := d.cfg.Load()
	t := &trapTable{byName: map[string]trapEntry{}, byReqID: map[uint32]trapEntry{}}
	for _, p := range pols {
		if !strings.HasPrefix(p.Name, task.NamePrefix) || !strings.HasSuffix(p.Name, "/trap") {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(p.Name, task.NamePrefix), "/")
		if len(parts) != 3 {
			continue
		}
		conn := cfg.Connections[parts[0]]
		if conn == nil || conn.Children[parts[1]] == nil {
			continue
		}
		local, remote, lts, rts, err := trapSelectors(conn, conn.Children[parts[1]])
		if err != nil || !ts.Equal(lts, p.LocalTS) || !ts.Equal(rts, p.RemoteTS) ||
			local != p.Local || remote != p.Remote {
			continue
		}
		t = t.with(trapEntry{Trap: task.Trap{ReqID: p.ReqID, PolicyID: p.ID, Logical: int(d.fn.Logical(local, remote)), LocalTS: lts, RemoteTS: rts},
			Conn: parts[0], Child: parts[1], Local: local, Remote: remote})
	}
	d.traps.Store(t)
}

type saKey struct {
	spi uint32
	dir api.Dir
}

// restore takes the persisted IKE SAs over and resyncs with spud.
func (d *Daemon) restore() error {
	ikes, lost, err := d.store.load()
	if err != nil {
		return fmt.Errorf("iked: restore: %w", err)
	}
	for _, err := range lost {
		d.stats.Inc(stats.StatesLost)
		d.log.Error("iked: an IKE SA's state could not be restored; its SAs in spud are kept for its peer to replace", "err", err.Error())
	}
	d.lostStates.Store(int32(len(lost)))
	maxID := uint32(0)
	for _, ike := range ikes {
		maxID = max(maxID, ike.UniqueID)
		for _, ch := range ike.Children {
			maxID = max(maxID, ch.UniqueID)
		}
	}
	d.ids.Store(maxID)
	for _, ike := range ikes {
		l := d.ownerOf(ike)
		if !ike.Anchored {
			d.legacy.set(ike.OurSPI(), l)
		}
		ike := ike
		var rerr error
		if err := d.post(l, func(w *worker.Worker) { rerr = w.Restore(ike) }); err != nil {
			return err
		}
		if rerr != nil {
			d.log.Warn("iked: restore", "ike_id", ike.UniqueID, "err", rerr.Error())
		}
	}
	if len(ikes) > 0 {
		d.log.Info("iked: restored IKE SAs", "count", len(ikes))
	}
	return d.resync(ikes)
}

// resync compares iked's Child SAs with spud's SAs and policies and
// re-installs what spud lacks (all of it after spud restarted), adopts
// or re-creates the traps, then deletes after the grace period what spud
// holds under iked's name that no IKE SA owns.
func (d *Daemon) resync(restored []*sa.IKESA) error {
	c, err := d.dp.client()
	if err != nil {
		return err
	}
	sas, err := c.DumpSAs(false)
	if err != nil {
		return fmt.Errorf("iked: resync: %w", err)
	}
	pols, err := c.DumpPolicies()
	if err != nil {
		return fmt.Errorf("iked: resync: %w", err)
	}
	maxReqID := d.reqid.Load()
	for _, s := range sas {
		maxReqID = max(maxReqID, s.ReqID)
	}
	for _, p := range pols {
		maxReqID = max(maxReqID, p.ReqID)
	}
	for _, ike := range restored {
		for _, ch := range ike.Children {
			maxReqID = max(maxReqID, ch.ReqID)
		}
	}
	d.reqid.Store(maxReqID)
	haveSA := map[saKey]bool{}
	for _, s := range sas {
		haveSA[saKey{s.SPI, s.Dir}] = true
	}
	havePol := map[uint32]bool{}
	for _, p := range pols {
		havePol[p.ID] = true
	}
	d.adoptTraps(pols)
	cfg := d.cfg.Load()
	for _, name := range cfg.Order {
		conn := cfg.Connections[name]
		for _, cn := range conn.ChildOrder {
			if conn.Children[cn].StartAction == "trap" {
				if err := d.installTrap(name, cn); err != nil {
					d.log.Warn("iked: trap", "conn", name, "child", cn, "err", err.Error())
				}
			}
		}
	}
	var reinstalled, kept int
	err = d.each(func(l *loop, w *worker.Worker) {
		w.Do(func(ms []*manager.Manager) {
			for _, m := range ms {
				r, k := d.reinstall(l, m, haveSA, havePol)
				reinstalled += r
				kept += k
			}
		})
	})
	if reinstalled+kept > 0 {
		d.log.Info("iked: resynced with spud", "child_sas_kept", kept, "child_sas_reinstalled", reinstalled)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-time.After(d.opts.Grace):
			d.sweep()
		case <-d.ctx.Done():
		}
	}()
	return err
}

// reinstall puts into spud what it lacks of an IKE SA's Child SAs. It runs
// on the IKE SA's worker.
func (d *Daemon) reinstall(l *loop, m *manager.Manager, haveSA map[saKey]bool, havePol map[uint32]bool) (reinstalled, kept int) {
	ike := m.IKE
	if ike.State != sa.Established {
		return 0, 0
	}
	conn := d.cfg.Load().Connections[ike.ConnName]
	changed := false
	for _, ch := range ike.Children {
		if ch.State != sa.ChildInstalled && ch.State != sa.ChildRekeying && ch.State != sa.ChildRekeyed {
			continue
		}
		var cc *config.Child
		if conn != nil {
			cc = conn.Children[ch.Name]
		}
		inOK, outOK := haveSA[saKey{ch.SPIIn, api.In}], haveSA[saKey{ch.SPIOut, api.Out}] || ch.OutPending
		if ch.Trap {
			tr, ok := d.traps.Load().byName[ike.ConnName+"/"+ch.Name]
			if !ok || tr.ReqID != ch.ReqID {
				// The trap is gone or new: carry on with the trap's reqid if
				// the SAs must be installed anyway, else with a policy of
				// its own.
				if ok && !inOK && !outOK && ts.Equal(tr.LocalTS, ch.LocalTS) && ts.Equal(tr.RemoteTS, ch.RemoteTS) {
					ch.ReqID = tr.ReqID
				} else {
					ch.Trap = false
				}
				changed = true
			}
		}
		in, out, err := task.ChildSAs(ike, ch, cc, task.SAName(ike.ConnName, ch.Name, ch.UniqueID))
		if err != nil {
			m.Logger().Warn("iked: resync: child sa", "child", ch.Name, "err", err.Error())
			continue
		}
		if inOK && outOK {
			kept++
		} else {
			reinstalled++
		}
		var pols []uint32
		for _, id := range ch.PolicyIDs {
			if havePol[id] {
				pols = append(pols, id)
			}
		}
		if len(pols) != len(ch.PolicyIDs) {
			changed = true
		}
		// A Child SA spud lost whole (it restarted) goes back in one
		// child.add rather than three calls.
		whole := false
		if !inOK && !haveSA[saKey{ch.SPIOut, api.Out}] && len(pols) == 0 && in.Logical != nil {
			req := &api.ChildAdd{Logical: *in.Logical, In: *in}
			if !ch.OutPending {
				req.Out = out
			}
			if !ch.Trap {
				req.Policy = &api.Policy{ReqID: ch.ReqID, Action: api.Protect, Local: in.Local, Remote: in.Remote, Logical: in.Logical,
					LocalTS: in.LocalTS, RemoteTS: in.RemoteTS, Name: in.Name}
			}
			// Refused (a part of it there after all), it leaves nothing,
			// and the separate calls put in what they can, as before.
			id, err := l.dp.AddChild(req)
			if err != nil && !errors.Is(err, task.ErrNoChildOps) {
				m.Logger().Warn("iked: resync: child sa, trying its parts", "child", ch.Name, "spi", fmt.Sprintf("%08x", in.SPI), "err", err.Error())
			}
			if whole = err == nil; whole && id != 0 {
				pols = append(pols, id)
				changed = true
			}
		}
		if !inOK && !whole {
			if err := l.dp.AddSA(in); err != nil {
				m.Logger().Warn("iked: resync: inbound sa", "spi", fmt.Sprintf("%08x", in.SPI), "err", err.Error())
			}
		}
		if !outOK {
			if !whole {
				if err := l.dp.AddSA(out); err != nil {
					m.Logger().Warn("iked: resync: outbound sa", "spi", fmt.Sprintf("%08x", out.SPI), "err", err.Error())
				}
			}
			// The data plane lost the outbound SA's sequence numbers: the
			// peer's anti-replay window would drop what it sends now. Replace
			// the Child SA at once, whichever side created it.
			if conn != nil && cc != nil && ch.State == sa.ChildInstalled {
				m.Queue(task.NewChildRekeyI(ch, task.ReasonResync))
				defer m.Initiate()
				m.Logger().Info("iked: resync: replacing a Child SA the data plane lost", "child", ch.Name, "child_id", ch.UniqueID)
			}
		}
		if len(pols) == 0 && !ch.Trap && !whole {
			id, err := l.dp.AddPolicy(&api.Policy{ReqID: ch.ReqID, Action: api.Protect, Local: in.Local, Remote: in.Remote, Logical: in.Logical,
				LocalTS: in.LocalTS, RemoteTS: in.RemoteTS, Name: in.Name})
			if err != nil {
				m.Logger().Warn("iked: resync: policy", "child", ch.Name, "err", err.Error())
			} else {
				pols = append(pols, id)
				changed = true
			}
		}
		ch.PolicyIDs = pols
	}
	if changed {
		(&workerEnv{d: d, l: l}).Changed(ike)
	}
	return reinstalled, kept
}

// sweep deletes what spud holds under iked's name that no IKE SA or trap
// owns: Child SAs of IKE SAs lost with a crash before they were persisted,
// or deleted while iked was down.
func (d *Daemon) sweep() {
	c, err := d.dp.client()
	if err != nil {
		return
	}
	sas, err1 := c.DumpSAs(false)
	pols, err2 := c.DumpPolicies()
	if err1 != nil || err2 != nil {
		d.log.Warn("iked: sweep", "err", fmt.Sprint(err1, err2))
		return
	}
	ownedSA := map[saKey]bool{}
	ownedPol := map[uint32]bool{}
	for _, t := range d.traps.Load().byName {
		ownedPol[t.PolicyID] = true
	}
	if err := d.each(func(l *loop, w *worker.Worker) {
		if l.wdp != nil {
			l.wdp.owned(ownedSA, ownedPol)
		}
		for _, ike := range w.List() {
			for _, dr := range ike.Draining {
				ownedSA[saKey{dr.SPI, api.In}] = true
			}
			for _, ch := range ike.Children {
				ownedSA[saKey{ch.SPIIn, api.In}] = true
				ownedSA[saKey{ch.SPIOut, api.Out}] = true
				for _, id := range ch.PolicyIDs {
					ownedPol[id] = true
				}
			}
		}
	}); err != nil {
		d.log.Warn("iked: sweep", "err", err.Error())
		return
	}
	if n := d.lostStates.Swap(0); n > 0 {
		// Some of these belong to IKE SAs whose state is lost: they carry
		// traffic until the peer's rekey or DPD replaces them, so they are
		// removed only when their lifetime would have ended them.
		var keptSA, keptPol int
		for _, p := range pols {
			if strings.HasPrefix(p.Name, task.NamePrefix) && !ownedPol[p.ID] {
				keptPol++
			}
		}
		for _, s := range sas {
			if strings.HasPrefix(s.Name, task.NamePrefix) && !ownedSA[saKey{s.SPI, s.Dir}] {
				keptSA++
			}
		}
		after := d.maxChildLife()
		d.log.Error("iked: SAs and policies no restored IKE SA owns are kept, as IKE SA states could not be restored",
			"sas", keptSA, "policies", keptPol, "states_lost", n, "removed_in", after.String())
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			select {
			case <-time.After(after):
				d.sweep()
			case <-d.ctx.Done():
			}
		}()
		return
	}
	var delSA, delPol int
	for _, p := range pols {
		if strings.HasPrefix(p.Name, task.NamePrefix) && !ownedPol[p.ID] {
			if err := c.DelPolicy(p.ID); err == nil {
				delPol++
			}
		}
	}
	for _, s := range sas {
		if strings.HasPrefix(s.Name, task.NamePrefix) && !ownedSA[saKey{s.SPI, s.Dir}] {
			if err := c.DelSA(api.SAID{SPI: s.SPI, Dir: s.Dir, Remote: s.Remote}); err == nil {
				delSA++
			}
		}
	}
	if delSA+delPol > 0 {
		d.log.Info("iked: removed SAs and policies no IKE SA owns", "sas", delSA, "policies", delPol, "grace", d.opts.Grace)
	}
}

// watchSpud follows spud's events and, when the connection to spud is
// lost, reconnects and resyncs.
func (d *Daemon) watchSpud(c *api.Client) {
	defer d.wg.Done()
	for {
		events, err := c.Subscribe()
		if err == nil {
			d.events(events)
		}
		if d.ctx.Err() != nil {
			return
		}
		d.dp.c.Store(nil)
		c.Close()
		for _, l := range d.loops {
			if old := l.dp.c.Swap(nil); old != nil {
				old.Close()
			}
		}
		d.log.Warn("iked: connection to spud lost; reconnecting")
		lost := time.Now()
		for {
			nc, h, err := dialSpud(d.ctx, d.log, d.cfg.Load().SPUD, time.Minute)
			if d.ctx.Err() != nil {
				return
			}
			if err != nil {
				continue
			}
			var hk [16]byte
			copy(hk[:], h.AnchorKey)
			if f := d.fn.HashKey(); f != hk || h.Logical != d.fn.L() {
				d.log.Error("iked: spud came back with another anchor function (key file lost?): tunnels may land on the wrong worker until iked restarts")
			}
			if m, err := mapOf(h.Map); err == nil {
				d.spus.Store(m)
			}
			ok := true
			for _, l := range d.loops {
				wc, err := api.Dial(d.cfg.Load().SPUD)
				if err != nil {
					ok = false
					break
				}
				l.dp.c.Store(wc)
			}
			if !ok {
				nc.Close()
				continue
			}
			d.dp.c.Store(nc)
			c = nc
			break
		}
		if err := d.resync(nil); err != nil {
			d.log.Warn("iked: resync after reconnection", "err", err.Error())
		}
		// How long the SA API was away: for a restarted spud, the outage
		// of new Child SAs and rekeys (traffic stops only while spud is
		// down and its SAs are not yet back).
		d.log.Info("iked: reconnected to spud", "away", time.Since(lost).Round(time.Millisecond).String())
	}
}

// events handles spud's events until the connection closes.
func (d *Daemon) events(events <-chan unixrpc.Event) {
	for {
		select {
		case <-d.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Kind {
			case api.EventAcquire:
				var a api.Acquire
				if json.Unmarshal(ev.Body, &a) == nil {
					d.acquire(a)
				}
			case api.EventSPUMap:
				var list api.SPUList
				if json.Unmarshal(ev.Body, &list) == nil {
					if err := d.followMap(list); err != nil {
						d.log.Error("iked: follow spud's SPU map", "err", err.Error())
					}
				}
			case api.EventSoftLifetime, api.EventSeqNear, api.EventHardLifetime:
				var e api.SAEvent
				if json.Unmarshal(ev.Body, &e) == nil {
					d.saEvent(ev.Kind, e)
				}
			}
		}
	}
}

// acquire starts the negotiation of a trapped child on its anchor's worker.
func (d *Daemon) acquire(a api.Acquire) {
	t, ok := d.traps.Load().byReqID[a.ReqID]
	if !ok {
		return
	}
	d.stats.Inc(stats.Acquires)
	l := d.owner(t.Local, t.Remote)
	conn, child := t.Conn, t.Child
	select {
	case l.cmds <- func(w *worker.Worker) {
		if err := w.Initiate(conn, child, nil); err != nil {
			l.log.Warn("iked: acquire", "conn", conn, "child", child, "err", err.Error())
		} else {
			l.log.Debug("iked: acquire", "conn", conn, "child", child, "src", a.Src.String(), "dst", a.Dst.String())
		}
	}:
	default:
	}
}

// saEvent applies a lifetime event of the data plane to its Child SA: a
// soft limit (or sequence numbers running out) replaces it now, a hard
// limit deletes it.
func (d *Daemon) saEvent(kind string, e api.SAEvent) {
	ev := worker.SoftLimit
	switch kind {
	case api.EventHardLifetime:
		ev = worker.HardLimit
	case api.EventSeqNear:
		ev = worker.SeqNear
	}
	for _, l := range d.loops {
		select {
		case l.cmds <- func(w *worker.Worker) { w.ChildEvent(e.SPI, e.Dir == api.In, ev, e.Bytes, e.Packets) }:
		default:
		}
	}
}

// maxChildLife is the longest life_time of any Child SA the configuration
// makes: no Child SA of an IKE SA whose state was lost outlives it.
func (d *Daemon) maxChildLife() time.Duration {
	longest := config.DefaultChildRekey + config.DefaultChildRekey/10
	cfg := d.cfg.Load()
	for _, conn := range cfg.Connections {
		for _, ch := range conn.Children {
			longest = max(longest, ch.LifeTime.D())
		}
	}
	return longest
}
