// Package spu is spud's run-to-completion packet engine: one SPU goroutine
// per configured core, locked to its OS thread and pinned to the core, owning
// some AF_XDP sockets and the SAs and policies anchored on it.
//
// The flow of a frame:
//
//	socket (rx queue) -> SPU that owns the queue -> metadata from the XDP
//	program names the logical SPU -> spud's map gives the anchor SPU ->
//	  anchor is this SPU:  process here
//	  anchor is another:   copy into the SPSC ring to the anchor (counted)
//	process: ESP -> SA by SPI -> decapsulate -> route the inner packet
//	         cleartext -> exact SPD match -> outbound SA -> encapsulate -> route
//	transmit on this SPU's socket of the egress interface (or hand the frame
//	to the SPU that has one)
//
// No per-packet path takes a lock or allocates: tables belong to their SPU
// and change only through commands the SPU runs between batches; counters
// are atomics with a single writer; routes and neighbours come from an
// immutable snapshot (dataplane/fib).
package spu

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/ipfrag"
	"github.com/spugate/spugate/dataplane/ring"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/internal/unixrpc"
)

// Router is the view of the kernel's forwarding tables SPUs need
// (dataplane/fib, or a fake in tests).
type Router interface {
	Lookup(dst netip.Addr) (fib.NextHop, bool)
	Resolve(ifindex int, addr netip.Addr)
	Gen() uint64
}

// Config shapes the engine.
type Config struct {
	// SPUs is the number of SPUs; CPUs[i % len(CPUs)] is SPU i's core (no
	// pinning when CPUs is empty). More SPUs than cores is allowed (for
	// tests of the distribution), each still its own goroutine.
	SPUs int
	// CPUs are the cores SPUs are pinned to, round robin.
	CPUs []int
	// Poll is busy or adaptive; Spin and MaxSleep tune adaptive mode.
	Poll xsk.PollMode
	// Spin is how long an idle SPU keeps polling after its last work
	// before it sleeps (default 20µs).
	Spin time.Duration
	// MaxSleep bounds a sleep without a wakeup (default 100ms).
	MaxSleep time.Duration
	// RingSize is each handoff ring's slot count (default 1024).
	RingSize int
	// Log takes the engine's messages (default slog.Default()).
	Log *slog.Logger
	// Reassembly bounds each SPU's reassembler of outer ESP fragments
	// (zero value: ipfrag's defaults).
	Reassembly ipfrag.Config
	// WatchdogDeadline: an SPU awake but without a loop iteration for this
	// long is declared failed (default 2s).
	WatchdogDeadline time.Duration
	// Carrier is the steering program's (steer.Program.Carrier): where an
	// SPU finds a received frame's metadata. CarrierAuto means CarrierMeta.
	Carrier steer.Carrier
	// NewClassifier gives each SPU a classifier of its own, which
	// CarrierNone needs: the SPU then classifies every frame itself.
	NewClassifier func() Classifier
	// SpeedPad is esp.Config.SpeedPad for every outbound SA: extra padding
	// that makes small AES-GCM packets cheaper to seal here and to open at
	// the peer (see the esp package), at the cost of wire bytes.
	SpeedPad int
	// CipherIdle is how long an SA carries no packet before its SPU drops
	// its cipher state (~700 bytes for AES-GCM), which its next packet
	// makes again: between CipherIdle and twice that (esp.Owner). 0 means
	// DefaultCipherIdle; a negative value keeps every SA warm once warm.
	CipherIdle time.Duration
}

// DefaultCipherIdle is Config.CipherIdle's default: long enough that an SA
// carrying a packet every few seconds (a keepalive, a poll) stays warm,
// short enough that a million tunnels, mostly idle, hold few cipher states.
const DefaultCipherIdle = 30 * time.Second

// Classifier finds the metadata of a frame the steering program
// redirected without any (steer.Classifier). One belongs to one SPU.
type Classifier interface {
	Classify(frame []byte, ifindex uint32, queue int) (steer.Meta, error)
}

