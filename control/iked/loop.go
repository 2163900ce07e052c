package iked

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/worker"
)

// Queue lengths of a worker: datagrams waiting (a burst of IKE_SA_INITs
// beyond this is dropped, counted, and retransmitted by the peers) and
// commands.
const (
	datagramQueue = 4096
	commandQueue  = 256
	// datagramQueueBytes bounds the bytes waiting in a worker's queue as
	// well: 4,096 datagrams of up to 64 KiB each would be 256 MiB.
	datagramQueueBytes = 8 << 20
)

// loop is one worker's goroutine with its queues and sockets.
type loop struct {
	d    *Daemon
	idx  int
	spu  int
	w    *worker.Worker
	in   chan manager.Datagram
	cmds chan func(*worker.Worker)
	// socks are this worker's sockets by local address and port.
	socks map[netip.AddrPort]*net.UDPConn
	// dp is the worker's own connection to spud, so that workers share no
	// lock on the way to the data plane; wdp is the worker's data plane
	// over it, whose child.add the worker does not wait for.
	dp  *spudDP
	wdp *workerDP
	// answers are the data plane's answers to the calls the worker did not
	// wait for (workerDP.post), run by its goroutine between its other
	// events; wake says there are some.
	answerMu sync.Mutex
	answers  []func()
	spare    []func()
	wake     chan struct{}
	log      *slog.Logger
	// rx counts datagrams that arrived on this worker's sockets, handedIn
	// those another worker's sockets got for it (the selector could not
	// choose, or a map change was under way).
	rx, handedIn atomic.Uint64
	// queued is the bytes of the datagrams in the queue (in).
	queued atomic.Int64
	// unsaved holds the IKE SAs whose state could not be written (a full
	// or failing disk): their files are removed, and run writes them again
	// every persistRetry until it works. lastPersistErr rate-limits the
	// ERROR lines about it.
	unsaved        map[*sa.IKESA]bool
	lastPersistErr time.Time
	// track is what VICI's events need, while a client listens (vici.go).
	track *viciTrack
}

// persistRetry is how often a worker tries again to write the states it
// could not write.
const persistRetry = time.Second

// persist writes an IKE SA's state. On failure its older record is set
// aside (see stateStore.discard), the failure is counted and said at ERROR (at most
// every 10 s per worker), and the write is retried until it works.
func (l *loop) persist(ike *sa.IKESA) {
	err := l.d.store.save(ike)
	if err == nil {
		if l.unsaved[ike] {
			delete(l.unsaved, ike)
			l.log.Info("iked: IKE SA state written again", "ike_id", ike.UniqueID, "still_unsaved", len(l.unsaved))
		}
		return
	}
	l.d.stats.Inc(stats.StateWriteErrors)
	if derr := l.d.store.discard(ike); derr != nil {
		err = fmt.Errorf("%w; and its older state could not be set aside: %v", err, derr)
	}
	l.unsaved[ike] = true
	if now := time.Now(); now.Sub(l.lastPersistErr) >= 10*time.Second {
		l.lastPersistErr = now
		l.log.Error("iked: IKE SA state not written; retrying, and a crash now would lose it", "ike_id", ike.UniqueID,
			"unsaved", len(l.unsaved), "err", err.Error())
	}
}

func newLoop(d *Daemon, idx, spu int) *loop {
	l := &loop{d: d, idx: idx, spu: spu, in: make(chan manager.Datagram, datagramQueue),
		cmds: make(chan func(*worker.Worker), commandQueue), socks: map[netip.AddrPort]*net.UDPConn{},
		dp: &spudDP{path: func() string { return d.cfg.Load().SPUD }}, log: d.log.With("worker", idx, "spu", spu), unsaved: map[*sa.IKESA]bool{},
		wake: make(chan struct{}, 1)}
	l.wdp = &workerDP{spudDP: l.dp, post: l.post, wg: &d.wg, fail: func(what string, err error) {
		d.stats.Fail(stats.DataPlane)
		l.log.Warn("iked: "+what+" (not waited for) failed", "err", err.Error())
	}}
	l.w = worker.New(idx, &workerEnv{d: d, l: l})
	return l
}

