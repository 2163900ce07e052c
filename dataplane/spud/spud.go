// Package spud is the data-plane daemon: it loads the XDP steering program
// on the data-plane interfaces, opens an AF_XDP socket per (interface, rx
// queue), runs the SPUs (dataplane/spu) and serves the SA API
// (dataplane/api) on a root-only unix socket.
//
// Nothing is configured by hand but the interfaces and the cores: next hops
// and MAC addresses come from the kernel's tables (dataplane/fib), SAs and
// policies from the control plane (iked, or spuctl for manual keys).
package spud

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/bpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/nic"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
	"github.com/spugate/spugate/internal/unixrpc"
	"golang.org/x/sys/unix"
)

// Version names this build in the SA API's hello.
const Version = "spud 0.1"

// Config is spud's configuration.
type Config struct {
	// Interfaces carry the data plane; Protected are those of them on the
	// cleartext side, where the SPD applies.
	Interfaces []string
	Protected  []string
	// SPUs is the number of SPUs (default: len(CPUs)); CPUs the cores to pin
	// them to (default: every core the process may run on).
	SPUs int
	CPUs []int
	// Queues per interface to open sockets on (default: all its rx queues).
	Queues int
	Poll   xsk.PollMode
	// MaxSleep bounds an adaptive SPU's sleep (default 100ms).
	MaxSleep time.Duration
	// SpeedPad is the ESP speed padding of outbound AES-GCM SAs (bytes;
	// see esp.Config.SpeedPad).
	SpeedPad int
	// CipherIdle is spu.Config.CipherIdle: how long an SA carries no
	// packet before its SPU drops its cipher state (0: the default,
	// negative: never).
	CipherIdle time.Duration
	XDPMode    steer.Mode
	XSKMode    xsk.BindMode
	// Carrier is the steering carrier to load; CarrierAuto (the zero
	// value) takes the best one the kernel allows.
	Carrier steer.Carrier
	// Socket is the SA API's path.
	Socket string
	// Logical is L (default 256).
	Logical int
	// MaxPolicies sizes the steering program's SPD: the steering entries
	// (protected interface, local prefix, remote prefix) each family
	// holds (default steer.DefaultMaxPolicies). A policy add past it is
	// refused with CodeExhausted and counted.
	MaxPolicies int
	// FailOpen lets cleartext that a policy covers reach the kernel (and
	// its routes, in the clear) when no AF_XDP socket takes it, as after
	// a spud crash that left the XDP program attached. By default such
	// packets are dropped: a dead data plane must not leak.
	FailOpen bool
	// KeyFile keeps the anchor hash key across restarts, so that iked's
	// view of the anchors stays right (created 0600 if absent; empty: a new
	// key each start).
	KeyFile string
	Log     *slog.Logger
	// Level is Log's level, which the SA API's log.level changes at run
	// time; nil: it cannot be changed.
	Level *slog.LevelVar
}

// Daemon is a running spud.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	fn     anchor.Function
	codec  anchor.SPICodec
	prog   *steer.Program
	fib    *fib.Table
	eng    *spu.Engine
	srv    *unixrpc.Server
	socks  []*xsk.Socket
	ifaces []api.Interface
	caps   map[string]nic.Caps
	steer  api.Steering
	// spd knows which policies share a steering entry.
	spd  spdEntries
	spus []int
	// policyTableFull counts policy adds refused for a full SPD.
	policyTableFull atomic.Uint64
	// steerFake, when set, stands in for prog in the SA and Child SA
	// operations (tests of them without a steering program).
	steerFake childSteering

	// capture is the running capture (capture.go).
	capture captureState

	mu       sync.Mutex
	spis     map[uint32]time.Time // allocated inbound SPIs not yet installed, with expiry
	spiSweep time.Time            // when spis is next swept of lapsed reservations
	// inSPIs are the installed inbound SPIs, with their local endpoint:
	// 8 bytes a map slot and nothing for the collector to scan, where a
	// netip.Addr (a pointer inside) made the slot 32, a million times.
	inSPIs map[uint32]localID
	// localRefs are the local endpoints of inbound SAs (the steering
	// program's local addresses); locals holds each by localID-1 with its
	// inbound SAs' count (a free one: refs 0, in freeLocals).
	localRefs  map[netip.Addr]localID
	locals     []localEndpoint
	freeLocals []localID
}

