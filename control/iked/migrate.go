package iked

// Following the data plane's SPU map (issue 8): when spud moves logical
// SPUs (an SPU drained, added back or failed), the IKE SAs of the tunnels
// anchored on them move to the workers of their new SPUs with all their
// state (message IDs, the cached response, retransmission, rekey timers),
// so that the IKE SA and its Child SAs stay on one SPU and nothing is
// renegotiated.
//
// The order: the SO_REUSEPORT selector and the daemon's own dispatch switch
// to the new map first, so that new datagrams go to the new workers; then
// each old worker detaches its moved IKE SAs between two of its events and
// the new workers restore them. An IKE SA in the middle of an exchange
// cannot move (its response is on its way to it): it stays pinned to its old
// worker, which keeps its datagrams, and is retried until it is idle. A
// datagram that reaches a new worker in the moment before its IKE SA does is
// dropped there and retransmitted by the peer, as IKE is built to.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
)

// pins routes the datagrams of IKE SAs that could not move yet to the
// worker that still holds them. It is read on every dispatch, so it is an
// RWMutex'd map consulted only while non-empty.
type pins struct {
	mu sync.RWMutex
	m  map[uint64]*loop // our IKE SPI -> worker
	n  atomic.Int32     // len(m), read without the lock
}

func (p *pins) lookup(spi uint64) *loop {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[spi]
}

func (p *pins) set(spi uint64, l *loop) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[uint64]*loop{}
	}
	if l == nil {
		delete(p.m, spi)
	} else {
		p.m[spi] = l
	}
	p.n.Store(int32(len(p.m)))
	p.mu.Unlock()
}

// route returns the worker an IKE datagram belongs to: the one of the
// logical SPU its IKE SA is anchored on, which the datagram names
// (anchor.Function.IKELogical, the rule the SO_REUSEPORT selector runs in
// the kernel), unless its IKE SA waits to move to another worker or was
// restored without an anchor of its own.
func (d *Daemon) route(dg manager.Datagram) *loop {
	natt := int(dg.Local.Port()) == d.cfg.Load().PortNATT
	if d.pin.n.Load() > 0 || d.legacy.n.Load() > 0 {
		if spi, ok := ourSPI(dg.Data, natt); ok {
			if l := d.pin.lookup(spi); l != nil {
				return l
			}
			if l := d.legacy.lookup(spi); l != nil {
				return l
			}
		}
	}
	local, remote := dg.Local.Addr(), dg.Remote.Addr()
	a := d.anchoring.Load()
	if a == nil {
		return d.owner(local, remote)
	}
	lg, by := a.Fn.IKELogical(a.Codec, local, remote, dg.Data, natt)
	if by == anchor.ByFirstContact && (!a.PerIKESA || d.traps.Load().between(local, remote)) {
		// ike_anchor tunnel, or a trap between the endpoints: a new IKE SA
		// goes to its endpoints' worker, where the selector's hash with the
		// SPI may not have sent it (worker.TrapFinder).
		lg = a.Fn.Logical(local, remote)
	}
	return d.loopOf(lg)
}

// ourSPI is the IKE SPI of a datagram that we chose: the responder's if
// the sender is the original initiator, else the initiator's.
func ourSPI(b []byte, natt bool) (uint64, bool) {
	if natt {
		if len(b) < 4 || binary.BigEndian.Uint32(b) != 0 {
			return 0, false
		}
		b = b[4:]
	}
	h, err := message.DecodeHeader(b)
	if err != nil {
		return 0, false
	}
	if h.IsInitiator() {
		return h.SPIr, h.SPIr != 0
	}
	return h.SPIi, h.SPIi != 0
}

// followMap moves to spud's new SPU map.
func (d *Daemon) followMap(list api.SPUList) error {
	m, err := mapOf(list.Map)
	if err != nil {
		return err
	}
	d.migMu.Lock()
	defer d.migMu.Unlock()
	old := d.spus.Load()
	if old.Len() != m.Len() {
		return fmt.Errorf("iked: spud's new SPU map has %d entries, want %d", m.Len(), old.Len())
	}
	moved := map[uint16]bool{}
	for l := 0; l < m.Len(); l++ {
		if old.Physical(uint16(l)) != m.Physical(uint16(l)) {
			moved[uint16(l)] = true
		}
	}
	if len(moved) == 0 {
		return nil
	}
	start := time.Now()
	if d.steer != nil {
		if err := d.steer.SetSPUMap(m); err != nil {
			d.log.Error("iked: reuseport selector map", "err", err.Error())
		}
	}
	d.spus.Store(m)
	d.moveLoads()
	n, busy := d.moveIKESAs(old, moved)
	d.migrations.Add(uint64(n))
	d.log.Info("iked: followed spud's SPU map", "gen", list.MapGen, "logical_moved", len(moved),
		"ike_sas_moved", n, "busy", busy, "took", time.Since(start).Round(time.Microsecond).String())
	if busy > 0 {
		go d.retryPinned()
	}
	return nil
}

