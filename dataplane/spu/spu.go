package spu

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/ipfrag"
	"github.com/spugate/spugate/dataplane/ring"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
)

// classTx marks a ring slot holding a finished Ethernet frame for the
// receiving SPU to transmit on Meta.Ifindex (the sender has no socket on
// that interface).
const classTx = 0xff

// Port is an AF_XDP socket an SPU owns, with where it is bound.
type Port struct {
	xsk.Port
	// Ifindex and Ifname name the interface the socket is bound to, Queue
	// its receive queue.
	Ifindex int
	Queue   int
	Ifname  string
}

type portState struct {
	Port
	tx  [xsk.BatchSize]xsk.Frame
	ntx int
}

type counters struct {
	rx, tx, encap, decap     atomic.Uint64
	handoffOut, handoffIn    atomic.Uint64
	fragHandoff              atomic.Uint64
	bypass, acquires, events atomic.Uint64
	busyNanos, totalNanos    atomic.Uint64
	drops                    [NumDrops]atomic.Uint64
	sleeps, parked           atomic.Uint64
	// saDrops are the drops of the SAs the SPU owns, by ESP reason,
	// counted as each SA counts its own (tables sets it on each).
	saDrops esp.DropTotals
}

// SPU is one Security Processing Unit: a goroutine locked to an OS thread
// pinned to a CPU, owning some AF_XDP sockets and the SAs and policies of
// the logical SPUs the map gives it.
//
// Its fields are grouped by who writes them. Most are its goroutine's
// alone, which is what lets the packet path go without locks; what other
// goroutines touch is in ctl, the atomics of io, and c. What the loop reads
// on every pass comes first (the receive batch, io.rx, ends io), the large
// preallocated stores last.
type SPU struct {
	// ID is the SPU's index in the engine, set by New.
	ID int
	// CPU is the core the SPU's thread is pinned to, -1 when not pinned.
	CPU int

	eng *Engine
	// peers: the handoff rings, made by New and fixed since. The SPU is
	// the one producer of out and the one consumer of in (after a failure,
	// the failure path is, once the loop has ended).
	peers peers
	// t: the SAs and policies, the goroutine's alone; others change them
	// through commands (ctl.cmds) run between batches.
	t tables
	// ctl: the control others exert, through the command channel and
	// atomics only.
	ctl control
	// io: the sockets and the waiting for them. The SPU's goroutine
	// writes it (setPorts runs as one of its commands, or before Start,
	// or once its loop has ended); sleep and nports are atomics others
	// read, and other SPUs write to evfd to wake it.
	io spuIO
	// c: counters, written by the goroutine alone, read by others
	// (atomics with a single writer).
	c counters
	// capt is the capture ring in ctl.capture as the current pass read
	// it: nil when no capture runs, which is all the packet path pays
	// for capture then (a nil check at each capture point).
	capt *capRing
	// frag: outer fragments, reassembled and sent, the goroutine's alone.
	frag fragState
	// pend and held: packets waiting for a neighbour or for their logical
	// SPU's tables, the goroutine's alone (large: kept last).
	pend pendingStore
	held holdStore
}

// spuIO is an SPU's sockets and how it waits for them.
type spuIO struct {
	ports []*portState
	txBy  []*portState // by ifindex: an owned socket on that interface, or nil
	cls   Classifier   // carrier none only
	wait  *xsk.Waiter
	// lastWork is when the loop last had work (unix nanos), for the
	// adaptive spin.
	lastWork int64
	evfd     int
	sleep    atomic.Bool  // the SPU sleeps in wait: producers wake it
	nports   atomic.Int32 // len(ports), for the engine's choice of a new owner
	home     []*portState // the sockets given at start, for Add after Drain
	rx       [xsk.BatchSize]xsk.Frame
}

// peers are an SPU's handoff rings, by the other SPU's id (nil for itself).
type peers struct {
	in  []*ring.Ring // from SPU i
	out []*ring.Ring // to SPU i
}