// localID names a local endpoint of inbound SAs in Daemon.locals; 0 is
// none.
type localID uint32

// IsValid reports whether l names an endpoint.
func (l localID) IsValid() bool { return l != 0 }

// localEndpoint is a local endpoint of inbound SAs and their count.
type localEndpoint struct {
	addr netip.Addr
	refs int
}

// newInSPIs are a daemon's empty tables of inbound SPIs and their local
// endpoints.
func newInSPIs() (map[uint32]localID, map[netip.Addr]localID) {
	return map[uint32]localID{}, map[netip.Addr]localID{}
}

// Start brings spud up. Close brings it down and removes what it attached.
func Start(cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Log, spis: map[uint32]time.Time{}}
	d.inSPIs, d.localRefs = newInSPIs()
	if d.log == nil {
		d.log = slog.Default()
	}
	if err := d.start(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start() error {
	cfg := &d.cfg
	if len(cfg.Interfaces) == 0 {
		return errors.New("spud: no interfaces")
	}
	for _, p := range cfg.Protected {
		if !contains(cfg.Interfaces, p) {
			return fmt.Errorf("spud: protected interface %q is not among the interfaces %v", p, cfg.Interfaces)
		}
	}
	// Everything an operator can get wrong is checked before a program is
	// loaded or attached: a second spud started by mistake must not take
	// the interfaces of the one that runs.
	var err error
	if d.caps, err = probeInterfaces(cfg.Interfaces); err != nil {
		return err
	}
	if len(cfg.CPUs) == 0 {
		// The cores this process may run on (taskset, a cpuset), not 0..N-1.
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err == nil {
			for i := 0; i < 1024 && len(cfg.CPUs) < set.Count(); i++ {
				if set.IsSet(i) {
					cfg.CPUs = append(cfg.CPUs, i)
				}
			}
		}
		if len(cfg.CPUs) == 0 {
			for i := 0; i < runtime.NumCPU(); i++ {
				cfg.CPUs = append(cfg.CPUs, i)
			}
		}
	}
	if cfg.SPUs == 0 {
		cfg.SPUs = len(cfg.CPUs)
	}
	if cfg.Logical == 0 {
		cfg.Logical = anchor.DefaultLogicalSPUs
	}
	// Each SPU keeps a P for itself while it runs, and must find one again
	// at once when it wakes from poll(2): give the runtime a P per SPU on
	// top of the cores, so that SPUs never queue behind each other or
	// behind the API and netlink goroutines.
	if want := cfg.SPUs + runtime.NumCPU(); runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocket
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return fmt.Errorf("spud: %w", err)
	}
	srv := unixrpc.NewServer(d.log)
	if err := srv.Listen(cfg.Socket); err != nil {
		return fmt.Errorf("spud: SA API socket: %w", err)
	}
	d.srv = srv // Close removes the socket: only one that is ours
	key, err := loadKey(cfg.KeyFile)
	if err != nil {
		return err
	}
	if d.fn, err = anchor.NewFunction(key, cfg.Logical); err != nil {
		return err
	}
	if d.codec, err = anchor.NewSPICodec(cfg.Logical); err != nil {
		return fmt.Errorf("spud: logical SPUs: %w", err)
	}
	for i := 0; i < cfg.SPUs; i++ {
		d.spus = append(d.spus, i)
	}
	ids := make([]uint16, cfg.SPUs)
	for i := range ids {
		ids[i] = uint16(i)
	}
	m, err := anchor.NewMap(cfg.Logical, ids)
	if err != nil {
		return err
	}
	if d.fib, err = fib.Open(); err != nil {
		return err
	}
	if err := d.loadSteering(); err != nil {
		return err
	}
	if err := d.prog.SetConfig(steer.Config{Anchor: d.fn, FailClosed: !cfg.FailOpen}, m); err != nil {
		return err
	}
	ecfg := spu.Config{SPUs: cfg.SPUs, CPUs: cfg.CPUs, Poll: cfg.Poll, MaxSleep: cfg.MaxSleep, SpeedPad: cfg.SpeedPad, CipherIdle: cfg.CipherIdle, Log: d.log,
		Carrier: d.prog.Carrier(), NewClassifier: func() spu.Classifier { return d.prog.NewClassifier() }}
	if d.eng, err = spu.New(ecfg, d.fn, m, d.fib); err != nil {
		return err
	}
	for _, name := range cfg.Interfaces {
		if err := d.openInterface(name, contains(cfg.Protected, name)); err != nil {
			return err
		}
	}
	d.eng.Start()
	d.handlers()
	go d.srv.Serve()
	go d.pumpEvents()
	sz := d.prog.SPDSizes()
	d.log.Info("spud: ready", "socket", cfg.Socket, "spus", cfg.SPUs, "cpus", cfg.CPUs, "logical", cfg.Logical,
		"poll", cfg.Poll.String(), "carrier", d.steer.Carrier, "interfaces", len(d.ifaces),
		"max_policies", sz.Policies, "spd_sources", sz.Sources)
	return nil
}