// post queues f for the worker's goroutine; it never blocks (the caller is
// the goroutine of an SA API call, which must not wait for the worker).
func (l *loop) post(f func()) {
	l.answerMu.Lock()
	l.answers = append(l.answers, f)
	l.answerMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// runAnswers runs what post queued, on the worker's goroutine.
func (l *loop) runAnswers() {
	l.answerMu.Lock()
	fs := l.answers
	l.answers, l.spare = l.spare[:0], nil
	l.answerMu.Unlock()
	for i, f := range fs {
		f()
		fs[i] = nil
	}
	l.spare = fs[:0]
}

// run is the worker's goroutine: datagrams, commands and timers, one at a
// time.
func (l *loop) run() {
	defer l.d.wg.Done()
	l.log.Info("iked: worker started")
	defer l.log.Info("iked: worker stopped")
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retry := time.NewTicker(persistRetry)
	defer retry.Stop()
	for {
		if dl := l.w.Deadline(); dl.IsZero() {
			timer.Reset(time.Hour)
		} else {
			timer.Reset(max(time.Until(dl), 0))
		}
		var retryC <-chan time.Time
		if len(l.unsaved) > 0 {
			retryC = retry.C
		}
		select {
		case d := <-l.in:
			l.queued.Add(-int64(len(d.Data)))
			l.w.Receive(d)
		case f := <-l.cmds:
			f(l.w)
		case <-l.wake:
			l.runAnswers()
		case <-timer.C:
			l.w.Tick(time.Now())
		case <-retryC:
			for ike := range l.unsaved {
				l.persist(ike)
			}
		case <-l.d.ctx.Done():
			return
		}
	}
}

// openSockets loads the SO_REUSEPORT selector and opens the sockets of
// every address the configuration listens on.
func (d *Daemon) openSockets(cfg *config.Config) error {
	addrs, err := listenAddrs(cfg)
	if err != nil {
		return err
	}
	if d.steer, err = reuseportSteerer(d); err != nil {
		return err
	}
	return d.listen(cfg, addrs, false)
}

// listen opens, on each address not yet open, the IKE and NAT-T groups with
// one socket per worker, and starts their readers. With running set the
// workers already run, and each learns its new sockets on its goroutine.
func (d *Daemon) listen(cfg *config.Config, addrs []netip.Addr, running bool) error {
	ids := make([]uint16, len(d.loops))
	for i, l := range d.loops {
		ids[i] = uint16(l.spu)
	}
	all := maps.Clone(*d.socks.Load())
	var opened []netip.Addr
	for _, a := range addrs {
		if _, ok := all[netip.AddrPortFrom(a, uint16(cfg.Port))]; ok {
			continue
		}
		for _, port := range []int{cfg.Port, cfg.PortNATT} {
			ap := netip.AddrPortFrom(a, uint16(port))
			g, err := d.steer.Listen(ap, ids)
			if err != nil {
				return fmt.Errorf("iked: listen on %s: %w", ap, err)
			}
			d.groups = append(d.groups, g)
			for _, l := range d.loops {
				c := g.Conn(uint16(l.spu))
				if c == nil {
					return fmt.Errorf("iked: listen on %s: no socket for spu %d", ap, l.spu)
				}
				growSendBuffer(c)
				if running {
					if err := d.post(l, func(*worker.Worker) { l.socks[ap] = c }); err != nil {
						return err
					}
				} else {
					l.socks[ap] = c
				}
				all[ap] = append(all[ap], c)
				d.wg.Add(1)
				go d.read(l, ap, c)
			}
		}
		opened = append(opened, a)
	}
	d.socks.Store(&all)
	if len(opened) > 0 {
		d.log.Info("iked: listening", "addresses", opened, "port", cfg.Port, "natt_port", cfg.PortNATT, "workers", len(d.loops))
	}
	return nil
}

// listenAddrs are the configured listen addresses, else the connections'
// local addresses, else every global unicast address of the host.
func listenAddrs(cfg *config.Config) ([]netip.Addr, error) {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, s := range cfg.Listen {
		a, _ := netip.ParseAddr(s)
		add(a)
	}
	if len(out) > 0 {
		return out, nil
	}
	all := false
	for _, name := range cfg.Order {
		c := cfg.Connections[name]
		if len(c.Locals) == 0 {
			all = true
		}
		for _, a := range c.Locals {
			add(a)
		}
	}
	if all {
		ifaddrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("iked: local addresses: %w", err)
		}
		for _, ia := range ifaddrs {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap().IsGlobalUnicast() {
					add(a)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("iked: no address to listen on (set listen or local_addrs)")
	}
	return out, nil
}

// read is a socket's reader: each datagram goes to the worker of its
// tunnel's anchor, which is this socket's worker unless the selector had
// to leave the choice to the kernel.
func (d *Daemon) read(l *loop, local netip.AddrPort, c *net.UDPConn) {
	defer d.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || d.ctx.Err() != nil {
				return
			}
			continue
		}
		if max := d.cfg.Load().MaxPacket; max > 0 && n > max {
			// Not worth a copy nor a place in a queue (counted as the
			// worker would count it).
			d.stats.Fail(stats.MaxPacket)
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		d.dispatch(l, manager.Datagram{Local: local, Remote: src, Data: append([]byte(nil), buf[:n]...)})
	}
}

// dispatch queues a datagram that arrived on from's socket for the worker
// of its tunnel's anchor: from itself unless the SO_REUSEPORT selector had
// to leave the choice to the kernel (counted as a handoff).
func (d *Daemon) dispatch(from *loop, dg manager.Datagram) {
	from.rx.Add(1)
	target := d.route(dg)
	if target != from {
		d.stats.Inc(stats.Handoffs)
		target.handedIn.Add(1)
	}
	n := int64(len(dg.Data))
	if target.queued.Add(n) > datagramQueueBytes {
		target.queued.Add(-n)
		d.dropped.Add(1)
		return
	}
	select {
	case target.in <- dg:
	default:
		target.queued.Add(-n)
		d.dropped.Add(1)
	}
}

// send sends a datagram from the worker's socket for its local address
// (any worker's if this one has none there).
func (l *loop) send(dg manager.Datagram) {
	c := l.socks[dg.Local]
	if c == nil {
		if cs := (*l.d.socks.Load())[dg.Local]; len(cs) > 0 {
			c = cs[0]
		}
	}
	if c == nil {
		l.log.Warn("iked: no socket to send from", "local", dg.Local.String(), "remote", dg.Remote.String())
		return
	}
	if err := sendNoWait(c, dg.Data, dg.Local, dg.Remote); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			l.d.stats.Inc(stats.SendsDropped)
			return
		}
		l.log.Debug("iked: send", "local", dg.Local.String(), "remote", dg.Remote.String(), "err", err.Error())
	}
}