// fragState is an SPU's outer fragmentation: the reassembler of inbound
// fragments and the scratch of outbound ones.
type fragState struct {
	reasm *ipfrag.Reassembler
	bufs  [16][]byte
	id    uint32 // the next outbound fragment id
}

// control is how the engine and the watchdog steer an SPU.
type control struct {
	cmds chan func(*SPU) // commands, run between batches
	// state is active, drained or failed; the engine writes it.
	state atomic.Int32
	// stopped ends the loop at its next pass; the engine sets it.
	stopped atomic.Bool
	// injectPanic makes the loop panic (fault injection for tests).
	injectPanic atomic.Bool
	// heartbeat is the loop's last iteration (unix nanos), for the
	// watchdog; the SPU writes it.
	heartbeat atomic.Int64
	done      chan struct{} // closed when run returns
	// nap lets a caller change the tables of an SPU asleep in its wait
	// from the caller's own goroutine (Engine.doTables), instead of
	// waking it to run a command and waiting for it: napAsleep while the
	// loop is in its wait, napLent while a caller has the tables, which
	// the loop waits out when it wakes.
	nap atomic.Int32
	// capture is the SPU's ring of a running capture (capture.go), nil
	// when none runs; the loop loads it once a pass into SPU.capt.
	capture atomic.Pointer[capRing]
}

// The values of control.nap: the loop runs (napAwake, its zero value) or
// sleeps in its wait (napAsleep), or sleeps and a caller has its tables
// (napLent).
const (
	napAwake int32 = iota
	napAsleep
	napLent
)

func nanotime() int64 { return time.Now().UnixNano() }

// run is the SPU's loop, run to completion over batches.
func (s *SPU) run() {
	defer close(s.ctl.done)
	defer func() {
		if r := recover(); r != nil {
			// A bug (or an injected fault) costs this SPU, not spud: the
			// others take its tunnels and sockets over. The goroutine
			// ends here, so its tables are safe to take.
			go s.eng.fail(s.ID, fmt.Sprintf("panic: %v", r))
		}
	}()
	runtime.LockOSThread()
	if s.CPU >= 0 {
		var set unix.CPUSet
		set.Set(s.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			s.eng.logf("spu %d: pin to cpu %d: %v (running unpinned)", s.ID, s.CPU, err)
		}
	}
	s.eng.logf("spu %d: started on cpu %d with %d sockets", s.ID, s.CPU, len(s.io.ports))
	defer s.eng.logf("spu %d: stopped", s.ID)
	ports := make([]xsk.Port, len(s.io.ports))
	for i, p := range s.io.ports {
		ports[i] = p.Port.Port
	}
	s.io.wait = xsk.NewWaiter(ports, s.io.evfd)
	// One clock read per pass: the loop spins through many empty passes
	// while it waits for work, and each clock read or atomic there is CPU
	// taken from the kernel threads that carry the packets. Accounting is
	// kept in plain fields and published about once a millisecond.
	now := nanotime()
	var busy, total, published int64
	s.ctl.heartbeat.Store(now)
	for !s.ctl.stopped.Load() {
		if s.ctl.injectPanic.Load() {
			panic("injected fault")
		}
		worked := s.iterate()
		t := nanotime()
		if worked {
			busy += t - now
			s.io.lastWork = t
		} else if s.idle(t) {
			t = nanotime()
		}
		total += t - now
		now = t
		// A few SAs at a time, so that a pass over a million warm SAs
		// does not hold up packets; more on a turn without work, which
		// may be one of ten a second when the SPU sleeps. Nothing
		// between passes.
		if worked {
			s.t.owner.Sweep(now, sweepBatch)
		} else {
			s.t.owner.Sweep(now, sweepIdleBatch)
		}
		if now-published > int64(time.Millisecond) {
			s.c.busyNanos.Store(uint64(busy))
			s.c.totalNanos.Store(uint64(total))
			s.ctl.heartbeat.Store(now)
			published = now
		}
	}
}

