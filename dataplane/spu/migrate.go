package spu

// Migration: when the logical -> physical map changes (an SPU drained,
// added back, or failed), the SAs and policies of each moved logical SPU go
// from the old SPU to the new one with all their state (the esp.SA objects
// themselves move: sequence numbers, anti-replay windows, lifetimes and
// counters come along), and no tunnel is renegotiated.
//
// The order makes it lossless:
//
//  1. mark each moving logical SPU "moving to q";
//  2. switch the map: from now on every SPU hands packets of it to q, which
//     holds them (it has no SAs for it yet);
//  3. on the old SPU p, between two batches, take its SAs and policies out
//     (p finished every packet it had started with them);
//  4. on q, install them, clear the mark and process what it held.
//
// A failed SPU cannot run step 3: its tables are taken directly, which is
// safe once its goroutine has exited (a panic) and a documented risk for a
// stalled one (it is marked stopped, so that it touches nothing if it ever
// resumes at the top of its loop).

import (
	"errors"
	"fmt"
	"github.com/spugate/spugate/dataplane/ring"
	"slices"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/xsk"
)

const (
	holdSlots = 256
	holdTTL   = int64(time.Second)
)

type heldPkt struct {
	meta     ring.Meta // Off and L3 are 0: buf holds the IP packet
	deadline int64
	buf      [pendingSize]byte
}

type holdStore struct {
	slots [holdSlots]heldPkt
	used  int
}

// hold keeps a copy of the IP packet m places in buf until its logical
// SPU has arrived here. It reports false (the caller drops) when the store
// is full or the packet too big.
func (s *SPU) hold(buf []byte, m *ring.Meta) bool {
	h := &s.held
	off, end := m.IP()
	if h.used == holdSlots || end-off > pendingSize {
		return false
	}
	p := &h.slots[h.used]
	h.used++
	p.meta = *m
	p.meta.Off, p.meta.L3, p.meta.Len = 0, 0, int32(copy(p.buf[:], buf[off:end]))
	p.deadline = nanotime() + holdTTL
	return true
}

// release processes the held packets of logical, and drops expired ones.
func (s *SPU) release(logical uint16) {
	h := &s.held
	now := nanotime()
	w := 0
	for i := 0; i < h.used; i++ {
		p := &h.slots[i]
		switch {
		case p.meta.Logical == logical:
			s.process(p.buf[:], &p.meta)
		case p.deadline < now:
			s.drop(DropMigrating)
		default:
			if w != i {
				h.slots[w] = *p
			}
			w++
		}
	}
	h.used = w
}

// bundle is what moves with a logical SPU.
type bundle struct {
	logical  uint16
	ins      []*inSA
	outs     []*outSA // in install order
	policies []*policy
}

// extract takes the SAs and policies of the given logical SPUs out of t.
func (t *tables) extract(logicals map[uint16]bool) map[uint16]*bundle {
	out := map[uint16]*bundle{}
	get := func(l uint16) *bundle {
		b := out[l]
		if b == nil {
			b = &bundle{logical: l}
			out[l] = b
		}
		return b
	}
	for spi, x := range t.in {
		if logicals[x.logical] {
			get(x.logical).ins = append(get(x.logical).ins, x)
			delete(t.in, spi)
			x.sa.SetOwner(nil) // warm as it is, onto its new SPU's list
		}
	}
	reqids := map[uint32]bool{}
	for k, x := range t.out {
		if logicals[x.logical] {
			get(x.logical).outs = append(get(x.logical).outs, x)
			t.unlinkOut(k, x)
			x.sa.SetOwner(nil)
			reqids[x.desc.reqid] = true
		}
	}
	for id, p := range t.policies {
		if logicals[p.logical] {
			get(p.logical).policies = append(get(p.logical).policies, p)
			t.delPolicy(id)
		}
	}
	for r := range reqids {
		t.relink(r)
	}
	for _, b := range out {
		slices.SortFunc(b.outs, func(x, y *outSA) int { return int(x.added) - int(y.added) })
	}
	return out
}

func (t *tables) install(b *bundle) {
	for _, x := range b.ins {
		t.addIn(x)
	}
	for _, x := range b.outs {
		x.nhOK = false
		t.addOut(x)
	}
	for _, p := range b.policies {
		t.addPolicy(p)
	}
}

// migration state of the engine, one entry per logical SPU: 0, or the
// destination SPU + 1 while the logical SPU moves there.
type migration struct {
	to []atomic.Int32
}

func (e *Engine) movingTo(logical uint16) int {
	if int(logical) >= len(e.mig.to) {
		return -1
	}
	return int(e.mig.to[logical].Load()) - 1
}