// loadSteering loads the steering program of the carrier asked for, or of
// the best one the kernel allows, and says in one line what it got. The
// verifier's log of a refused program goes to the debug log only.
func (d *Daemon) loadSteering() error {
	var err error
	if d.prog, err = steer.Load(steer.Options{Carrier: d.cfg.Carrier, MaxPolicies: d.cfg.MaxPolicies}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			d.log.Debug("spud: the verifier's log", "log", fmt.Sprintf("%+v", ve))
		}
		return err
	}
	feats := d.prog.Features()
	d.steer = api.Steering{Kernel: bpf.KernelRelease(), Features: feats.Map(),
		Carrier: d.prog.Carrier().String(), CarrierReason: d.prog.CarrierReason()}
	attrs := []any{"kernel", d.steer.Kernel, "carrier", d.steer.Carrier, "features", feats.String()}
	if r := d.steer.CarrierReason; r != "" {
		attrs = append(attrs, "because", r)
	}
	d.log.Info("spud: steering program loaded", attrs...)
	return nil
}

func (d *Daemon) openInterface(name string, protected bool) error {
	c := d.caps[name]
	want := d.cfg.XDPMode
	if want == steer.ModeAuto && c.XDPKnown && !c.Has(nic.XDPRedirect) {
		// Native XDP that cannot redirect would drop every steered frame.
		d.log.Warn("spud: interface's driver announces no XDP redirect: generic XDP", "name", name, "driver_xdp", c.XDPString())
		want = steer.ModeGeneric
	}
	mode, err := d.prog.AttachByName(name, want)
	if err != nil {
		return fmt.Errorf("spud: interface %s: attach XDP: %w", name, err)
	}
	if err := d.prog.NativeRefusal(c.Ifindex); err != nil {
		d.log.Warn("spud: native XDP refused: generic XDP instead", "name", name, "because", err)
	}
	queues := c.RxQueues
	if d.cfg.Queues > 0 && d.cfg.Queues < queues {
		d.log.Warn("spud: fewer queues served than the interface has: steered frames of the others go to the kernel (pass_no_xsk) or are dropped (cleartext, drop_no_xsk); set the NIC's queues with ethtool -L",
			"name", name, "queues", c.RxQueues, "served", d.cfg.Queues)
		queues = d.cfg.Queues
	}
	if queues > steer.MaxQueues {
		d.log.Warn("spud: more rx queues than the steering program serves: the rest go to the kernel; set the NIC's queues with ethtool -L",
			"name", name, "queues", queues, "served", steer.MaxQueues)
		queues = steer.MaxQueues
	}
	ai := api.Interface{Name: name, Ifindex: c.Ifindex, Protected: protected, Queues: queues, XDPMode: mode.String(),
		Carrier: d.steer.Carrier, ThreadedNAPI: c.Threaded, DriverXDP: c.XDPString()}
	for q := 0; q < queues; q++ {
		s, err := xsk.Open(name, q, xsk.Config{Mode: d.cfg.XSKMode})
		if err != nil {
			return fmt.Errorf("spud: interface %s queue %d: %w", name, q, err)
		}
		d.socks = append(d.socks, s)
		info := s.Info()
		ai.XSKMode = "copy"
		if info.ZeroCopy {
			ai.XSKMode = "zerocopy"
		}
		ai.NeedWakeup, ai.TxBudget = info.NeedWakeup, info.TxBudget
		if room := info.FrameSize - info.RxOffset; q == 0 && c.MTU+18 > room {
			d.log.Warn("spud: the MTU does not fit an AF_XDP frame: the kernel drops longer frames (counted in the socket's rx_dropped); lower the MTU",
				"name", name, "mtu", c.MTU, "frame_room", room)
		}
		if err := d.prog.RegisterXSK(c.Ifindex, q, s.FD()); err != nil {
			return fmt.Errorf("spud: interface %s queue %d: %w", name, q, err)
		}
		spuID := q % d.cfg.SPUs
		if err := d.eng.AddPort(spuID, spu.Port{Port: s, Ifindex: c.Ifindex, Queue: q, Ifname: name}); err != nil {
			return err
		}
	}
	d.ifaces = append(d.ifaces, ai)
	d.log.Info("spud: interface up", "name", name, "ifindex", c.Ifindex, "queues", queues, "xdp", mode.String(),
		"xsk", ai.XSKMode, "need_wakeup", ai.NeedWakeup, "tx_budget", ai.TxBudget, "carrier", ai.Carrier,
		"threaded_napi", ai.ThreadedNAPI, "driver_xdp", ai.DriverXDP, "protected", protected)
	return nil
}