// Event is a data-plane event for the control plane.
type Event struct {
	// Kind is the event's name in the SA API (api.Event*, or
	// "spu.failed"); it says which of the other fields is set.
	Kind string
	// SA is set for an SA's lifetime and sequence number events.
	SA api.SAEvent
	// Acquire is set for an ACQUIRE: a protect policy without an SA.
	Acquire api.Acquire
	SPU     int    // spu.failed
	Reason  string // spu.failed
}

// Engine is the set of SPUs of one spud.
type Engine struct {
	cfg    Config
	fn     anchor.Function
	spuMap atomic.Pointer[anchor.Map]
	router Router
	spus   []*SPU

	// Events carries events to the SA API; a full channel loses them,
	// counted in EventsLost.
	Events chan Event
	// EventsLost counts the events a full Events channel lost.
	EventsLost atomic.Uint64

	txOwners atomic.Pointer[[]int] // ifindex -> SPU with a socket there, -1
	txMu     sync.Mutex
	started  bool
	stop     chan struct{}

	mig        migration
	migMu      sync.Mutex // one map change at a time
	mapGen     atomic.Uint64
	migrations atomic.Uint64
	failures   atomic.Uint64
	// watchdogLate counts watchdog rounds skipped for running late.
	watchdogLate atomic.Uint64
	lent         atomic.Uint64 // table commands run in place of an SPU asleep (doTables)

	capMu   sync.Mutex // the running capture (capture.go), one at a time
	capture *Capture

	mu       sync.Mutex // the registry, below
	sas      map[saRef]saReg
	policies map[uint32]policyRef
	nextPol  uint32
	// saOrder and polOrder page the dumps (dump.go).
	saOrder  installOrder[saRef]
	polOrder installOrder[uint32]
}

// saReg is what the registry knows of an SA: its logical SPU (so its
// physical SPU through the map) and its place in saOrder.
type saReg = regEntry

// regEntry is a registry entry, an SA's (saReg) or a policy's (policyRef):
// its logical SPU in the low 16 bits and its install order's seq above,
// 8 bytes where a struct of the two took 16 and each map slot of a
// registry of millions with it. A seq is below 1<<48: the registry would
// have to take a billion installs a second for nine years.
type regEntry uint64

func newReg(logical uint16, seq uint64) regEntry { return regEntry(seq<<16 | uint64(logical)) }

// logical is the entry's logical SPU.
func (r regEntry) logical() uint16 { return uint16(r) }

// seq is the entry's place in its install order.
func (r regEntry) seq() uint64 { return uint64(r) >> 16 }

// saRef is an SA's key in the registry: no pointer (the collector does
// not scan the registry's map and order), 24 bytes where a direction as
// api.Dir and the remote as a netip.Addr made it 48.
type saRef struct {
	spi    uint32
	dir    refDir
	remote [16]byte // outbound only: addr16 of the peer, as its SPU's table keys it (outKey)
}

// refDir is an SA's direction in its saRef.
type refDir uint8

const (
	refIn refDir = iota
	refOut
	// refNone is a direction that is neither (a request's typo), which
	// names no SA.
	refNone
)

// idRef is the registry's key of the SA id names.
func idRef(id api.SAID) saRef {
	r := saRef{spi: id.SPI, dir: refNone}
	switch id.Dir {
	case api.In:
		r.dir = refIn
	case api.Out:
		r.dir, r.remote = refOut, addr16(id.Remote)
	}
	return r
}

// policyRef is a policy's registration. The policy itself is only in its
// SPU's tables: a second copy here cost ~200 bytes a policy.
type policyRef = regEntry