// SetMap moves to map m: every logical SPU whose physical SPU changes moves
// with its SAs and policies, losslessly. It returns the moves made.
func (e *Engine) SetMap(m *anchor.Map) ([]anchor.Move, error) {
	e.migMu.Lock()
	defer e.migMu.Unlock()
	return e.setMap(m, -1)
}

// setMap does the work; a failed SPU (failed >= 0) has its tables taken
// directly. The caller holds migMu.
func (e *Engine) setMap(m *anchor.Map, failed int) ([]anchor.Move, error) {
	old := e.spuMap.Load()
	if m.Len() != old.Len() {
		return nil, fmt.Errorf("spu: map of %d entries, want %d", m.Len(), old.Len())
	}
	var moves []anchor.Move
	from := map[int]map[uint16]bool{}
	for l := 0; l < m.Len(); l++ {
		o, n := old.Physical(uint16(l)), m.Physical(uint16(l))
		if int(n) >= len(e.spus) {
			return nil, fmt.Errorf("spu: map names SPU %d of %d", n, len(e.spus))
		}
		if o == n {
			continue
		}
		if e.spus[n].ctl.state.Load() != stateActive {
			return nil, fmt.Errorf("spu: map gives logical SPU %d to SPU %d, which is %s", l, n, e.spus[n].State())
		}
		moves = append(moves, anchor.Move{Logical: uint16(l), From: o, To: n})
		if from[int(o)] == nil {
			from[int(o)] = map[uint16]bool{}
		}
		from[int(o)][uint16(l)] = true
	}
	if len(moves) == 0 {
		e.spuMap.Store(m)
		return nil, nil
	}
	start := time.Now()
	for _, mv := range moves {
		e.mig.to[mv.Logical].Store(int32(mv.To) + 1)
	}
	e.spuMap.Store(m)
	e.mapGen.Add(1)
	// Take the moving tables out of their old SPUs.
	bundles := map[uint16]*bundle{}
	for p, ls := range from {
		var got map[uint16]*bundle
		if p == failed {
			got = e.spus[p].t.extract(ls)
		} else if err := e.Do(p, func(s *SPU) { got = s.t.extract(ls) }); err != nil {
			// The SPU is stuck: take its tables anyway (see above).
			e.cfg.Log.Error(fmt.Sprintf("spu %d: %v: taking its tables directly", p, err))
			got = e.spus[p].t.extract(ls)
		}
		for l, b := range got {
			bundles[l] = b
		}
	}
	// Install them on the new SPUs, and let those process what they held.
	byDest := map[int][]anchor.Move{}
	for _, mv := range moves {
		byDest[int(mv.To)] = append(byDest[int(mv.To)], mv)
	}
	var errs []error
	for q, mvs := range byDest {
		err := e.Do(q, func(s *SPU) {
			for _, mv := range mvs {
				if b := bundles[mv.Logical]; b != nil {
					s.t.install(b)
				}
				e.mig.to[mv.Logical].Store(0)
				s.release(mv.Logical)
			}
		})
		if err != nil {
			errs = append(errs, err)
			for _, mv := range mvs {
				e.mig.to[mv.Logical].Store(0)
			}
		}
	}
	e.migrations.Add(uint64(len(moves)))
	e.cfg.Log.Info(fmt.Sprintf("spu: map changed: %d logical SPUs moved in %v", len(moves), time.Since(start).Round(time.Microsecond)))
	return moves, errors.Join(errs...)
}

// SPU states.
const (
	stateActive int32 = iota
	stateDrained
	stateFailed
)

var stateNames = [...]string{stateActive: "active", stateDrained: "drained", stateFailed: "failed"}

// State names the SPU's state: active, drained or failed.
func (s *SPU) State() string {
	if st := s.ctl.state.Load(); st >= 0 && int(st) < len(stateNames) {
		return stateNames[st]
	}
	return stateNames[stateActive]
}

// SPUState returns the state of SPU id.
func (e *Engine) SPUState(id int) string { return e.spus[id].State() }

func (e *Engine) activeSPUs(except int) []uint16 {
	var ids []uint16
	for _, s := range e.spus {
		if s.ID != except && s.ctl.state.Load() == stateActive {
			ids = append(ids, uint16(s.ID))
		}
	}
	return ids
}

// Drain takes SPU id out of service: its logical SPUs move to the others,
// and its sockets are served by another SPU. It keeps running, idle.
func (e *Engine) Drain(id int) ([]anchor.Move, error) {
	e.migMu.Lock()
	defer e.migMu.Unlock()
	if id < 0 || id >= len(e.spus) {
		return nil, fmt.Errorf("spu: no SPU %d", id)
	}
	s := e.spus[id]
	if s.ctl.state.Load() != stateActive {
		return nil, fmt.Errorf("spu %d is %s", id, s.State())
	}
	active := e.activeSPUs(id)
	if len(active) == 0 {
		return nil, fmt.Errorf("spu %d is the last SPU in service", id)
	}
	m, _, err := e.spuMap.Load().Rebuild(active)
	if err != nil {
		return nil, err
	}
	s.ctl.state.Store(stateDrained)
	moves, err := e.setMap(m, -1)
	if err != nil {
		s.ctl.state.Store(stateActive)
		return moves, err
	}
	return moves, e.movePorts(id, e.leastPorts(id))
}