func loadKey(path string) (anchor.HashKey, error) {
	var k anchor.HashKey
	if path == "" {
		return anchor.NewHashKey(rand.Reader)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != len(k) {
			return k, fmt.Errorf("spud: anchor key file %s: %d bytes, want %d (remove it for a new key: iked must then restart, as every tunnel's anchor changes)", path, len(b), len(k))
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm()&0o077 != 0 {
			return k, fmt.Errorf("spud: anchor key file %s has mode %04o; chmod 600 it", path, fi.Mode().Perm())
		}
		copy(k[:], b)
		return k, nil
	}
	if !os.IsNotExist(err) {
		return k, fmt.Errorf("spud: anchor key: %w", err)
	}
	if k, err = anchor.NewHashKey(rand.Reader); err != nil {
		return k, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return k, fmt.Errorf("spud: anchor key: %w", err)
	}
	if err := writeFileAtomic(path, k[:], 0o600); err != nil {
		return k, fmt.Errorf("spud: anchor key: %w", err)
	}
	return k, nil
}

// writeFileAtomic writes b to path through a temporary file that is synced
// and renamed, and syncs the folder: a crash leaves the whole file or
// none, never a truncated key that stops the next start.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Close stops the SPUs, closes the sockets, detaches the XDP program and
// removes the API socket.
func (d *Daemon) Close() error {
	var errs []error
	if d.srv != nil {
		d.srv.Close()
		os.Remove(d.cfg.Socket)
	}
	if d.eng != nil {
		d.eng.Stop()
	}
	for _, s := range d.socks {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.prog != nil {
		if err := d.prog.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.fib != nil {
		d.fib.Close()
	}
	return errors.Join(errs...)
}

// Wait runs until ctx is done.
func (d *Daemon) Wait(ctx context.Context) { <-ctx.Done() }

// Engine exposes the SPU engine (tests).
func (d *Daemon) Engine() *spu.Engine { return d.eng }

func (d *Daemon) pumpEvents() {
	for ev := range d.eng.Events {
		switch ev.Kind {
		case api.EventAcquire:
			d.srv.Publish(ev.Kind, ev.Acquire)
		case api.EventSPUFailed:
			d.srv.Publish(ev.Kind, api.SPUEvent{ID: ev.SPU, Reason: ev.Reason})
			d.mapChanged("failure", ev.SPU)
		default:
			d.srv.Publish(ev.Kind, ev.SA)
			d.log.Info("spud: sa event", "event", ev.Kind, "spi", fmt.Sprintf("0x%08x", ev.SA.SPI), "dir", ev.SA.Dir, "name", ev.SA.Name)
		}
	}
}

func decode[T any](body json.RawMessage) (*T, error) {
	var v T
	if err := unixrpc.Decode(body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