// New returns an engine of cfg.SPUs SPUs with map m (L entries over SPU ids
// 0..SPUs-1). Sockets are added with AddPort before Start.
func New(cfg Config, fn anchor.Function, m *anchor.Map, router Router) (*Engine, error) {
	if cfg.SPUs < 1 {
		return nil, fmt.Errorf("spu: %d SPUs", cfg.SPUs)
	}
	if m.Len() != fn.L() {
		return nil, fmt.Errorf("spu: map of %d entries for L=%d", m.Len(), fn.L())
	}
	for _, p := range m.Entries() {
		if int(p) >= cfg.SPUs {
			return nil, fmt.Errorf("spu: map names SPU %d of %d", p, cfg.SPUs)
		}
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = 1024
	}
	if cfg.Spin == 0 {
		// Long enough to ride the gaps inside a burst, short enough not to
		// starve the kernel threads that share the cores in a small box.
		cfg.Spin = 20 * time.Microsecond
	}
	if cfg.MaxSleep == 0 {
		cfg.MaxSleep = 100 * time.Millisecond
	}
	if cfg.CipherIdle == 0 {
		cfg.CipherIdle = DefaultCipherIdle
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.WatchdogDeadline == 0 {
		cfg.WatchdogDeadline = 2 * time.Second
	}
	if cfg.Carrier == steer.CarrierAuto {
		cfg.Carrier = steer.CarrierMeta
	}
	if cfg.Carrier == steer.CarrierNone && cfg.NewClassifier == nil {
		return nil, fmt.Errorf("spu: carrier none needs a classifier")
	}
	e := &Engine{cfg: cfg, fn: fn, router: router, Events: make(chan Event, 4096),
		sas: map[saRef]saReg{}, policies: map[uint32]policyRef{}, stop: make(chan struct{})}
	e.mig.to = make([]atomic.Int32, fn.L())
	e.spuMap.Store(m)
	for i := 0; i < cfg.SPUs; i++ {
		cpu := -1
		if len(cfg.CPUs) > 0 {
			cpu = cfg.CPUs[i%len(cfg.CPUs)]
		}
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("spu: eventfd: %w", err)
		}
		reasm, err := ipfrag.New(cfg.Reassembly)
		if err != nil {
			return nil, fmt.Errorf("spu: reassembly: %w", err)
		}
		s := &SPU{ID: i, CPU: cpu, eng: e, pend: pendingStore{cur: -1}}
		s.t = newTables(esp.NewOwner(&s.c.saDrops, cfg.CipherIdle))
		s.io.evfd = fd
		s.frag.reasm = reasm
		s.ctl.cmds = make(chan func(*SPU), 1024)
		s.ctl.done = make(chan struct{})
		if cfg.Carrier == steer.CarrierNone {
			s.io.cls = cfg.NewClassifier()
		}
		e.spus = append(e.spus, s)
	}
	for _, s := range e.spus {
		s.peers.in = make([]*ring.Ring, cfg.SPUs)
		s.peers.out = make([]*ring.Ring, cfg.SPUs)
	}
	for _, from := range e.spus {
		for _, to := range e.spus {
			if from == to {
				continue
			}
			r, err := ring.New(cfg.RingSize)
			if err != nil {
				return nil, err
			}
			from.peers.out[to.ID], to.peers.in[from.ID] = r, r
		}
	}
	none := []int{}
	e.txOwners.Store(&none)
	return e, nil
}

func (e *Engine) logf(format string, args ...any) { e.cfg.Log.Info(fmt.Sprintf(format, args...)) }

// AddPort gives a socket to an SPU. Before Start only.
func (e *Engine) AddPort(spu int, p Port) error {
	if e.started {
		return errors.New("spu: AddPort after Start")
	}
	if spu < 0 || spu >= len(e.spus) {
		return fmt.Errorf("spu: no SPU %d", spu)
	}
	s := e.spus[spu]
	ps := &portState{Port: p}
	s.io.home = append(s.io.home, ps)
	s.setPorts(append(s.io.ports, ps))
	return nil
}

// Start starts the SPU goroutines.
func (e *Engine) Start() {
	e.started = true
	for _, s := range e.spus {
		go s.run()
	}
	go e.watchdog()
}

// Stop stops every SPU and waits until each has left its loop. A stalled
// SPU is given up on after a bounded wait, and reported.
func (e *Engine) Stop() {
	if !e.started {
		return
	}
	close(e.stop)
	for _, s := range e.spus {
		s.ctl.stopped.Store(true)
		s.wake()
	}
	deadline := time.After(5 * time.Second)
	for _, s := range e.spus {
		select {
		case <-s.ctl.done:
		case <-deadline:
			e.cfg.Log.Error(fmt.Sprintf("spu %d: did not stop within 5s", s.ID))
			return
		}
	}
}