// Add puts SPU id back in service: it takes its share of logical SPUs and
// its own sockets back.
func (e *Engine) Add(id int) ([]anchor.Move, error) {
	e.migMu.Lock()
	defer e.migMu.Unlock()
	if id < 0 || id >= len(e.spus) {
		return nil, fmt.Errorf("spu: no SPU %d", id)
	}
	s := e.spus[id]
	switch s.ctl.state.Load() {
	case stateActive:
		return nil, fmt.Errorf("spu %d is in service already", id)
	case stateFailed:
		return nil, fmt.Errorf("spu %d failed; restart spud to bring it back", id)
	}
	s.ctl.state.Store(stateActive)
	if err := e.takePortsBack(id); err != nil {
		return nil, err
	}
	m, _, err := e.spuMap.Load().Rebuild(e.activeSPUs(-1))
	if err != nil {
		return nil, err
	}
	return e.setMap(m, -1)
}

// leastPorts picks the active SPU with the fewest sockets, other than id.
func (e *Engine) leastPorts(id int) int {
	best, n := -1, 1<<30
	for _, s := range e.spus {
		if s.ID == id || s.ctl.state.Load() != stateActive {
			continue
		}
		if c := int(s.io.nports.Load()); c < n {
			best, n = s.ID, c
		}
	}
	return best
}

// movePorts hands every socket of SPU from to SPU to.
func (e *Engine) movePorts(from, to int) error {
	if to < 0 {
		return errors.New("spu: no SPU to take the sockets over")
	}
	var ports []*portState
	take := func(s *SPU) {
		for _, p := range s.io.ports {
			s.flushPort(p)
		}
		ports = s.io.ports
		s.setPorts(nil)
	}
	if e.spus[from].ctl.state.Load() == stateFailed {
		take(e.spus[from])
	} else if err := e.Do(from, take); err != nil {
		return err
	}
	return e.Do(to, func(s *SPU) { s.setPorts(append(s.io.ports, ports...)) })
}

