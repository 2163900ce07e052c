// Package iked is spugate's IKEv2 daemon as a package: it reads the
// configuration (package config), learns the data plane's SPUs and anchor
// function from spud's hello, runs one IKE worker (package worker) per SPU,
// each on its own goroutine with its own sockets on ports 500 and 4500 in
// SO_REUSEPORT groups (package reuseport) that steer every datagram to the
// worker of its tunnel's anchor SPU, installs the negotiated Child SAs
// into spud through the SA API, and serves its control socket (package
// ikectl) to spuctl.
//
// # Distribution
//
// Each worker owns the IKE SAs of the tunnels anchored on its SPU: IKE
// SA state is sharded, and nothing on the per-exchange path takes a lock
// shared by workers (counters are atomics, the configuration and the trap
// table are immutable values behind atomic pointers). A datagram that the
// kernel's hash delivered to another worker (the selector falls back to it
// when it cannot choose) is handed to the right worker's queue, counted
// (ike-stats: handoffs). An initiation, an acquire and a restored IKE SA go
// to the worker of the tunnel's anchor.
//
// # Restart without dropping traffic
//
// spud keeps forwarding with the SAs it holds while iked is down; spud never
// hands keys back. So iked persists each IKE SA (keys, message IDs, the
// cached last response, its Child SAs with their keys and policy ids) after
// every change, one 0600 JSON file per IKE SA in a 0700 directory on tmpfs
// (default /run/spugate/iked.state/), written atomically. On start it
// restores them on the worker of their anchor, compares with spud's SA and
// policy dumps (by SPI and policy id), re-installs what spud lacks (so a
// restarted spud gets its SAs back too), and after a grace period deletes
// what spud holds under iked's name (iked/...) that no IKE SA owns. The
// same resync runs when iked's connection to spud comes back.
//
// # Triggers
//
// start_action=start children are initiated at start (and on reload);
// start_action=trap children get a trap policy (protect, reqid, no SA)
// whose acquire events start the negotiation on the anchor's worker;
// spuctl initiate and terminate go through the control socket.
package iked

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/defrag"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/reuseport"
	"github.com/spugate/spugate/control/vici"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/sdnotify"
	"github.com/spugate/spugate/internal/unixrpc"
)

// Version names this build in hellos.
const Version = "iked 0.1"

// Defaults.
const (
	DefaultStateDir = "/run/spugate/iked.state"
	DefaultGrace    = 10 * time.Second
)

// Options configure the daemon.
type Options struct {
	// ConfigPath is the YAML configuration.
	ConfigPath string
	// StateDir holds the persisted IKE SAs (default DefaultStateDir).
	StateDir string
	// Grace is how long SAs in spud that no IKE SA owns are kept after a
	// start or a reconnection before they are deleted (default 10 s).
	Grace time.Duration
	// SpudWait bounds the wait for spud's socket at start (default 10 s).
	SpudWait time.Duration
	Log      *slog.Logger
	// Level is Log's level, which the control socket's log.level changes
	// at run time; nil: it cannot be changed.
	Level *slog.LevelVar
	// VICI is the unix socket of strongSwan's VICI protocol (swanctl,
	// govici), "" for none; VICIGroup, if set, the group that may use it
	// (mode 0660, else 0600).
	VICI, VICIGroup string
}