// iterate is one pass of the loop: commands, every socket's batch, the
// handoff rings, transmission. It reports whether there was any work.
func (s *SPU) iterate() bool {
	s.capt = s.ctl.capture.Load()
	worked := s.runCommands()
	if s.ctl.stopped.Load() {
		// Declared failed (or stopped) while a command held it: what it
		// owned is being taken over.
		return worked
	}
	for _, p := range s.io.ports {
		p.Complete()
		n := p.Receive(s.io.rx[:])
		if n == 0 {
			continue
		}
		worked = true
		s.c.rx.Add(uint64(n))
		for i := 0; i < n; i++ {
			s.handleRx(p, &s.io.rx[i])
		}
		p.Release(s.io.rx[:n])
	}
	for _, r := range s.peers.in {
		if r != nil && s.drain(r) {
			worked = true
		}
	}
	if s.pend.used > 0 && s.retryPending() {
		worked = true
	}
	s.flushTx()
	return worked
}

// idle spins in busy mode; in adaptive mode it spins for a while after the
// last work, then sleeps until a socket has frames, another SPU hands over
// a packet or a command, or MaxSleep passes.
func (s *SPU) idle(now int64) (slept bool) {
	e := s.eng
	if e.cfg.Poll == xsk.Busy || now-s.io.lastWork < int64(e.cfg.Spin) {
		return false
	}
	s.io.sleep.Store(true)
	// Producers check sleep after publishing; checking the rings after
	// setting it closes the window in which both would miss each other.
	if s.pending() {
		s.io.sleep.Store(false)
		return false
	}
	s.c.sleeps.Add(1)
	s.ctl.heartbeat.Store(0) // asleep is not stalled
	sleep := e.cfg.MaxSleep
	if s.pend.used > 0 {
		sleep = time.Millisecond // a neighbour may resolve any moment
	}
	s.ctl.nap.Store(napAsleep)
	s.io.wait.Wait(sleep)
	for !s.ctl.nap.CompareAndSwap(napAsleep, napAwake) {
		// A caller has the tables for a command's worth (microseconds).
		runtime.Gosched()
	}
	s.io.sleep.Store(false)
	var b [8]byte
	unix.Read(s.io.evfd, b[:])
	s.io.lastWork = nanotime()
	s.ctl.heartbeat.Store(s.io.lastWork)
	return true
}

func (s *SPU) pending() bool {
	if len(s.ctl.cmds) > 0 {
		return true
	}
	for _, r := range s.peers.in {
		if r != nil && r.Len() > 0 {
			return true
		}
	}
	return false
}

// wake ends the SPU's sleep, if it sleeps. Cheap when it does not.
func (s *SPU) wake() {
	if s.io.sleep.Load() {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(s.io.evfd, one[:])
	}
}

func (s *SPU) runCommands() bool {
	worked := false
	for i := 0; i < 64; i++ {
		select {
		case fn := <-s.ctl.cmds:
			fn(s)
			worked = true
		default:
			return worked
		}
	}
	return worked
}

func (s *SPU) drop(d Drop) { s.c.drops[d].Add(1) }

// handleRx takes one frame from a socket: to its anchor, or processed here.
func (s *SPU) handleRx(p *portState, f *xsk.Frame) {
	sm, shim, err := s.eng.cfg.Carrier.ReadMeta(f.Buf, f.Off, f.Len)
	switch {
	case err == nil:
		f.Trim(shim)
	case s.io.cls == nil:
		s.drop(DropNoMeta)
		return
	default:
		if sm, err = s.io.cls.Classify(f.Packet(), uint32(p.Ifindex), p.Queue); err != nil {
			s.drop(DropUnsteered)
			return
		}
	}
	if int(sm.L3Offset) >= f.Len {
		s.drop(DropMalformed)
		return
	}
	m := ring.Meta{Off: int32(f.Off), Len: int32(f.Len), L3: int32(sm.L3Offset), Ifindex: int32(p.Ifindex),
		Policy: sm.PolicyID, Logical: sm.LogicalSPU, Class: uint8(sm.Class)}
	if anchor := s.eng.physical(m.Logical); anchor != s.ID {
		s.handoff(anchor, f.Buf, &m)
		return
	}
	s.process(f.Buf, &m)
}

