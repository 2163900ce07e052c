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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/xsk"
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
	XDPMode  steer.Mode
	XSKMode  xsk.BindMode
	// Socket is the SA API's path.
	Socket string
	// Logical is L (default 256).
	Logical int
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
	srv    *api.Server
	socks  []*xsk.Socket
	ifaces []api.Interface
	spus   []int

	mu        sync.Mutex
	spis      map[uint32]time.Time // allocated inbound SPIs not yet installed, with expiry
	inSPIs    map[uint32]bool      // installed inbound SPIs
	localRefs map[netip.Addr]int   // inbound SAs per local endpoint (steering's local addresses)
}

// Start brings spud up. Close brings it down and removes what it attached.
func Start(cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Log, spis: map[uint32]time.Time{}, inSPIs: map[uint32]bool{}, localRefs: map[netip.Addr]int{}}
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
	if len(cfg.CPUs) == 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			cfg.CPUs = append(cfg.CPUs, i)
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
	if d.prog, err = steer.Load(); err != nil {
		return err
	}
	if err := d.prog.SetConfig(steer.Config{Anchor: d.fn, FailClosed: !cfg.FailOpen}, m); err != nil {
		return err
	}
	d.eng, err = spu.New(spu.Config{SPUs: cfg.SPUs, CPUs: cfg.CPUs, Poll: cfg.Poll, MaxSleep: cfg.MaxSleep, SpeedPad: cfg.SpeedPad, Log: d.log}, d.fn, m, d.fib)
	if err != nil {
		return err
	}
	for _, name := range cfg.Interfaces {
		if err := d.openInterface(name, contains(cfg.Protected, name)); err != nil {
			return err
		}
	}
	d.eng.Start()
	d.srv = api.NewServer(d.log)
	d.handlers()
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return fmt.Errorf("spud: %w", err)
	}
	if err := d.srv.Listen(cfg.Socket); err != nil {
		return err
	}
	go d.srv.Serve()
	go d.pumpEvents()
	d.log.Info("spud: ready", "socket", cfg.Socket, "spus", cfg.SPUs, "cpus", cfg.CPUs, "logical", cfg.Logical,
		"poll", cfg.Poll.String(), "interfaces", d.ifaces)
	return nil
}

func (d *Daemon) openInterface(name string, protected bool) error {
	mode, err := d.prog.AttachByName(name, d.cfg.XDPMode)
	if err != nil {
		return fmt.Errorf("spud: interface %s: attach XDP: %w", name, err)
	}
	ifindex, queues, err := ifInfo(name)
	if err != nil {
		return err
	}
	if d.cfg.Queues > 0 && d.cfg.Queues < queues {
		queues = d.cfg.Queues
	}
	ai := api.Interface{Name: name, Ifindex: ifindex, Protected: protected, Queues: queues, XDPMode: mode.String()}
	for q := 0; q < queues; q++ {
		s, err := xsk.Open(name, q, xsk.Config{Mode: d.cfg.XSKMode})
		if err != nil {
			return fmt.Errorf("spud: interface %s queue %d: %w", name, q, err)
		}
		d.socks = append(d.socks, s)
		if s.Info().ZeroCopy {
			ai.XSKMode = "zerocopy"
		} else {
			ai.XSKMode = "copy"
		}
		if err := d.prog.RegisterXSK(ifindex, q, s.FD()); err != nil {
			return fmt.Errorf("spud: interface %s queue %d: %w", name, q, err)
		}
		spuID := q % d.cfg.SPUs
		if err := d.eng.AddPort(spuID, spu.Port{Port: s, Ifindex: ifindex, Queue: q, Ifname: name}); err != nil {
			return err
		}
	}
	d.ifaces = append(d.ifaces, ai)
	d.log.Info("spud: interface up", "name", name, "ifindex", ifindex, "queues", queues, "xdp", mode.String(),
		"xsk", ai.XSKMode, "protected", protected)
	return nil
}

// ifInfo returns an interface's index and number of rx queues (from sysfs,
// which is the process's network namespace's).
func ifInfo(name string) (int, int, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if err != nil {
		return 0, 0, fmt.Errorf("spud: interface %s: %w", name, err)
	}
	idx, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, 0, fmt.Errorf("spud: interface %s: bad ifindex %q", name, b)
	}
	ents, err := os.ReadDir(filepath.Join("/sys/class/net", name, "queues"))
	if err != nil {
		return 0, 0, fmt.Errorf("spud: interface %s: %w", name, err)
	}
	q := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "rx-") {
			q++
		}
	}
	if q == 0 {
		q = 1
	}
	return idx, q, nil
}

func loadKey(path string) (anchor.HashKey, error) {
	var k anchor.HashKey
	if path == "" {
		return anchor.NewHashKey(rand.Reader)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != len(k) {
			return k, fmt.Errorf("spud: anchor key file %s: %d bytes, want %d", path, len(b), len(k))
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
	if err := os.WriteFile(path, k[:], 0o600); err != nil {
		return k, fmt.Errorf("spud: anchor key: %w", err)
	}
	return k, nil
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
	if err := api.Decode(body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}