// sendBuffer is the send buffer iked asks for on each IKE socket, past
// net.core.wmem_max where it may (CAP_NET_ADMIN): answers to forged
// on-link addresses wait in the kernel for ARP, charged to the socket, and
// the answers to real peers must still find room beside them.
const sendBuffer = 4 << 20

func growSendBuffer(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sendBuffer)
		}
	})
}

// sendNoWait sends a datagram or fails at once with EAGAIN when the
// socket's buffer is full. A blocking send parks the worker: answers to
// forged on-link addresses wait for ARP for seconds, each holding buffer
// space, and a flood of them stalled every exchange of the worker (a
// peer's setup took 4.5 s instead of 15 ms). IKE retransmits what is
// dropped.
func sendNoWait(c *net.UDPConn, b []byte, local, remote netip.AddrPort) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var to unix.Sockaddr
	if a := remote.Addr().Unmap(); a.Is4() && local.Addr().Unmap().Is4() {
		to = &unix.SockaddrInet4{Port: int(remote.Port()), Addr: a.As4()}
	} else {
		to = &unix.SockaddrInet6{Port: int(remote.Port()), Addr: remote.Addr().As16()}
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, to)
		return true
	}); err != nil {
		return err
	}
	return serr
}

// workerEnv is the daemon as one worker sees it.
type workerEnv struct {
	d *Daemon
	l *loop
}