// handoff copies the packet m places in buf into the ring of its anchor
// SPU.
func (s *SPU) handoff(to int, buf []byte, m *ring.Meta) {
	if to < 0 || to >= len(s.peers.out) || s.peers.out[to] == nil {
		s.drop(DropHandoffFull)
		return
	}
	r := s.peers.out[to]
	slot := r.Reserve()
	if slot == nil || int(m.Len) > len(slot.Buf)-ring.Headroom {
		s.drop(DropHandoffFull)
		return
	}
	slot.Meta = *m
	slot.Meta.Off = ring.Headroom
	slot.Meta.Len = int32(copy(slot.Buf[ring.Headroom:], buf[m.Off:m.Off+m.Len]))
	r.Commit()
	s.c.handoffOut.Add(1)
	s.eng.spus[to].wake()
}

// drain processes what other SPUs handed over.
func (s *SPU) drain(r *ring.Ring) bool {
	n := 0
	for ; n < xsk.BatchSize; n++ {
		slot := r.Peek()
		if slot == nil {
			break
		}
		m := &slot.Meta
		if m.Class == classTx {
			s.transmitFrame(int(m.Ifindex), slot.Buf[m.Off:m.Off+m.Len])
		} else if a := s.eng.physical(m.Logical); a != s.ID {
			// A map change may have moved the logical SPU again since the
			// sender looked: follow it (bounded by the ring's capacity).
			s.handoff(a, slot.Buf[:], m)
		} else {
			s.process(slot.Buf[:], m)
		}
		r.Release()
	}
	if n > 0 {
		s.c.handoffIn.Add(uint64(n))
	}
	return n > 0
}

// process handles the packet m places in buf on its anchor SPU; buf may
// be changed in place.
func (s *SPU) process(buf []byte, m *ring.Meta) {
	// The logical SPU is moving here and its SAs have not arrived yet:
	// hold the packet until they do.
	if s.eng.movingTo(m.Logical) == s.ID {
		if !s.hold(buf, m) {
			s.drop(DropMigrating)
		}
		return
	}
	switch steer.Class(m.Class) {
	case steer.ClassESP, steer.ClassUDPESP:
		s.decap(buf, m)
	case steer.ClassCleartext:
		s.encap(buf, m)
	case steer.ClassESPFragment:
		s.fragment(buf, m)
	default:
		s.drop(DropMalformed)
	}
}

func (s *SPU) decap(buf []byte, m *ring.Meta) {
	// The outer headers are parsed once, here: the SA found by their SPI
	// takes the parse.
	off, end := m.IP()
	o, r := esp.ParseOuter(buf[off:end])
	if r != esp.None {
		s.dropPkt(DropESPHeader, buf[off:end], 0, 0)
		return
	}
	e := s.t.in[o.SPI]
	if e == nil {
		s.dropPkt(DropUnknownSPI, buf[off:end], o.SPI, 0)
		return
	}
	staged := false
	if s.capt != nil {
		s.capture(PointESPIn, buf[off:end], o.SPI, e.desc.reqid, 0, esp.None)
		staged = s.stage(buf[off:end], o.SPI, e.desc.reqid)
	}
	res := e.sa.DecapOuter(buf, off, &o)
	if ev := e.sa.TakeEvents(); ev != 0 {
		s.emitSA(e.sa, &e.desc, ev)
	}
	if res.Verdict != esp.Forward {
		s.drop(DropSA)
		if staged {
			s.publishStaged(end-off, o.SPI, e.desc.reqid, res.Reason)
		} else if s.capt != nil && s.capt.takes(PointDrop, o.SPI, e.desc.reqid) {
			s.capt.lost.Add(1) // no room to stage it
		}
		return
	}
	s.c.decap.Add(1)
	if s.capt != nil {
		s.capture(PointClearOut, buf[res.Off:res.Off+res.Len], o.SPI, e.desc.reqid, 0, esp.None)
	}
	s.forward(buf[res.Off : res.Off+res.Len])
}