// Daemon is a running iked.
type Daemon struct {
	opts Options
	log  *slog.Logger
	cfg  atomic.Pointer[config.Config]

	dp *spudDP
	fn anchor.Function
	// anchoring is how workers anchor IKE SAs (replaced on reload when
	// ike_anchor changes); halfOpen counts half-open IKE SAs by peer
	// address over all workers, peers all their IKE SAs (INITIAL_CONTACT
	// with an anchor per IKE SA).
	anchoring atomic.Pointer[worker.Anchoring]
	halfOpen  worker.PeerCounts
	peers     worker.PeerCounts
	// legacy are IKE SAs restored from states written before anchors per
	// IKE SA: anchored by their endpoints, with SPIs that carry no anchor,
	// so their datagrams are routed by this table (our SPI -> worker).
	legacy pins
	spus   atomic.Pointer[anchor.Map]
	stats  stats.Counters
	reqid  atomic.Uint32
	ids    atomic.Uint32

	traps  atomic.Pointer[trapTable]
	trapMu sync.Mutex

	loops  []*loop
	byPhys map[int]*loop
	// socks are every worker's sockets by local address (immutable maps,
	// replaced when a reload opens new addresses).
	socks atomic.Pointer[map[netip.AddrPort][]*net.UDPConn]

	steer  *reuseport.Steerer
	groups []*reuseport.Group
	ctl    *unixrpc.Server
	vici   *vici.Server
	store  *stateStore
	// reloadMu makes reloads one at a time; fileCfg is the configuration
	// file's last reading and overlay what VICI clients loaded (vici.go),
	// which the configuration in force is made of; both under reloadMu.
	reloadMu sync.Mutex
	fileCfg  *config.Config
	overlay  viciOverlay
	// loadsMu guards loads: the worker each connection's last load run
	// started on, which keeps it when the SPU map moves the connection's
	// tunnel (and its later IKE SAs) to another worker.
	loadsMu sync.Mutex
	loads   map[string]*loop
	// lostStates is the number of IKE SA states the last restore could
	// not restore: the next sweep keeps what no IKE SA owns (resync.go).
	lostStates atomic.Int32

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// dropped counts datagrams a full worker queue refused.
	dropped atomic.Uint64
	// frags bounds the IKE fragments that all IKE SAs hold
	// (fragment_memory).
	frags *defrag.Budget

	// Following spud's SPU map (migrate.go).
	migMu      sync.Mutex
	pin        pins
	migrations atomic.Uint64
}