// takePortsBack returns to SPU id the sockets first given to it.
func (e *Engine) takePortsBack(id int) error {
	home := e.spus[id].io.home
	for _, other := range e.spus {
		if other.ID == id {
			continue
		}
		var back []*portState
		err := e.Do(other.ID, func(s *SPU) {
			var keep []*portState
			for _, p := range s.io.ports {
				if slices.Contains(home, p) {
					s.flushPort(p)
					back = append(back, p)
				} else {
					keep = append(keep, p)
				}
			}
			if len(back) > 0 {
				s.setPorts(keep)
			}
		})
		if err != nil {
			return err
		}
		if len(back) > 0 {
			if err := e.Do(id, func(s *SPU) { s.setPorts(append(s.io.ports, back...)) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// setPorts replaces the SPU's sockets, its transmit index and its waiter.
// On the SPU's goroutine (or before it starts).
func (s *SPU) setPorts(ports []*portState) {
	s.io.ports = ports
	for i := range s.io.txBy {
		s.io.txBy[i] = nil
	}
	for _, p := range ports {
		for len(s.io.txBy) <= p.Ifindex {
			s.io.txBy = append(s.io.txBy, nil)
		}
		if s.io.txBy[p.Ifindex] == nil {
			s.io.txBy[p.Ifindex] = p
		}
	}
	s.io.nports.Store(int32(len(ports)))
	s.eng.updateTxOwners()
	if s.io.wait != nil {
		xp := make([]xsk.Port, len(ports))
		for i, p := range ports {
			xp[i] = p.Port.Port
		}
		s.io.wait = xsk.NewWaiter(xp, s.io.evfd)
	}
}

// updateTxOwners recomputes which SPU transmits on each interface.
func (e *Engine) updateTxOwners() {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	var owners []int
	for _, s := range e.spus {
		for ifx, p := range s.io.txBy {
			if p == nil {
				continue
			}
			for len(owners) <= ifx {
				owners = append(owners, -1)
			}
			if owners[ifx] < 0 {
				owners[ifx] = s.ID
			}
		}
	}
	e.txOwners.Store(&owners)
}

// fail declares SPU id failed (a panic in its loop, a stall past the
// watchdog's deadline, or fault injection): its logical SPUs and its sockets
// move to the SPUs still in service. spud keeps running.
func (e *Engine) fail(id int, reason string) {
	e.migMu.Lock()
	defer e.migMu.Unlock()
	s := e.spus[id]
	if s.ctl.state.Swap(stateFailed) == stateFailed {
		return
	}
	s.ctl.stopped.Store(true)
	e.failures.Add(1)
	e.cfg.Log.Error(fmt.Sprintf("spu %d: failed: %s; moving its logical SPUs and sockets", id, reason))
	// The event goes out once the new map is in place: its subscribers
	// (spud publishes the map with it, iked follows that) must not see
	// the map from before the failure.
	defer e.emit(Event{Kind: "spu.failed", SPU: id, Reason: reason})
	// Its tables, sockets and rings are taken from another goroutine, which
	// is only safe once its loop has ended: at once after a panic, and for a
	// stalled SPU when it comes back and sees that it is stopped. One that
	// does not come back within half a watchdog period is stuck for good, and
	// will not touch them again.
	if !s.ended(e.cfg.WatchdogDeadline / 2) {
		e.cfg.Log.Error(fmt.Sprintf("spu %d: still stuck; taking its tunnels and sockets over", id))
	}
	active := e.activeSPUs(id)
	if len(active) == 0 {
		e.cfg.Log.Error("spu: no SPU left in service")
		return
	}
	m, _, err := e.spuMap.Load().Rebuild(active)
	if err == nil {
		_, err = e.setMap(m, id)
	}
	if err == nil {
		err = e.movePorts(id, e.leastPorts(id))
	}
	if err != nil {
		e.cfg.Log.Error(fmt.Sprintf("spu %d: recovery: %v", id, err))
		return
	}
	s.salvage()
}

// ended waits up to d for the SPU's loop to end, and reports whether it has
// (or never ran).
func (s *SPU) ended(d time.Duration) bool {
	if !s.eng.started {
		return true
	}
	select {
	case <-s.ctl.done:
		return true
	case <-time.After(d):
		return false
	}
}

// salvage passes on what other SPUs handed to a failed SPU before the map
// stopped naming it, instead of leaving it in the rings: a fault costs the
// tunnels nothing that another core can still carry. The SPU's loop has
// ended, so the failure path is now the one consumer of its inbound rings
// and the one producer of its outbound ones, as the SPU itself was; and
// with the new map in place every frame goes to another SPU.
func (s *SPU) salvage() {
	for _, r := range s.peers.in {
		if r == nil {
			continue
		}
		for s.drain(r) {
		}
	}
	for _, to := range s.eng.spus {
		if to != s {
			to.wake()
		}
	}
}

// InjectFault makes SPU id panic in its loop, to test failure handling.
func (e *Engine) InjectFault(id int) error {
	if id < 0 || id >= len(e.spus) {
		return fmt.Errorf("spu: no SPU %d", id)
	}
	s := e.spus[id]
	if s.ctl.state.Load() != stateActive {
		return fmt.Errorf("spu %d is %s", id, s.State())
	}
	s.ctl.injectPanic.Store(true)
	s.wake()
	return nil
}

// watchdog declares an SPU failed when its loop has not come round for
// WatchdogDeadline while awake. Two stalls are not failures: one seen by a
// watchdog that itself ran late (the whole process went without CPU, as on
// a starved machine: its SPUs were not stuck, they were not run), and one
// of the last SPU in service, whose tunnels have nowhere to go (declaring
// it failed would stop spud's data plane for good).
func (e *Engine) watchdog() {
	period := e.cfg.WatchdogDeadline / 4
	t := time.NewTicker(period)
	defer t.Stop()
	last := nanotime()
	lastAlone := map[int]bool{}
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		now := nanotime()
		late := now-last > 2*int64(period)
		last = now
		if late {
			e.watchdogLate.Add(1)
			continue
		}
		for _, s := range e.spus {
			hb := s.ctl.heartbeat.Load()
			if s.ctl.state.Load() != stateActive || hb == 0 || now-hb <= int64(e.cfg.WatchdogDeadline) {
				lastAlone[s.ID] = false
				continue
			}
			stall := time.Duration(now - hb).Round(time.Millisecond)
			if len(e.activeSPUs(s.ID)) == 0 {
				if !lastAlone[s.ID] {
					e.cfg.Log.Warn(fmt.Sprintf("spu %d: no loop iteration for %v, but it is the last SPU in service: kept", s.ID, stall))
				}
				lastAlone[s.ID] = true
				continue
			}
			go e.fail(s.ID, fmt.Sprintf("stalled: no loop iteration for %v", stall))
		}
	}
}

// WatchdogLate counts the watchdog's rounds skipped because it ran late
// itself (the process was starved of CPU).
func (e *Engine) WatchdogLate() uint64 { return e.watchdogLate.Load() }

// MapGen counts map changes.
func (e *Engine) MapGen() uint64 { return e.mapGen.Load() }

// Failures counts SPUs declared failed.
func (e *Engine) Failures() uint64 { return e.failures.Load() }