var (
	_ worker.Env        = (*workerEnv)(nil)
	_ worker.Poster     = (*workerEnv)(nil)
	_ worker.TrapFinder = (*workerEnv)(nil)
)

func (e *workerEnv) Now() time.Time            { return time.Now() }
func (e *workerEnv) Rand() io.Reader           { return rand.Reader }
func (e *workerEnv) DataPlane() task.DataPlane { return e.l.wdp }
func (e *workerEnv) Config() *config.Config    { return e.d.cfg.Load() }
func (e *workerEnv) Settings() manager.Settings {
	return e.d.settings(e.d.cfg.Load())
}
func (e *workerEnv) NewReqID() uint32        { return e.d.reqid.Add(1) }
func (e *workerEnv) NewID() uint32           { return e.d.ids.Add(1) }
func (e *workerEnv) Stats() *stats.Counters  { return &e.d.stats }
func (e *workerEnv) Log() *slog.Logger       { return e.l.log }
func (e *workerEnv) Send(d manager.Datagram) { e.l.send(d) }
func (e *workerEnv) KeyExchange(g suite.GroupID) (*suite.KeyExchange, error) {
	return suite.NewKeyExchange(g)
}
func (e *workerEnv) Trap(conn, child string) (task.Trap, bool) {
	t, ok := e.d.traps.Load().byName[conn+"/"+child]
	return t.Trap, ok
}
func (e *workerEnv) LocalAddrFor(remote netip.Addr) (netip.Addr, error) { return localAddrFor(remote) }
func (e *workerEnv) Changed(ike *sa.IKESA) {
	e.l.persist(ike)
	if e.d.vici != nil {
		e.l.viciChanged(ike)
	}
}
func (e *workerEnv) Gone(ike *sa.IKESA) {
	if e.d.vici != nil {
		e.l.viciGone(ike)
	}
	delete(e.l.unsaved, ike)
	e.d.store.remove(ike)
	if !ike.Anchored {
		e.d.legacy.set(ike.OurSPI(), nil)
	}
}
func (e *workerEnv) Anchoring() *worker.Anchoring { return e.d.anchoring.Load() }

// TrapBetween reports whether a trap lies between local and remote
// (worker.TrapFinder).
func (e *workerEnv) TrapBetween(local, remote netip.Addr) bool {
	return e.d.traps.Load().between(local, remote)
}

// On queues f for worker id (worker.Poster); a full command queue gets
// it from a goroutine rather than stall this worker.
func (e *workerEnv) On(id int, f func(*worker.Worker)) {
	if id < 0 || id >= len(e.d.loops) {
		return
	}
	l := e.d.loops[id]
	select {
	case l.cmds <- f:
	default:
		e.d.wg.Add(1)
		go func() {
			defer e.d.wg.Done()
			select {
			case l.cmds <- f:
			case <-e.d.ctx.Done():
			}
		}()
	}
}
func (e *workerEnv) HalfOpen() *worker.PeerCounts { return &e.d.halfOpen }
func (e *workerEnv) Peers() *worker.PeerCounts    { return &e.d.peers }

// Others queues f for every other worker, as On does.
func (e *workerEnv) Others(f func(*worker.Worker)) {
	for i, l := range e.d.loops {
		if l != e.l {
			e.On(i, f)
		}
	}
}
func (e *workerEnv) InstallTrap(conn, child string) {
	if err := e.d.installTrap(conn, child); err != nil {
		e.l.log.Warn("iked: trap", "conn", conn, "child", child, "err", err.Error())
	}
}

// localAddrFor asks the kernel which source address it would use towards
// remote.
func localAddrFor(remote netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 500)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