func (e *Engine) physical(logical uint16) int {
	return int(e.spuMap.Load().Physical(logical))
}

func (e *Engine) txOwner(ifindex int) int {
	o := *e.txOwners.Load()
	if ifindex < 0 || ifindex >= len(o) {
		return -1
	}
	return o[ifindex]
}

func (e *Engine) emit(ev Event) {
	select {
	case e.Events <- ev:
	default:
		e.EventsLost.Add(1)
	}
}

// Anchor returns the anchor function.
func (e *Engine) Anchor() anchor.Function { return e.fn }

// Map returns the current logical -> physical map.
func (e *Engine) Map() *anchor.Map { return e.spuMap.Load() }

// NumSPUs is the number of SPUs.
func (e *Engine) NumSPUs() int { return len(e.spus) }

// Do runs fn on SPU spu's goroutine, between batches, and waits for it.
func (e *Engine) Do(spu int, fn func(*SPU)) error {
	if spu < 0 || spu >= len(e.spus) {
		return fmt.Errorf("spu: no SPU %d", spu)
	}
	s := e.spus[spu]
	if !e.started {
		fn(s) // nobody else runs the tables yet
		return nil
	}
	if s.ctl.stopped.Load() {
		return fmt.Errorf("spu %d: %s, stopped", spu, s.State())
	}
	done := make(chan struct{})
	select {
	case s.ctl.cmds <- func(s *SPU) { fn(s); close(done) }:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("spu %d: command queue full", spu)
	}
	s.wake()
	select {
	case <-done:
		return nil
	case <-s.ctl.done:
		// Its loop ended (a panic) with the command queued: no one will
		// run it, and a lookup reads a failed SPU's tables itself.
		select {
		case <-done:
			return nil
		default:
		}
		return fmt.Errorf("spu %d: %s, stopped", spu, s.State())
	case <-time.After(5 * time.Second):
		return fmt.Errorf("spu %d: did not run a command within 5s (stalled?)", spu)
	}
}

// doTables runs fn, which changes the tables of SPU spu and nothing else
// of it, as Do does; when the SPU sleeps with no command queued, it runs
// fn at once from the calling goroutine, the SPU held asleep meanwhile
// (control.nap), rather than waking the SPU's thread to run it and
// waiting for that: installing a Child SA then costs no thread wakeups,
// which were most of spud's CPU per child.add. The SPU's own commands and
// fn never overlap, and one queued before fn still runs before it.
func (e *Engine) doTables(spu int, fn func(*SPU)) error {
	if spu >= 0 && spu < len(e.spus) && e.started && e.lend(e.spus[spu], fn) {
		e.lent.Add(1)
		return nil
	}
	return e.Do(spu, fn)
}

// lend runs fn on s's tables if s sleeps with no command queued, and
// reports whether it did. s gets its tables back even if fn panics (the
// API's server recovers a handler's panic): it would wait for them
// forever otherwise.
func (e *Engine) lend(s *SPU, fn func(*SPU)) bool {
	if !s.ctl.nap.CompareAndSwap(napAsleep, napLent) {
		return false
	}
	defer s.ctl.nap.Store(napAsleep)
	if len(s.ctl.cmds) > 0 || s.ctl.stopped.Load() {
		return false
	}
	fn(s)
	return true
}