// Start brings iked up.
func Start(opts Options) (*Daemon, error) {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.SpudWait == 0 {
		opts.SpudWait = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	d := &Daemon{opts: opts, log: opts.Log, byPhys: map[int]*loop{}, frags: defrag.NewBudget(config.DefaultFragmentMemory)}
	if opts.VICI != "" {
		// Made first: VICI's log event follows what iked logs from the
		// start (the server logs its own trouble to opts.Log).
		d.vici = vici.NewServer(opts.Log)
		d.log = slog.New(d.vici.LogHandler(opts.Log.Handler()))
	}
	d.socks.Store(&map[netip.AddrPort][]*net.UDPConn{})
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.traps.Store(&trapTable{byName: map[string]trapEntry{}, byReqID: map[uint32]trapEntry{}})
	if err := d.start(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start() error {
	cfg, err := config.Load(d.opts.ConfigPath, task.ConfigChecker{})
	if err != nil {
		return err
	}
	d.logWarnings(cfg)
	d.logTrust(cfg)
	d.fileCfg = cfg
	d.useConfig(cfg)
	if d.store, err = openStore(d.opts.StateDir, d.log); err != nil {
		return err
	}
	client, hello, err := dialSpud(d.ctx, d.log, cfg.SPUD, d.opts.SpudWait)
	if err != nil {
		return err
	}
	d.dp = &spudDP{path: func() string { return d.cfg.Load().SPUD }}
	d.dp.c.Store(client)
	var hk anchor.HashKey
	if len(hello.AnchorKey) != len(hk) {
		return fmt.Errorf("iked: spud's hello has a %d-byte anchor key, want %d", len(hello.AnchorKey), len(hk))
	}
	copy(hk[:], hello.AnchorKey)
	if d.fn, err = anchor.NewFunction(hk, hello.Logical); err != nil {
		return fmt.Errorf("iked: spud's anchor function: %w", err)
	}
	codec, err := d.fn.Codec()
	if err != nil {
		return fmt.Errorf("iked: spud's anchor function: %w", err)
	}
	d.anchoring.Store(&worker.Anchoring{Fn: d.fn, Codec: codec, PerIKESA: cfg.IKEAnchor == config.IKEAnchorIKESA})
	m, err := mapOf(hello.Map)
	if err != nil {
		return err
	}
	d.spus.Store(m)
	spus := slices.Clone(hello.SPUs)
	if cfg.Workers > 0 && cfg.Workers < len(spus) {
		spus = spus[:cfg.Workers]
	}
	if len(spus) == 0 {
		return errors.New("iked: spud reports no SPU")
	}
	for i, id := range spus {
		l := newLoop(d, i, id)
		d.loops = append(d.loops, l)
		d.byPhys[id] = l
	}
	if err := d.openSockets(cfg); err != nil {
		return err
	}
	for _, l := range d.loops {
		c, err := api.Dial(cfg.SPUD)
		if err != nil {
			return fmt.Errorf("iked: worker %d: %w", l.idx, err)
		}
		l.dp.c.Store(c)
	}
	for _, l := range d.loops {
		d.wg.Add(1)
		go l.run()
	}
	// Restore and resync before anything new starts.
	if err := d.restore(); err != nil {
		return err
	}
	d.ctl = unixrpc.NewServer(d.log)
	d.handlers()
	if err := os.MkdirAll(dirOf(cfg.Control), 0o700); err != nil {
		return fmt.Errorf("iked: control socket: %w", err)
	}
	if err := d.ctl.Listen(cfg.Control); err != nil {
		return fmt.Errorf("iked: control socket: %w", err)
	}
	go d.ctl.Serve()
	if err := d.startVICI(); err != nil {
		return err
	}
	d.wg.Add(1)
	go d.watchSpud(client)
	d.applyStartActions(cfg, nil)
	d.log.Info("iked: ready", "config", d.opts.ConfigPath, "workers", spus, "logical", hello.Logical,
		"control", cfg.Control, "vici", d.opts.VICI, "state", d.opts.StateDir, "connections", len(cfg.Connections))
	return nil
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "."
}

func mapOf(entries []int) (*anchor.Map, error) {
	e := make([]uint16, len(entries))
	for i, v := range entries {
		e[i] = uint16(v)
	}
	m, err := anchor.MapFromEntries(e)
	if err != nil {
		return nil, fmt.Errorf("iked: spud's SPU map: %w", err)
	}
	return m, nil
}

// spudWaitLogEvery is how often iked says, while it waits for spud, that
// it still does: a daemon silent for its whole wait looks hung.
const spudWaitLogEvery = 3 * time.Second

// dialSpud connects to spud, waiting for its socket to appear. It logs
// the first failure at once and again every spudWaitLogEvery, each with
// its reason, and says so in systemd's status (sdnotify; nothing outside
// systemd), which it sets back once connected.
func dialSpud(ctx context.Context, log *slog.Logger, path string, wait time.Duration) (*api.Client, *api.HelloReply, error) {
	start := time.Now()
	deadline := start.Add(wait)
	var said time.Time
	for {
		c, err := api.Dial(path)
		connected := err == nil
		if err == nil {
			var h *api.HelloReply
			if h, err = c.Hello(Version); err == nil {
				if !said.IsZero() {
					// What follows (started, reconnected) is logged by
					// the callers; systemd's status would keep saying
					// "waiting".
					sdnotify.Status("connected to spud at " + path)
				}
				return c, h, nil
			}
			c.Close()
		}
		reason := err
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			reason = op.Err
		}
		if time.Now().After(deadline) {
			if connected {
				return nil, nil, fmt.Errorf("iked: spud (SA API) at %s: hello: %v", path, reason)
			}
			return nil, nil, fmt.Errorf("iked: spud (SA API) at %s not reachable in %s: %v (is spud running? the configuration's spud: names its socket)",
				path, wait, reason)
		}
		if now := time.Now(); now.Sub(said) >= spudWaitLogEvery {
			said = now
			msg := fmt.Sprintf("waiting for spud at %s (SA API): %v", path, reason)
			log.Warn("iked: "+msg, "waited", now.Sub(start).Round(time.Millisecond).String(), "gives_up_in", deadline.Sub(now).Round(time.Second).String())
			sdnotify.Status(msg)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Config returns the configuration in force.
func (d *Daemon) Config() *config.Config { return d.cfg.Load() }

// Stats returns the daemon's counters.
func (d *Daemon) Stats() *stats.Counters { return &d.stats }

// owner is the worker of the tunnel between local and remote: the one of
// its endpoints' anchor SPU, where the IKE SAs we initiate to remote and
// its trap policies are.
func (d *Daemon) owner(local, remote netip.Addr) *loop {
	return d.loopOf(d.fn.Logical(local, remote))
}

// loopOf is the worker of a logical SPU.
func (d *Daemon) loopOf(lg uint16) *loop {
	if l := d.byPhys[int(d.spus.Load().Physical(lg))]; l != nil {
		return l
	}
	return d.loops[int(lg)%len(d.loops)]
}

// logicalOf is the logical SPU of an IKE SA: its own, or its endpoints'
// for one that has none (restored from an older state).
func (d *Daemon) logicalOf(ike *sa.IKESA) uint16 {
	if ike.Anchored {
		return ike.Logical
	}
	return d.fn.Logical(ike.Local.Addr(), ike.Remote.Addr())
}

// ownerOf is the worker of an IKE SA's anchor.
func (d *Daemon) ownerOf(ike *sa.IKESA) *loop { return d.loopOf(d.logicalOf(ike)) }

// anchorOf returns the logical and physical SPU of an IKE SA.
func (d *Daemon) anchorOf(ike *sa.IKESA) (logical, physical int) {
	lg := d.logicalOf(ike)
	return int(lg), int(d.spus.Load().Physical(lg))
}

// post runs f on a worker's goroutine and waits for it (bounded).
func (d *Daemon) post(l *loop, f func(w *worker.Worker)) error {
	done := make(chan struct{})
	select {
	case l.cmds <- func(w *worker.Worker) { f(w); close(done) }:
	case <-d.ctx.Done():
		return d.ctx.Err()
	case <-time.After(10 * time.Second):
		return unixrpc.Errorf(unixrpc.CodeUnavailable, "worker %d does not take commands", l.idx)
	}
	select {
	case <-done:
		return nil
	case <-d.ctx.Done():
		return d.ctx.Err()
	case <-time.After(30 * time.Second):
		// A worker that stops taking work is a bug: say where it is.
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		d.log.Error("iked: worker stuck", "worker", l.idx, "stacks", string(buf))
		return unixrpc.Errorf(unixrpc.CodeUnavailable, "worker %d did not finish a command", l.idx)
	}
}

// each runs f on every worker, one after the other.
func (d *Daemon) each(f func(l *loop, w *worker.Worker)) error {
	var errs []error
	for _, l := range d.loops {
		if err := d.post(l, func(w *worker.Worker) { f(l, w) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops iked. The IKE SAs and Child SAs stay (persisted, and in
// spud), so that a new iked takes them over.
func (d *Daemon) Close() error {
	d.cancel()
	if d.ctl != nil {
		d.ctl.Close()
		os.Remove(d.cfg.Load().Control)
	}
	if d.vici != nil {
		d.vici.Close()
	}
	for _, g := range d.groups {
		g.Close()
	}
	if d.steer != nil {
		d.steer.Close()
	}
	d.wg.Wait()
	if d.store != nil {
		d.store.close()
	}
	dps := []*spudDP{d.dp}
	for _, l := range d.loops {
		dps = append(dps, l.dp)
	}
	for _, dp := range dps {
		if dp != nil {
			if c := dp.c.Load(); c != nil {
				c.Close()
			}
		}
	}
	return nil
}

// Wait runs until ctx is done.
func (d *Daemon) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-d.ctx.Done():
	}
}

// logTrust says what certificates the configuration loaded (never a key:
// pki.PrivateKey prints its type only).
// logWarnings logs the keys the configuration holds that iked ignores,
// each with its file, line and key: never dropped silently.
func (d *Daemon) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		d.log.Warn("iked: configuration key ignored", "warning", w)
	}
}

func (d *Daemon) logTrust(cfg *config.Config) {
	if cfg.Trust == nil {
		return
	}
	anchors, inter, crls := cfg.Trust.Counts()
	d.log.Info("iked: trust store loaded", "anchors", anchors, "intermediates", inter, "crls", crls)
	for _, name := range cfg.Order {
		conn := cfg.Connections[name]
		for _, cr := range conn.Local.Credentials {
			d.log.Info("iked: certificate", "conn", name, "subject", pki.FormatDN(cr.Leaf.RawSubject), "key", cr.Key.String(),
				"not_after", cr.Leaf.NotAfter.UTC().Format(time.RFC3339), "chain", len(cr.Intermediates))
		}
	}
}

// useConfig puts cfg in force.
func (d *Daemon) useConfig(cfg *config.Config) {
	if cfg.FragmentMemory > 0 {
		d.frags.SetMax(int(cfg.FragmentMemory))
	}
	if a := d.anchoring.Load(); a != nil && a.PerIKESA != (cfg.IKEAnchor == config.IKEAnchorIKESA) {
		na := *a
		na.PerIKESA = !a.PerIKESA
		d.anchoring.Store(&na)
	}
	d.cfg.Store(cfg)
}

// settings derives the managers' settings from a configuration.
func (d *Daemon) settings(cfg *config.Config) manager.Settings {
	s := manager.DefaultSettings()
	s.Fragments = d.frags
	if cfg.MaxPacket > 0 {
		s.MaxPacket = cfg.MaxPacket
	}
	s.RetransmitTimeout = cfg.RetransmitTimeout.D()
	s.RetransmitBase = cfg.RetransmitBase
	s.RetransmitTries = cfg.RetransmitTries
	s.NATTPort = uint16(cfg.PortNATT)
	if cfg.KeepAlive != nil {
		s.KeepaliveInterval = cfg.KeepAlive.D()
	}
	if cfg.DeleteRekeyedDelay != nil {
		s.DrainDelay = cfg.DeleteRekeyedDelay.D()
	}
	return s
}