// forward routes an IP packet the way the kernel would have: the inner
// packet after decapsulation, or cleartext no policy protects.
func (s *SPU) forward(ip []byte) {
	f, ok := parseFlow(ip)
	if !ok {
		s.dropPkt(DropMalformed, ip, 0, 0)
		return
	}
	nh, ok := s.eng.router.Lookup(f.dst)
	if !ok {
		s.dropPkt(DropNoRoute, ip, 0, 0)
		return
	}
	if nh.Local {
		s.dropPkt(DropLocal, ip, 0, 0)
		return
	}
	if !nh.Resolved {
		s.eng.router.Resolve(nh.Ifindex, nh.Gateway)
		if !s.park(pendForward, ip, nil) {
			s.dropPkt(DropNoNeighbour, ip, 0, 0)
		}
		return
	}
	if !decTTL(ip) {
		s.dropPkt(DropTTL, ip, 0, 0)
		return
	}
	t, ok := s.txOpen(nh.Ifindex)
	if !ok {
		return
	}
	start := t.base
	if start+14+len(ip) > len(t.buf) {
		s.txAbort(&t)
		s.dropPkt(DropTooBigForBuffer, ip, 0, 0)
		return
	}
	putEthernet(t.buf[start:], &nh.DstMAC, &nh.SrcMAC, ip[0]>>4 == 6)
	copy(t.buf[start+14:], ip)
	s.txCommit(&t, start, 14+len(ip))
}

func (s *SPU) encap(buf []byte, m *ring.Meta) {
	off, end := m.IP()
	ipl := ipLen(buf[off:end])
	if ipl == 0 {
		s.drop(DropMalformed)
		return
	}
	s.encapIP(buf[off:off+ipl], m)
}

// encapIP protects the cleartext IP packet ip, which the steering program
// matched to m.Policy, and sends it. Only m's policy and ingress interface
// are read: ip may be a copy of the packet m was made for.
func (s *SPU) encapIP(ip []byte, m *ring.Meta) {
	f, ok := parseFlow(ip)
	if !ok {
		s.dropPkt(DropMalformed, ip, 0, 0)
		return
	}
	p := s.t.policies[m.Policy]
	if p == nil || !p.matches(&f) {
		// The steering program matched prefixes only, or its entry is
		// stale: the exact match decides.
		if p = s.t.findPolicy(&f); p == nil {
			s.c.bypass.Add(1)
			s.forward(ip)
			return
		}
	}
	p.packets++
	switch p.action {
	case polBypass:
		s.c.bypass.Add(1)
		s.forward(ip)
		return
	case polDiscard:
		s.dropPkt(DropDiscard, ip, 0, p.reqid)
		return
	}
	o := p.out
	if o == nil {
		s.acquire(p, &f)
		s.dropPkt(DropNoSA, ip, 0, p.reqid)
		return
	}
	if s.capt != nil {
		s.capture(PointClearIn, ip, o.sa.SPI(), o.desc.reqid, 0, esp.None)
	}
	nh, st := s.nextHop(o)
	switch st {
	case nhNoRoute:
		s.dropPkt(DropNoRoute, ip, o.sa.SPI(), o.desc.reqid)
		return
	case nhUnresolved:
		if !s.park(pendEncap, ip, m) {
			s.dropPkt(DropNoNeighbour, ip, o.sa.SPI(), o.desc.reqid)
		}
		return
	}
	if !decTTL(ip) {
		s.dropPkt(DropTTL, ip, o.sa.SPI(), o.desc.reqid)
		return
	}
	t, ok := s.txOpen(nh.Ifindex)
	if !ok {
		return
	}
	start := t.base + esp.Headroom
	if start+len(ip)+esp.Tailroom > len(t.buf) {
		s.txAbort(&t)
		s.dropPkt(DropTooBigForBuffer, ip, o.sa.SPI(), o.desc.reqid)
		return
	}
	copy(t.buf[start:], ip)
	res := o.sa.Encap(t.buf, start, len(ip))
	if ev := o.sa.TakeEvents(); ev != 0 {
		s.emitSA(o.sa, &o.desc, ev)
	}
	if s.capt != nil {
		s.captureEncap(o, ip, t.buf, res)
	}
	switch res.Verdict {
	case esp.Forward:
		putEthernet(t.buf[res.Off-14:], &nh.DstMAC, &nh.SrcMAC, t.buf[res.Off]>>4 == 6)
		s.txCommit(&t, res.Off-14, res.Len+14)
		s.c.encap.Add(1)
	case esp.SendTooBig:
		s.txAbort(&t)
		s.tooBig(ip, int(m.Ifindex), res.MTU)
	case esp.Fragment:
		s.sendFragments(&t, t.buf[res.Off:res.Off+res.Len], res.MTU, &nh)
		s.c.encap.Add(1)
	default:
		s.txAbort(&t)
		s.drop(DropSA)
	}
}