// ToESP converts an SA of the API into the ESP engine's configuration.
func ToESP(sa *api.SA) (esp.Config, error) {
	if !sa.Suite.Valid() {
		return esp.Config{}, fmt.Errorf("sa spi 0x%08x: no ESP suite", sa.SPI)
	}
	c := esp.Config{
		SPI: sa.SPI, Suite: sa.Suite, EncKey: sa.EncKey, IntegKey: sa.IntegKey,
		Local: sa.Local, Remote: sa.Remote, ESN: sa.ESN, ReplayWindow: sa.ReplayWindow,
		Lifetime: esp.Lifetime{SoftBytes: sa.Lifetime.SoftBytes, HardBytes: sa.Lifetime.HardBytes,
			SoftPackets: sa.Lifetime.SoftPackets, HardPackets: sa.Lifetime.HardPackets},
	}
	if sa.Dir == api.In {
		c.Direction = esp.Inbound
	} else {
		c.Direction = esp.Outbound
	}
	if sa.Mode == api.Transport {
		c.Mode = esp.Transport
	}
	if sa.Encap != nil {
		c.UDPEncap, c.LocalPort, c.RemotePort = true, sa.Encap.LocalPort, sa.Encap.RemotePort
	}
	// The ESP engine compiles its own copies of the selectors.
	c.LocalTS, c.RemoteTS = sa.LocalTS, sa.RemoteTS
	return c, nil
}

func refOf(sa *api.SA) saRef {
	return idRef(api.SAID{SPI: sa.SPI, Dir: sa.Dir, Remote: sa.Remote})
}

// AddSA installs an SA on its anchor SPU.
func (e *Engine) AddSA(d *api.SA) (logical uint16, spu int, err error) {
	if err := d.Validate(); err != nil {
		return 0, 0, err
	}
	cfg, err := ToESP(d)
	if err != nil {
		return 0, 0, err
	}
	if d.Dir == api.Out {
		cfg.SpeedPad = e.cfg.SpeedPad
	}
	sa, err := esp.NewSA(cfg)
	if err != nil {
		return 0, 0, err
	}
	if logical, err = e.saLogical(d); err != nil {
		return 0, 0, err
	}
	desc := saDesc{reqid: d.ReqID, window: int32(d.ReplayWindow), name: d.Name}
	ref := refOf(d)
	e.mu.Lock()
	if _, dup := e.sas[ref]; dup {
		e.mu.Unlock()
		return 0, 0, fmt.Errorf("sa spi 0x%08x %s: %w", d.SPI, d.Dir, unixrpc.ErrExists)
	}
	e.sas[ref] = newReg(logical, e.saOrder.add(ref))
	e.mu.Unlock()
	spu = e.physical(logical)
	err = e.Do(spu, func(s *SPU) {
		if d.Dir == api.In {
			s.t.addIn(&inSA{sa: sa, desc: desc, logical: logical})
		} else {
			s.t.addOut(&outSA{sa: sa, desc: desc, logical: logical})
		}
	})
	if err != nil {
		e.mu.Lock()
		e.saOrder.del(e.sas[ref].seq())
		delete(e.sas, ref)
		e.mu.Unlock()
	}
	return logical, spu, err
}

// saLogical is the logical SPU an SA is anchored on. An inbound SA's is
// the one its SPI encodes, where the steering program sends its packets
// (for an SPI spud allocated, the one it was allocated for). An outbound
// SA's is the explicit one (its IKE SA's) or the hash of its endpoints.
// Either stays the SA's for its life: a new peer address (NAT) or a map
// change never computes it again.
func (e *Engine) saLogical(d *api.SA) (uint16, error) {
	if err := d.ValidateLogical(e.fn.L()); err != nil {
		return 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	if d.Dir == api.In {
		l := e.fn.LogicalSPI(d.SPI)
		if d.Logical != nil && *d.Logical != int(l) {
			return 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "sa spi 0x%08x in: logical SPU %d asked, but the SPI encodes %d, where its packets are steered", d.SPI, *d.Logical, l)
		}
		return l, nil
	}
	if d.Logical != nil {
		return uint16(*d.Logical), nil
	}
	return e.fn.Logical(d.Local, d.Remote), nil
}