// moveLoads hands each running load run to the worker that owns its
// connection's tunnel under the new map: the IKE SAs a run starts are
// anchored on the tunnel's logical SPU, whose datagrams now reach that
// worker (they failed on the old one, "no response"). The run's IKE SAs
// not yet established are started again there (worker.HandOffLoad).
func (d *Daemon) moveLoads() {
	d.loadsMu.Lock()
	runs := maps.Clone(d.loads)
	d.loadsMu.Unlock()
	for conn, from := range runs {
		to, err := d.connOwner(conn)
		if err != nil || to == from {
			continue
		}
		busy := false
		if err := d.post(to, func(w *worker.Worker) {
			p, ok := w.LoadStatus()
			busy = ok && !p.Done
		}); err != nil || busy {
			d.log.Warn("iked: load run not moved with its tunnel: the new worker runs another", "conn", conn,
				"from_worker", from.idx, "to_worker", to.idx)
			continue
		}
		var h *worker.LoadHandOff
		if err := d.post(from, func(w *worker.Worker) { h = w.HandOffLoad(conn) }); err != nil || h == nil {
			continue
		}
		var rerr error
		if err := d.post(to, func(w *worker.Worker) { rerr = w.ResumeLoad(h) }); err != nil || rerr != nil {
			d.log.Error("iked: load run lost in its move to another worker", "conn", conn, "to_worker", to.idx,
				"err", errors.Join(err, rerr).Error())
			continue
		}
		d.loadsMu.Lock()
		d.loads[conn] = to
		d.loadsMu.Unlock()
	}
}

type move struct {
	from, to *loop
	spi      uint64
}

// moveIKESAs detaches the IKE SAs of moved logical SPUs from their workers
// and restores them on their new owners. It returns how many moved and how
// many are pinned for later (busy).
func (d *Daemon) moveIKESAs(old *anchor.Map, moved map[uint16]bool) (n, busy int) {
	var moves []move
	for _, l := range d.loops {
		ll := l
		d.post(ll, func(w *worker.Worker) {
			for _, ike := range w.List() {
				if !moved[d.logicalOf(&ike)] {
					continue
				}
				if to := d.ownerOf(&ike); to != ll {
					moves = append(moves, move{from: ll, to: to, spi: ike.OurSPI()})
				}
			}
		})
	}
	for _, mv := range moves {
		switch err := d.moveOne(mv); {
		case err == nil:
			n++
		case errors.Is(err, worker.ErrBusy):
			d.pin.set(mv.spi, mv.from)
			busy++
		default:
			d.log.Warn("iked: move IKE SA", "spi", fmt.Sprintf("%016x", mv.spi), "err", err.Error())
		}
	}
	return n, busy
}

// moveOne detaches one IKE SA from its worker and restores it on another.
func (d *Daemon) moveOne(mv move) error {
	var ike *sa.IKESA
	var derr error
	if err := d.post(mv.from, func(w *worker.Worker) { ike, derr = w.Detach(mv.spi) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	var rerr error
	if err := d.post(mv.to, func(w *worker.Worker) { rerr = w.Restore(ike) }); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	d.pin.set(mv.spi, nil)
	if !ike.Anchored {
		d.legacy.set(mv.spi, mv.to)
	}
	d.log.Debug("iked: IKE SA moved", "ike_id", ike.UniqueID, "conn", ike.ConnName,
		"from_worker", mv.from.idx, "to_worker", mv.to.idx)
	return nil
}

// retryPinned moves the IKE SAs that were busy, once they are idle (for at
// most a minute; they keep working where they are meanwhile).
func (d *Daemon) retryPinned() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		d.migMu.Lock()
		d.pin.mu.RLock()
		var moves []move
		for spi, from := range d.pin.m {
			moves = append(moves, move{from: from, spi: spi})
		}
		d.pin.mu.RUnlock()
		left := 0
		for _, mv := range moves {
			// The owner as of now: the map may have changed again.
			var to *loop
			d.post(mv.from, func(w *worker.Worker) {
				if ike := w.Find(mv.spi); ike != nil {
					to = d.ownerOf(ike)
				}
			})
			if to == nil || to == mv.from {
				d.pin.set(mv.spi, nil)
				continue
			}
			mv.to = to
			if err := d.moveOne(mv); err != nil {
				left++
			} else {
				d.migrations.Add(1)
			}
		}
		d.migMu.Unlock()
		if left == 0 {
			return
		}
	}
}