// tooBig answers the sender of ip with ICMP "too big" from the gateway's
// address on the interface the packet came in on.
func (s *SPU) tooBig(ip []byte, ingress int, mtu int) {
	f, ok := parseFlow(ip)
	if !ok {
		return
	}
	nh, ok := s.eng.router.Lookup(f.src)
	if !ok || nh.Local {
		return
	}
	if !nh.Resolved {
		// The sender will try again (PMTU discovery does): have its
		// address resolved by then.
		s.eng.router.Resolve(nh.Ifindex, nh.Gateway)
		return
	}
	t, ok := s.txOpen(nh.Ifindex)
	if !ok {
		return
	}
	start := t.base
	n, err := esp.WriteTooBig(t.buf[start+14:], nh.Src, ip, mtu)
	if err != nil {
		s.txAbort(&t)
		return
	}
	putEthernet(t.buf[start:], &nh.DstMAC, &nh.SrcMAC, f.src.Is6())
	s.txCommit(&t, start, n+14)
}

type nhStatus uint8

const (
	nhOK nhStatus = iota
	nhNoRoute
	nhUnresolved
)

// nextHop returns the cached next hop of an outbound SA, refreshing it when
// the kernel's tables changed, and asks for resolution of an unknown
// neighbour.
func (s *SPU) nextHop(o *outSA) (fib.NextHop, nhStatus) {
	r := s.eng.router
	if g := r.Gen(); !o.nhOK || o.nh.gen != g {
		if o.nh == nil {
			o.nh = new(nhCache)
		}
		o.nh.NextHop, o.nhOK = r.Lookup(o.sa.Remote())
		o.nh.gen = g
	}
	if !o.nhOK {
		return fib.NextHop{}, nhNoRoute
	}
	if !o.nh.Resolved {
		r.Resolve(o.nh.Ifindex, o.nh.Gateway)
		o.nhOK = false
		return o.nh.NextHop, nhUnresolved
	}
	return o.nh.NextHop, nhOK
}

// fragment reassembles outer fragments of ESP packets and decapsulates
// the whole packet on the anchor of its SPI. The steering program anchors
// every fragment by the outer addresses (only the first carries the SPI),
// so that all of a packet's fragments meet here; the whole packet then
// goes where its unfragmented kin go, which is another SPU when its SA
// belongs to another IKE SA's logical SPU than the addresses' hash.
func (s *SPU) fragment(buf []byte, m *ring.Meta) {
	off, end := m.IP()
	pkt, st, r := s.frag.reasm.Add(buf[off:end], nanotime())
	switch {
	case r != ipfrag.None:
		s.drop(DropFragment)
	case st == ipfrag.Complete:
		// The datagram is in the reassembler's storage until its next
		// Add: decapsulate it there, or copy it to its anchor's ring.
		o, r := esp.ParseOuter(pkt)
		if r != esp.None {
			s.drop(DropESPHeader)
			return
		}
		whole := *m
		whole.Off, whole.L3, whole.Len = 0, 0, int32(len(pkt))
		whole.Class, whole.Logical = uint8(steer.ClassESP), s.eng.fn.LogicalSPI(o.SPI)
		if a := s.eng.physical(whole.Logical); a != s.ID {
			if len(pkt) > ring.SlotSize-ring.Headroom {
				s.drop(DropReassembledTooBig)
				return
			}
			s.c.fragHandoff.Add(1)
			s.handoff(a, pkt, &whole)
			return
		}
		s.process(pkt, &whole)
	}
}