// DelSA removes an SA.
func (e *Engine) DelSA(id api.SAID) error {
	ref := idRef(id)
	if ref.dir == refOut {
		if !id.Remote.IsValid() {
			// Outbound SPIs are the peer's: without the peer, accept a
			// unique match.
			e.mu.Lock()
			n := 0
			for r := range e.sas {
				if r.spi == id.SPI && r.dir == refOut {
					ref, n = r, n+1
				}
			}
			e.mu.Unlock()
			if n > 1 {
				return fmt.Errorf("sa spi 0x%08x out: several peers use it; name the remote", id.SPI)
			}
		}
	}
	e.mu.Lock()
	reg, ok := e.sas[ref]
	if ok {
		e.saOrder.del(reg.seq())
		delete(e.sas, ref)
	}
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("sa spi 0x%08x %s: %w", id.SPI, id.Dir, unixrpc.ErrNotFound)
	}
	return e.Do(e.physical(reg.logical()), func(s *SPU) {
		if ref.dir == refIn {
			s.t.delIn(ref.spi)
		} else {
			s.t.delOut(outKey{ref.spi, ref.remote})
		}
	})
}

// UpdateSA changes the peer's address or port, or the lifetimes.
func (e *Engine) UpdateSA(u *api.SAUpdate) error {
	ref := idRef(u.SAID)
	e.mu.Lock()
	reg, ok := e.sas[ref]
	// An outbound SA is known by its remote: a new one (the peer moved
	// behind a NAT) re-keys it in the registry and on its SPU, or the
	// next delete by the new remote would miss it.
	moved := ref
	if u.Dir == api.Out && u.Remote.IsValid() && addr16(u.Remote) != ref.remote {
		moved.remote = addr16(u.Remote)
		if _, dup := e.sas[moved]; dup && ok {
			e.mu.Unlock()
			return fmt.Errorf("sa spi 0x%08x %s to %s: %w", u.SPI, u.Dir, u.Remote, unixrpc.ErrExists)
		}
	}
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("sa spi 0x%08x %s: %w", u.SPI, u.Dir, unixrpc.ErrNotFound)
	}
	var err error
	derr := e.Do(e.physical(reg.logical()), func(s *SPU) {
		var sa *esp.SA
		if u.Dir == api.In {
			if x := s.t.in[u.SPI]; x != nil {
				sa = x.sa
			}
		} else if x := s.t.out[outKey{u.SPI, ref.remote}]; x != nil {
			sa = x.sa
			x.nhOK = false
		}
		if sa == nil {
			err = fmt.Errorf("sa spi 0x%08x %s: not on its SPU", u.SPI, u.Dir)
			return
		}
		if u.Remote.IsValid() || u.Encap != nil {
			remote := sa.Remote()
			if u.Remote.IsValid() {
				remote = u.Remote
			}
			_, _, port := sa.UDPEncap()
			if u.Encap != nil {
				port = u.Encap.RemotePort
			}
			if err = sa.SetPeer(remote, port); err != nil {
				return
			}
			if moved != ref {
				s.t.rekeyOut(outKey{u.SPI, ref.remote}, outKey{u.SPI, moved.remote})
			}
		}
		if u.Lifetime != nil {
			err = errors.New("changing lifetimes of a live SA is not supported; install a new SA")
		}
	})
	if derr != nil {
		return derr
	}
	if err == nil && moved != ref {
		e.mu.Lock()
		if reg, ok := e.sas[ref]; ok {
			delete(e.sas, ref)
			e.sas[moved] = reg
			e.saOrder.rekey(reg.seq(), moved)
		}
		e.mu.Unlock()
	}
	return err
}