// sendFragments splits an ESP packet that exceeds the path MTU into outer
// fragments, each in a frame of its own, when the inner packet may be
// fragmented (the ESP engine decided). Only on an SPU with its own socket
// on the egress interface.
func (s *SPU) sendFragments(t *txTarget, esp []byte, mtu int, nh *fib.NextHop) {
	ps := t.ps
	if ps == nil || mtu <= 0 {
		s.drop(DropFragment)
		return
	}
	need := (len(esp) + mtu - 1) / (mtu - 64) // a generous upper bound
	if need > len(s.frag.bufs) {
		s.drop(DropFragment)
		return
	}
	// Room for the fragments after the frame holding the whole packet.
	first := ps.ntx + 1
	if first+need > len(ps.tx) {
		// Send what is queued to make room; the whole packet's frame
		// (not yet queued) comes along to index 0.
		whole := ps.tx[ps.ntx]
		s.flushPort(ps)
		ps.tx[0] = whole
		first = 1
	}
	if first+need > len(ps.tx) {
		s.drop(DropFragment)
		return
	}
	got := ps.Alloc(ps.tx[first : first+need])
	for i := 0; i < got; i++ {
		f := &ps.tx[first+i]
		s.frag.bufs[i] = f.Buf[f.Off+14 : f.Off+14 : f.Off+14+mtu]
	}
	n, err := ipfrag.Fragment(s.frag.bufs[:got], esp, mtu, s.frag.id)
	s.frag.id++
	if err != nil {
		ps.Release(ps.tx[first : first+got])
		s.drop(DropFragment)
		return
	}
	if n < got {
		ps.Release(ps.tx[first+n : first+got])
	}
	v6 := esp[0]>>4 == 6
	for i := 0; i < n; i++ {
		f := &ps.tx[first+i]
		putEthernet(f.Buf[f.Off:], &nh.DstMAC, &nh.SrcMAC, v6)
		f.Len = 14 + len(s.frag.bufs[i])
	}
	// Move the fragments down over the whole packet's frame, which goes
	// back to the port.
	ps.Release(ps.tx[first-1 : first])
	copy(ps.tx[first-1:], ps.tx[first:first+n])
	ps.ntx = first - 1 + n
}

// acquire asks the control plane for an SA, once a second per policy.
func (s *SPU) acquire(p *policy, f *flow) {
	now := time.Now().UnixNano()
	if now-p.lastAcq < int64(time.Second) {
		return
	}
	p.lastAcq = now
	p.acq++
	s.c.acquires.Add(1)
	s.eng.emit(Event{Kind: api.EventAcquire, Acquire: api.Acquire{
		PolicyID: p.id, ReqID: p.reqid, Src: f.src, Dst: f.dst, Proto: f.proto}})
}

func (s *SPU) emitSA(sa *esp.SA, d *saDesc, ev esp.Events) {
	s.c.events.Add(1)
	id := api.SAID{SPI: sa.SPI(), Dir: api.Out, Remote: sa.Remote()}
	if sa.Direction() == esp.Inbound {
		id.Dir = api.In
	}
	e := Event{SA: api.SAEvent{SAID: id, ReqID: d.reqid, Name: d.name}}
	for _, k := range []struct {
		bit  esp.Events
		kind string
	}{{esp.EventSoftLifetime, api.EventSoftLifetime}, {esp.EventHardLifetime, api.EventHardLifetime},
		{esp.EventSeqNearExhaustion, api.EventSeqNear}, {esp.EventSeqExhausted, api.EventHardLifetime}} {
		if ev&k.bit != 0 {
			e.Kind = k.kind
			s.eng.emit(e)
		}
	}
}

// txTarget is where an SPU builds an outgoing frame: a frame of its own
// socket on the egress interface, or a ring slot for the SPU that has one.
type txTarget struct {
	buf  []byte
	base int // where the frame may start; room before it is headroom
	ps   *portState
	r    *ring.Ring
	slot *ring.Slot
	to   int
	ifx  int
}

func (s *SPU) txOpen(ifindex int) (t txTarget, ok bool) {
	if ifindex >= 0 && ifindex < len(s.io.txBy) && s.io.txBy[ifindex] != nil {
		ps := s.io.txBy[ifindex]
		if ps.ntx == len(ps.tx) {
			s.flushPort(ps)
		}
		fr := ps.tx[ps.ntx : ps.ntx+1]
		if ps.Alloc(fr) == 0 {
			// Every frame is in flight: send what is queued, reap what the
			// kernel is done with, and try once more.
			s.flushPort(ps)
			fr = ps.tx[0:1]
			ps.Complete()
			if ps.Alloc(fr) == 0 {
				s.drop(DropNoTxFrame)
				return t, false
			}
		}
		return txTarget{buf: fr[0].Buf, base: fr[0].Off, ps: ps}, true
	}
	owner := s.eng.txOwner(ifindex)
	if owner < 0 || owner == s.ID || s.peers.out[owner] == nil {
		s.drop(DropNoEgress)
		return t, false
	}
	r := s.peers.out[owner]
	slot := r.Reserve()
	if slot == nil {
		s.drop(DropHandoffFull)
		return t, false
	}
	return txTarget{buf: slot.Buf[:], base: ring.Headroom, r: r, slot: slot, to: owner, ifx: ifindex}, true
}

func (s *SPU) txCommit(t *txTarget, off, n int) {
	if t.ps != nil {
		f := &t.ps.tx[t.ps.ntx]
		f.Off, f.Len = off, n
		t.ps.ntx++
		return
	}
	t.slot.Meta = ring.Meta{Off: int32(off), Len: int32(n), Ifindex: int32(t.ifx), Class: classTx}
	t.r.Commit()
	s.c.handoffOut.Add(1)
	s.eng.spus[t.to].wake()
}

func (s *SPU) txAbort(t *txTarget) {
	if t.ps != nil {
		t.ps.Release(t.ps.tx[t.ps.ntx : t.ps.ntx+1])
	}
	// A reserved ring slot is simply not committed.
}

// transmitFrame sends a finished Ethernet frame handed over by another SPU.
func (s *SPU) transmitFrame(ifindex int, frame []byte) {
	// On a socket of this SPU, or on to the SPU that has one now (the
	// sockets of a failed SPU move).
	t, ok := s.txOpen(ifindex)
	if !ok {
		return
	}
	if t.base+len(frame) > len(t.buf) {
		s.txAbort(&t)
		s.drop(DropTooBigForBuffer)
		return
	}
	copy(t.buf[t.base:], frame)
	s.txCommit(&t, t.base, len(frame))
}

func (s *SPU) flushPort(ps *portState) {
	if ps.ntx == 0 {
		return
	}
	n := ps.Transmit(ps.tx[:ps.ntx])
	if n < ps.ntx {
		ps.Release(ps.tx[n:ps.ntx])
		s.c.drops[DropTxFull].Add(uint64(ps.ntx - n))
	}
	s.c.tx.Add(uint64(n))
	ps.ntx = 0
}

func (s *SPU) flushTx() {
	for _, ps := range s.io.ports {
		s.flushPort(ps)
	}
}