// AddPolicy installs a policy on its anchor SPU and returns its id.
func (e *Engine) AddPolicy(p api.Policy) (api.Policy, uint16, int, error) {
	if err := p.Validate(); err != nil {
		return p, 0, 0, err
	}
	if err := p.ValidateLogical(e.fn.L()); err != nil {
		return p, 0, 0, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	var logical uint16
	switch {
	case p.Logical != nil:
		logical = uint16(*p.Logical)
	case p.Action == api.Protect:
		logical = e.fn.Logical(p.Local, p.Remote)
	}
	p.Logical = api.Logical(int(logical))
	canonicalPolicy(&p)
	e.mu.Lock()
	if p.ID == 0 {
		for {
			e.nextPol++
			if e.nextPol == 0 {
				e.nextPol = 1
			}
			if _, used := e.policies[e.nextPol]; !used {
				break
			}
		}
		p.ID = e.nextPol
	} else if _, dup := e.policies[p.ID]; dup {
		e.mu.Unlock()
		return p, 0, 0, fmt.Errorf("policy %d: %w", p.ID, unixrpc.ErrExists)
	}
	e.policies[p.ID] = newReg(logical, e.polOrder.add(p.ID))
	e.mu.Unlock()
	spu := e.physical(logical)
	x := newPolicy(&p, logical)
	err := e.Do(spu, func(s *SPU) { s.t.addPolicy(x) })
	return p, logical, spu, err
}

// DelPolicy removes a policy, and returns it as its SPU had it (the zero
// Policy if its SPU had it not, as between the halves of a move).
func (e *Engine) DelPolicy(id uint32) (api.Policy, error) {
	e.mu.Lock()
	ref, ok := e.policies[id]
	if ok {
		e.polOrder.del(ref.seq())
		delete(e.policies, id)
	}
	e.mu.Unlock()
	if !ok {
		return api.Policy{}, fmt.Errorf("policy %d: %w", id, unixrpc.ErrNotFound)
	}
	var p api.Policy
	err := e.Do(e.physical(ref.logical()), func(s *SPU) {
		if x := s.t.policies[id]; x != nil {
			p = x.api()
		}
		s.t.delPolicy(id)
	})
	return p, err
}

// Policy returns an installed policy, from its SPU (one command; a policy
// on the move is waited for as lookup does).
func (e *Engine) Policy(id uint32) (api.Policy, uint16, bool) {
	var p api.Policy
	var logical uint16
	found := false
	e.lookup([]int{0}, func(int) (uint16, bool) {
		r, ok := e.policies[id]
		logical = r.logical()
		return r.logical(), ok
	}, func(s *SPU, _ int) bool {
		if x := s.t.policies[id]; x != nil {
			p, found = x.api(), true
		}
		return found
	})
	return p, logical, found
}

// DumpSAs lists every SA with its state, SPU by SPU.
func (e *Engine) DumpSAs() []api.SAState {
	var out []api.SAState
	for _, s := range e.spus {
		var part []api.SAState
		e.Do(s.ID, func(s *SPU) {
			for _, x := range s.t.in {
				part = append(part, saState(&x.desc, x.sa, x.logical, s.ID, false, nil))
			}
			for _, x := range s.t.out {
				part = append(part, saState(&x.desc, x.sa, x.logical, s.ID, s.t.active[x.desc.reqid] == x, nil))
			}
		})
		out = append(out, part...)
	}
	return out
}

// saState is an SA's dump entry. With mem, the entry's Logical, Encap
// and Drops are mem's, good until mem is used again (a page encoded SA by
// SA); without, its own.
func saState(d *saDesc, sa *esp.SA, logical uint16, spu int, active bool, mem *entryMem) api.SAState {
	st := sa.Stats()
	// Made for an SA that dropped something only: a listing of a million
	// SAs would make a million empty maps (nil and empty marshal alike).
	var drops map[string]uint64
	if mem != nil {
		clear(mem.drops)
		drops = mem.drops
	}
	for r, n := range st.Drops {
		if n > 0 {
			if drops == nil {
				drops = map[string]uint64{}
			}
			drops[esp.Reason(r).String()] = n
		}
	}
	if mem != nil {
		mem.drops = drops
		if len(drops) == 0 {
			drops = nil
		}
	}
	return api.SAState{SA: describe(d, sa, logical, mem), SPU: spu, Active: active,
		Stats: api.SAStats{Packets: st.Packets, Bytes: st.Bytes, Seq: st.Seq, Drops: drops}}
}

// describe is the SA's description as sa.add took it, keys left out (as
// api.SA.Redacted leaves them) and addresses unmapped; its Logical and
// Encap in mem if given (see saState).
func describe(d *saDesc, sa *esp.SA, logical uint16, mem *entryMem) api.SA {
	a := api.SA{SPI: sa.SPI(), Dir: api.Out, Local: sa.Local(), Remote: sa.Remote(),
		Mode: api.Tunnel, Suite: sa.Suite(), EncKey: []byte{}, ESN: sa.ESN(), ReplayWindow: int(d.window),
		ReqID: d.reqid, Name: d.name}
	if mem != nil {
		mem.logical = int(logical)
		a.Logical = &mem.logical
	} else {
		a.Logical = api.Logical(int(logical))
	}
	if sa.Direction() == esp.Inbound {
		a.Dir = api.In
	}
	if sa.Mode() == esp.Transport {
		a.Mode = api.Transport
	}
	if sa.Suite().IntegKeyLen() > 0 {
		a.IntegKey = []byte{}
	}
	if udp, lport, rport := sa.UDPEncap(); udp {
		if mem != nil {
			mem.encap = api.Encap{LocalPort: lport, RemotePort: rport}
			a.Encap = &mem.encap
		} else {
			a.Encap = &api.Encap{LocalPort: lport, RemotePort: rport}
		}
	}
	a.LocalTS, a.RemoteTS = sa.Selectors()
	l := sa.Lifetime()
	a.Lifetime = api.Lifetime{SoftBytes: l.SoftBytes, HardBytes: l.HardBytes, SoftPackets: l.SoftPackets, HardPackets: l.HardPackets}
	return a
}

// DumpPolicies lists every policy with its counters.
func (e *Engine) DumpPolicies() []api.PolicyState {
	var out []api.PolicyState
	for _, s := range e.spus {
		e.Do(s.ID, func(s *SPU) {
			for _, p := range s.t.policies {
				ps := policyState(p, s.ID)
				if p.out != nil {
					ps.OutSPI = p.out.sa.SPI()
				}
				out = append(out, ps)
			}
		})
	}
	return out
}

// policyState is a policy's dump entry, with its logical SPU filled in.
func policyState(p *policy, spu int) api.PolicyState {
	return api.PolicyState{Policy: p.api(), SPU: spu, Packets: p.packets, Acquires: p.acq}
}

// SPUStats returns each SPU's counters, read without stopping the SPUs.
func (e *Engine) SPUStats() []api.SPUStats {
	var out []api.SPUStats
	for _, s := range e.spus {
		c := &s.c
		st := api.SPUStats{ID: s.ID, CPU: s.CPU, RxPackets: c.rx.Load(), TxPackets: c.tx.Load(),
			Encap: c.encap.Load(), Decap: c.decap.Load(), HandoffOut: c.handoffOut.Load(),
			HandoffIn: c.handoffIn.Load(), HandoffFull: c.drops[DropHandoffFull].Load(), FragHandoff: c.fragHandoff.Load(),
			Bypass: c.bypass.Load(), WarmSAs: s.t.owner.Warm(), Warmed: s.t.owner.Warmed(), Cooled: s.t.owner.Cooled(),
			Drops: map[string]uint64{}}
		for d := Drop(0); d < NumDrops; d++ {
			if n := c.drops[d].Load(); n > 0 {
				st.Drops[d.String()] = n
			}
		}
		for r := esp.Reason(0); r < esp.NumReasons; r++ {
			if n := c.saDrops.Load(r); n > 0 {
				st.Drops["sa_"+r.String()] = n
			}
		}
		if tot := c.totalNanos.Load(); tot > 0 {
			st.Busy = float64(c.busyNanos.Load()) / float64(tot)
		}
		out = append(out, st)
	}
	return out
}

// Counts returns how many SAs, policies and protecting policies (tunnels)
// each SPU holds.
func (e *Engine) Counts() (sas, policies, tunnels []int) {
	sas = make([]int, len(e.spus))
	policies = make([]int, len(e.spus))
	tunnels = make([]int, len(e.spus))
	for _, s := range e.spus {
		e.Do(s.ID, func(s *SPU) {
			sas[s.ID] = len(s.t.in) + len(s.t.out)
			policies[s.ID] = len(s.t.policies)
			tunnels[s.ID] = s.t.tunnels
		})
	}
	return sas, policies, tunnels
}
