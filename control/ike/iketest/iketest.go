// Package iketest has in-memory fakes to run IKE workers with no privilege
// and no real time: a clock that moves only when told, deterministic
// randomness, a data plane that keeps SAs and policies in maps, and a
// network that can drop, delay, duplicate and reorder datagrams between
// workers.
//
// A Sim ties them together: one worker per gateway address, each with its
// own data plane, counters and log buffer, and a loop that delivers
// datagrams and fires timers in time order.
package iketest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/ts"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
)

// Epoch is where every fake clock starts.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Clock is a fake clock: it moves only when the test sets or advances it,
// so that timers fire at the same point of every run.
type Clock struct{ t time.Time }

// NewClock returns a clock at Epoch.
func NewClock() *Clock { return &Clock{t: Epoch} }

// Now returns the fake time: Epoch until the test moves it.
func (c *Clock) Now() time.Time { return c.t }

// Set moves the clock (never backwards).
func (c *Clock) Set(t time.Time) {
	if t.After(c.t) {
		c.t = t
	}
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

// Rand is deterministic randomness (ChaCha8 from a one-byte seed): SPIs,
// nonces and key shares repeat from run to run, so a failure replays.
type Rand struct{ r *rand.ChaCha8 }

// NewRand returns randomness seeded with seed.
func NewRand(seed byte) *Rand {
	var s [32]byte
	s[0] = seed
	return &Rand{r: rand.NewChaCha8(s)}
}

// Read fills b from the seeded stream; it never fails.
func (r *Rand) Read(b []byte) (int, error) { return r.r.Read(b) }

// DataPlane is a fake data plane: SAs and policies in maps.
type DataPlane struct {
	mu       sync.Mutex
	nextSPI  uint32
	nextPol  uint32
	SAs      map[api.SAID]api.SA
	Policies map[uint32]api.Policy
	// FailAddSA, when set, makes AddSA fail.
	FailAddSA error
	// PanicAddSA, when set, makes AddSA panic with it: a stand-in for a
	// bug in the code that runs an exchange, for the workers' recover.
	PanicAddSA any
	// Ops records every call, for tests that check the order: AddChild
	// and DelChild as the separate calls of their parts, in the order
	// spud applies them.
	Ops []string
	// Calls counts the calls made, as round trips to spud: a Child SA
	// through AddChild is one, through the separate calls up to three.
	Calls int
	// NoChildOps makes AddChild and DelChild answer task.ErrNoChildOps,
	// as iked's data plane does in front of a spud older than child.add:
	// Install and Uninstall then make the separate calls.
	NoChildOps bool
	// added orders the SAs as spud does: the newest outbound SA of a reqid
	// is the one its policies use.
	added map[api.SAID]int
	seq   int
	// inPkts are inbound packet counts (InboundPackets), set by tests or
	// by a Flow.
	inPkts map[uint32]uint64
	// Samples counts InboundPackets calls; Prefetches the PrefetchInbound
	// calls and Prefetched the SPIs they named.
	Samples, Prefetches, Prefetched int
	// CountOnly, set before the first SA, keeps no SAs and records no Ops:
	// AddSA and DelSA only count (Counts), so that a benchmark of the
	// heap of a worker's tunnels does not weigh the fake's copies of the
	// SAs, which spud, not iked, holds. Find and ActiveOut then find
	// nothing, and deleting an unknown SA is not noticed.
	CountOnly bool
	counted   int
}

// NewDataPlane returns an empty data plane whose SPIs start at base.
func NewDataPlane(base uint32) *DataPlane {
	return &DataPlane{nextSPI: base, SAs: map[api.SAID]api.SA{}, Policies: map[uint32]api.Policy{},
		added: map[api.SAID]int{}, inPkts: map[uint32]uint64{}}
}

func saKey(s *api.SA) api.SAID {
	id := api.SAID{SPI: s.SPI, Dir: s.Dir}
	if s.Dir == api.Out {
		id.Remote = s.Remote
	}
	return id
}

// AllocSPI returns SPIs in sequence from NewDataPlane's base, whatever the
// addresses, and records "alloc SPI" in Ops.
func (d *DataPlane) AllocSPI(local, remote netip.Addr, logical *int) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	d.nextSPI++
	if !d.CountOnly {
		d.Ops = append(d.Ops, fmt.Sprintf("alloc %08x", d.nextSPI))
	}
	return d.nextSPI, nil
}

// AddSA validates and installs an SA as spud would, failing with FailAddSA
// when set or if the SA exists, and records "add DIR SPI" in Ops.
func (d *DataPlane) AddSA(s *api.SA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if d.FailAddSA != nil {
		return d.FailAddSA
	}
	if d.PanicAddSA != nil {
		panic(d.PanicAddSA)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	if d.CountOnly {
		d.counted++
		return nil
	}
	k := saKey(s)
	if _, ok := d.SAs[k]; ok {
		return fmt.Errorf("sa spi 0x%08x %s: exists", s.SPI, s.Dir)
	}
	d.SAs[k] = *s
	d.seq++
	d.added[k] = d.seq
	d.Ops = append(d.Ops, fmt.Sprintf("add %s %08x", s.Dir, s.SPI))
	return nil
}

// ActiveOut returns the outbound SA the policies of reqid send through:
// the newest outbound SA with that reqid.
func (d *DataPlane) ActiveOut(reqid uint32) (api.SA, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var best api.SA
	bestSeq := -1
	for k, s := range d.SAs {
		if k.Dir == api.Out && s.ReqID == reqid && d.added[k] > bestSeq {
			best, bestSeq = s, d.added[k]
		}
	}
	return best, bestSeq >= 0
}

// CountIn adds n received packets to an inbound SA's count.
func (d *DataPlane) CountIn(spi uint32, n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inPkts[spi] += n
}

// InboundPackets sums the packets the inbound SAs received (the liveness
// hint DPD uses).
func (d *DataPlane) InboundPackets(spis []uint32) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Samples++
	var n uint64
	for _, spi := range spis {
		n += d.inPkts[spi]
	}
	return n, nil
}

// PrefetchInbound counts the batch (manager.UsagePrefetcher); the counts
// are read by InboundPackets as always.
func (d *DataPlane) PrefetchInbound(spis []uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Prefetches++
	d.Prefetched += len(spis)
}

// DelSA removes an SA (inbound SAs are found by SPI alone, as in spud) and
// records "del DIR SPI" in Ops; an SA it does not hold is an error.
func (d *DataPlane) DelSA(id api.SAID) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if id.Dir == api.In {
		id.Remote = netip.Addr{}
	}
	if d.CountOnly {
		d.counted--
		return nil
	}
	if _, ok := d.SAs[id]; !ok {
		return fmt.Errorf("sa spi 0x%08x %s: not found", id.SPI, id.Dir)
	}
	delete(d.SAs, id)
	delete(d.added, id)
	d.Ops = append(d.Ops, fmt.Sprintf("del %s %08x", id.Dir, id.SPI))
	return nil
}

// UpdateSA changes an SA's peer or encapsulation.
func (d *DataPlane) UpdateSA(u *api.SAUpdate) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if d.CountOnly {
		return nil
	}
	id := u.SAID
	if id.Dir == api.In {
		id.Remote = netip.Addr{}
	}
	s, ok := d.SAs[id]
	if !ok {
		return fmt.Errorf("sa spi 0x%08x %s: not found", id.SPI, id.Dir)
	}
	delete(d.SAs, id)
	seq := d.added[id]
	delete(d.added, id)
	if u.Remote.IsValid() {
		s.Remote = u.Remote
	}
	if u.Encap != nil {
		s.Encap = u.Encap
	}
	d.SAs[saKey(&s)] = s
	d.added[saKey(&s)] = seq
	d.Ops = append(d.Ops, fmt.Sprintf("update %s %08x", id.Dir, id.SPI))
	return nil
}

// AddPolicy validates and installs a policy under the next policy ID, which
// it returns, and records "policy ID reqid R" in Ops.
func (d *DataPlane) AddPolicy(p *api.Policy) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if err := p.Validate(); err != nil {
		return 0, err
	}
	d.nextPol++
	q := *p
	q.ID = d.nextPol
	d.Policies[q.ID] = q
	if !d.CountOnly {
		d.Ops = append(d.Ops, fmt.Sprintf("policy %d reqid %d", q.ID, q.ReqID))
	}
	return q.ID, nil
}

// DelPolicy removes a policy and records "delpolicy ID" in Ops; an
// unknown ID is an error.
func (d *DataPlane) DelPolicy(id uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if _, ok := d.Policies[id]; !ok {
		return fmt.Errorf("policy %d: not found", id)
	}
	delete(d.Policies, id)
	if !d.CountOnly {
		d.Ops = append(d.Ops, fmt.Sprintf("delpolicy %d", id))
	}
	return nil
}

var _ task.ChildDataPlane = (*DataPlane)(nil)

// AddChild installs a Child SA whole or not at all, as spud's child.add:
// the request is validated and checked for SAs and a policy already there
// before anything goes in, so that a refusal of any part (FailAddSA
// included) leaves nothing. The parts are recorded in Ops as AddSA and
// AddPolicy record them.
func (d *DataPlane) AddChild(req *api.ChildAdd) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if d.NoChildOps {
		return 0, task.ErrNoChildOps
	}
	if d.FailAddSA != nil {
		return 0, d.FailAddSA
	}
	if d.PanicAddSA != nil {
		panic(d.PanicAddSA)
	}
	// The fake has no number of logical SPUs: any anchor goes.
	if err := req.Validate(1 << 16); err != nil {
		return 0, err
	}
	if d.CountOnly {
		d.counted++
		if req.Out != nil {
			d.counted++
		}
		d.nextPol++
		return d.nextPol, nil
	}
	if _, ok := d.SAs[saKey(&req.In)]; ok {
		return 0, fmt.Errorf("inbound sa 0x%08x: exists", req.In.SPI)
	}
	if req.Out != nil {
		if _, ok := d.SAs[saKey(req.Out)]; ok {
			return 0, fmt.Errorf("outbound sa 0x%08x to %s: exists", req.Out.SPI, req.Out.Remote)
		}
	}
	if req.Policy != nil && req.Policy.ID != 0 {
		if _, ok := d.Policies[req.Policy.ID]; ok {
			return 0, fmt.Errorf("policy %d: exists", req.Policy.ID)
		}
	}
	for _, s := range []*api.SA{&req.In, req.Out} {
		if s == nil {
			continue
		}
		k := saKey(s)
		d.SAs[k] = *s
		d.seq++
		d.added[k] = d.seq
		d.Ops = append(d.Ops, fmt.Sprintf("add %s %08x", s.Dir, s.SPI))
	}
	if req.Policy == nil {
		return 0, nil
	}
	q := *req.Policy
	if q.ID == 0 {
		d.nextPol++
		q.ID = d.nextPol
	}
	d.Policies[q.ID] = q
	d.Ops = append(d.Ops, fmt.Sprintf("policy %d reqid %d", q.ID, q.ReqID))
	return q.ID, nil
}

// DelChild removes the parts of a Child SA that req names and that are
// there, as spud's child.del: policies, outbound, inbound SA, recorded in
// Ops as DelPolicy and DelSA record them; those that are not there are
// named in the error.
func (d *DataPlane) DelChild(req *api.ChildDel) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls++
	if d.NoChildOps {
		return task.ErrNoChildOps
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if d.CountOnly {
		if req.Out != nil {
			d.counted--
		}
		if req.In != nil {
			d.counted--
		}
		return nil
	}
	var missing []string
	for _, id := range req.Policies {
		if _, ok := d.Policies[id]; !ok {
			missing = append(missing, fmt.Sprintf("policy %d", id))
			continue
		}
		delete(d.Policies, id)
		d.Ops = append(d.Ops, fmt.Sprintf("delpolicy %d", id))
	}
	for _, id := range []*api.SAID{req.Out, req.In} {
		if id == nil {
			continue
		}
		k := *id
		if k.Dir == api.In {
			k.Remote = netip.Addr{}
		}
		if _, ok := d.SAs[k]; !ok {
			missing = append(missing, fmt.Sprintf("sa spi 0x%08x %s", id.SPI, id.Dir))
			continue
		}
		delete(d.SAs, k)
		delete(d.added, k)
		d.Ops = append(d.Ops, fmt.Sprintf("del %s %08x", id.Dir, id.SPI))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: not found", strings.Join(missing, ", "))
	}
	return nil
}

// Counts returns the number of SAs and policies.
func (d *DataPlane) Counts() (sas, policies int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.SAs) + d.counted, len(d.Policies)
}

// Find returns the SA with an SPI and direction.
func (d *DataPlane) Find(spi uint32, dir api.Dir) (api.SA, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, s := range d.SAs {
		if k.SPI == spi && k.Dir == dir {
			return s, true
		}
	}
	return api.SA{}, false
}

// syncBuffer is a log sink safe for the handler.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	discard bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discard {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Node is one simulated gateway: a worker and everything it sees.
type Node struct {
	Name     string
	Addr     netip.Addr
	Worker   *worker.Worker
	DP       *DataPlane
	Counters *stats.Counters
	Cfg      *config.Config
	Set      manager.Settings
	Persist  map[uint64][]byte // JSON of persisted IKE SAs by our SPI
	// NoPersist keeps nothing in Persist (Restart then restores nothing):
	// for benchmarks of the worker's own heap, which the state store's
	// copies would double.
	NoPersist bool
	Traps     map[string]task.Trap
	// Deterministic makes key exchanges deterministic (from the node's
	// Rand) where the group allows it.
	Deterministic bool
	// Workers are the node's IKE workers when AddWorker made more than
	// Worker (its first): each owns the logical SPUs l with l % len(Workers)
	// its index, and datagrams reach the one their anchor names, as
	// iked's SO_REUSEPORT selector sends them. Commands between them
	// (Env.Others, worker.Poster) run at the next step of the simulation.
	Workers []*worker.Worker
	// Owners moves logical SPUs to other workers than their own (a change
	// of spud's SPU map): logical SPU -> index in Workers.
	Owners map[uint16]int
	// Anchors, if set before the node's first IKE SA, anchors its IKE
	// SAs as iked does (their SPIs carry their logical SPU).
	Anchors *worker.Anchoring
	// SharedPeers, if set before the node's worker is made (Restart makes it
	// again), is the IKE SAs by peer address of every worker of the node,
	// as iked's (workers made with Env share it).
	SharedPeers *worker.PeerCounts
	// InstallDelay, when set, makes the node's data plane take child.add
	// as iked's does, without the worker waiting (task.AsyncChildDataPlane),
	// and the calls whose outcome nothing waits for (task.LaterDataPlane):
	// each is applied (and answered) InstallDelay of fake time after it
	// was sent, as the simulation runs, a later call after those sent
	// before it and before any waited-for call made after it; HoldInstalls
	// holds them back while set.
	InstallDelay time.Duration
	HoldInstalls bool
	// LaterFailures are the errors of the calls the node's worker did not
	// wait for (task.LaterDataPlane, with an InstallDelay).
	LaterFailures []error

	sim    *Sim
	rnd    *Rand
	log    *slog.Logger
	logBuf *syncBuffer
	level  slog.LevelVar
	reqid  uint32
	ids    uint32
	cmds   []workerCmd
	single [1]*worker.Worker // workers' answer for a node of one
}

// Logs returns what the node logged.
func (n *Node) Logs() string { return n.logBuf.String() }

// SetLogLevel makes the node log from level l on (debug until then):
// benchmarks take iked's -log-level, whose lower lines cost nothing but an
// Enabled check.
func (n *Node) SetLogLevel(l slog.Level) { n.level.Set(l) }

// DiscardLogs makes the node's log lines (still formatted, as iked's are)
// go nowhere from now on: Logs keeps only what came before. For
// benchmarks whose heap the buffered lines would weigh.
func (n *Node) DiscardLogs() {
	n.logBuf.mu.Lock()
	defer n.logBuf.mu.Unlock()
	n.logBuf.discard = true
}

// Sim is a simulation of gateways over a fake network.
type Sim struct {
	T     testing.TB
	Clock *Clock
	Nodes []*Node
	// Filter decides the fate of each datagram sent; nil delivers all.
	Filter func(d manager.Datagram, from *Node) Fate
	// Reorder delivers datagrams due at the same time in reverse order.
	Reorder bool
	// NAT, when set, rewrites each datagram in transit (addresses and
	// ports), as a NAT between the nodes would.
	NAT func(d manager.Datagram) manager.Datagram

	queue []inflight
	seq   int
	flows []*Flow
	// installs are the child.adds in flight to nodes with an InstallDelay,
	// in the order sent.
	installs []asyncInstall
	// Sent counts datagrams sent by each node, by exchange.
	Sent []Sent
	// NoSent keeps Sent empty, for benchmarks of many exchanges.
	NoSent bool
}

// Sent is a datagram the network saw.
type Sent struct {
	At       time.Time
	From, To netip.AddrPort
	Exchange message.ExchangeType
	Response bool
	MsgID    uint32
	Len      int
	Dropped  bool
}

// Fate is what the network does with a datagram.
type Fate struct {
	Drop      bool
	Duplicate bool
	Delay     time.Duration
}

type inflight struct {
	at  time.Time
	seq int
	d   manager.Datagram
}

// NewSim returns an empty simulation.
func NewSim(t testing.TB) *Sim {
	s := &Sim{T: t, Clock: NewClock()}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range s.Nodes {
				t.Logf("--- log of %s ---\n%s", n.Name, n.Logs())
			}
		}
	})
	return s
}

// WriteConfig writes a configuration and its secrets to a temporary folder
// and loads them.
func WriteConfig(t testing.TB, yaml, secrets string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "iked.yaml")
	if !strings.Contains(yaml, "secrets:") {
		yaml = "secrets: secrets.yaml\n" + yaml
	}
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, task.ConfigChecker{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// AddNode adds a gateway at addr with a configuration.
func (s *Sim) AddNode(name string, addr netip.Addr, cfg *config.Config) *Node {
	n := &Node{Name: name, Addr: addr, DP: NewDataPlane(uint32(0xc0000000) + uint32(len(s.Nodes))<<24), Counters: &stats.Counters{},
		Cfg: cfg, Set: manager.DefaultSettings(), Persist: map[uint64][]byte{}, Traps: map[string]task.Trap{},
		sim: s, rnd: NewRand(byte(len(s.Nodes) + 1)), logBuf: &syncBuffer{}, Deterministic: true}
	n.Set.RetransmitTimeout = cfg.RetransmitTimeout.D()
	n.Set.RetransmitBase = cfg.RetransmitBase
	n.Set.RetransmitTries = cfg.RetransmitTries
	n.Set.NATTPort = uint16(cfg.PortNATT)
	if cfg.KeepAlive != nil {
		n.Set.KeepaliveInterval = cfg.KeepAlive.D()
	}
	if cfg.DeleteRekeyedDelay != nil {
		n.Set.DrainDelay = cfg.DeleteRekeyedDelay.D()
	}
	if cfg.MaxPacket > 0 {
		n.Set.MaxPacket = cfg.MaxPacket
	}
	// Log lines carry the fake time, as an offset from Epoch.
	clock := s.Clock
	n.level.Set(slog.LevelDebug)
	n.log = slog.New(slog.NewTextHandler(n.logBuf, &slog.HandlerOptions{Level: &n.level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String("t", clock.Now().Sub(Epoch).String())
			}
			return a
		}})).With("node", name)
	n.Worker = worker.New(0, &workerEnv{(*nodeEnv)(n), 0})
	s.Nodes = append(s.Nodes, n)
	return n
}

// AddWorker gives the node another IKE worker (the first is Worker), and
// returns it; the node must anchor its IKE SAs (Anchors) and share its
// peers' counts (SharedPeers), as iked's workers do.
func (n *Node) AddWorker() *worker.Worker {
	if n.Anchors == nil || n.SharedPeers == nil {
		n.sim.T.Fatalf("%s: a second worker needs Anchors and SharedPeers", n.Name)
	}
	if len(n.Workers) == 0 {
		n.Workers = []*worker.Worker{n.Worker}
	}
	w := worker.New(len(n.Workers), &workerEnv{(*nodeEnv)(n), len(n.Workers)})
	n.Workers = append(n.Workers, w)
	return w
}

// WorkerOf is the node's worker that owns a logical SPU.
func (n *Node) WorkerOf(logical uint16) *worker.Worker {
	if len(n.Workers) < 2 {
		return n.Worker
	}
	if i, ok := n.Owners[logical]; ok {
		return n.Workers[i]
	}
	return n.Workers[int(logical)%len(n.Workers)]
}

// workers are the node's workers.
func (n *Node) workers() []*worker.Worker {
	if len(n.Workers) < 2 {
		n.single[0] = n.Worker
		return n.single[:]
	}
	return n.Workers
}

// route is the worker a datagram that reached the node belongs to (d as
// received: Local is the node's address).
func (n *Node) route(d manager.Datagram) *worker.Worker {
	a := n.Anchors
	if len(n.Workers) < 2 || a == nil {
		return n.Worker
	}
	lg, by := a.Fn.IKELogical(a.Codec, d.Local.Addr(), d.Remote.Addr(), d.Data, d.Local.Port() == n.Set.NATTPort)
	if by == anchor.ByFirstContact && (!a.PerIKESA || (*nodeEnv)(n).TrapBetween(d.Local.Addr(), d.Remote.Addr())) {
		lg = a.Fn.Logical(d.Local.Addr(), d.Remote.Addr())
	}
	return n.WorkerOf(lg)
}

// workerCmd is a function for one of a node's workers.
type workerCmd struct {
	to int
	f  func(*worker.Worker)
}

// runCmds runs the commands queued for the node's workers (and those they
// queue meanwhile); it reports whether it ran any.
func (n *Node) runCmds() bool {
	ran := false
	for len(n.cmds) > 0 {
		c := n.cmds[0]
		n.cmds = n.cmds[1:]
		if c.to < len(n.Workers) {
			c.f(n.Workers[c.to])
			ran = true
		}
	}
	n.cmds = nil
	return ran
}

// Node returns the node with an address.
func (s *Sim) Node(a netip.Addr) *Node {
	for _, n := range s.Nodes {
		if n.Addr == a {
			return n
		}
	}
	return nil
}

func (s *Sim) send(from *Node, d manager.Datagram) {
	d.Data = append([]byte(nil), d.Data...)
	rec := Sent{At: s.Clock.Now(), From: d.Local, To: d.Remote, Len: len(d.Data)}
	if b, err := message.StripNonESPMarker(d.Data); err == nil || d.Local.Port() != from.Set.NATTPort {
		if d.Local.Port() != from.Set.NATTPort {
			b = d.Data
		}
		if h, err := message.DecodeHeader(b); err == nil {
			rec.Exchange, rec.Response, rec.MsgID = h.Exchange, h.IsResponse(), h.MessageID
		}
	}
	fate := Fate{}
	if s.Filter != nil {
		fate = s.Filter(d, from)
	}
	rec.Dropped = fate.Drop
	if !s.NoSent {
		s.Sent = append(s.Sent, rec)
	}
	if fate.Drop {
		return
	}
	if s.NAT != nil {
		d = s.NAT(d)
	}
	n := 1
	if fate.Duplicate {
		n = 2
	}
	for range n {
		s.seq++
		s.queue = append(s.queue, inflight{at: s.Clock.Now().Add(fate.Delay), seq: s.seq, d: d})
	}
}

// asyncInstall is a child.add in flight to a node's data plane, or a
// call the worker made later (task.LaterDataPlane: later set).
type asyncInstall struct {
	at    time.Time
	n     *Node
	req   *api.ChildAdd
	done  func(uint32, error)
	later func(*DataPlane) error
}

// slowDataPlane is the data plane of a node with an InstallDelay.
type slowDataPlane struct {
	*DataPlane
	n *Node
}

var _ task.AsyncChildDataPlane = slowDataPlane{}

// AddChildAsync queues req, to be applied (AddChild) and answered when
// the node's InstallDelay has passed and it holds no installs back.
func (d slowDataPlane) AddChildAsync(req *api.ChildAdd, done func(uint32, error)) {
	s := d.n.sim
	s.installs = append(s.installs, asyncInstall{at: s.Clock.Now().Add(d.n.InstallDelay), n: d.n, req: req, done: done})
}

var _ task.LaterDataPlane = slowDataPlane{}

// laterCall queues f, applied after the node's installs and later calls
// sent before it; a failure goes to the node's LaterFailures.
func (d slowDataPlane) laterCall(f func(*DataPlane) error) {
	s := d.n.sim
	s.installs = append(s.installs, asyncInstall{at: s.Clock.Now().Add(d.n.InstallDelay), n: d.n, later: f})
}

// DelChildLater queues a DelChild.
func (d slowDataPlane) DelChildLater(req *api.ChildDel) {
	d.laterCall(func(dp *DataPlane) error { return dp.DelChild(req) })
}

// AddSALater queues an AddSA.
func (d slowDataPlane) AddSALater(sa *api.SA) {
	d.laterCall(func(dp *DataPlane) error { return dp.AddSA(sa) })
}

// UpdateSALater queues an UpdateSA.
func (d slowDataPlane) UpdateSALater(u *api.SAUpdate) {
	d.laterCall(func(dp *DataPlane) error { return dp.UpdateSA(u) })
}

// flush applies the node's later calls before a call the worker waits
// for, as iked's data plane sends that call after them.
func (d slowDataPlane) flush() {
	s := d.n.sim
	rest := s.installs[:0]
	var due []asyncInstall
	for _, in := range s.installs {
		if in.n == d.n && in.later != nil {
			due = append(due, in)
		} else {
			rest = append(rest, in)
		}
	}
	s.installs = rest
	for _, in := range due {
		d.n.laterDone(in.later(d.DataPlane))
	}
}

// laterDone counts a later call's failure, as iked's data plane does.
func (n *Node) laterDone(err error) {
	if err != nil {
		n.LaterFailures = append(n.LaterFailures, err)
	}
}

// AddSA flushes the later calls first.
func (d slowDataPlane) AddSA(sa *api.SA) error { d.flush(); return d.DataPlane.AddSA(sa) }

// DelSA flushes the later calls first.
func (d slowDataPlane) DelSA(id api.SAID) error { d.flush(); return d.DataPlane.DelSA(id) }

// AddPolicy flushes the later calls first.
func (d slowDataPlane) AddPolicy(p *api.Policy) (uint32, error) {
	d.flush()
	return d.DataPlane.AddPolicy(p)
}

// DelPolicy flushes the later calls first.
func (d slowDataPlane) DelPolicy(id uint32) error { d.flush(); return d.DataPlane.DelPolicy(id) }

// AddChild flushes the later calls first.
func (d slowDataPlane) AddChild(req *api.ChildAdd) (uint32, error) {
	d.flush()
	return d.DataPlane.AddChild(req)
}

// DelChild flushes the later calls first.
func (d slowDataPlane) DelChild(req *api.ChildDel) error { d.flush(); return d.DataPlane.DelChild(req) }

// InstallsInFlight is the number of child.adds sent to the node's data
// plane and not answered yet.
func (n *Node) InstallsInFlight() int {
	k := 0
	for _, in := range n.sim.installs {
		if in.n == n && in.later == nil {
			k++
		}
	}
	return k
}

// LaterInFlight is the number of calls the node's worker made without
// waiting (task.LaterDataPlane) not applied yet.
func (n *Node) LaterInFlight() int {
	k := 0
	for _, in := range n.sim.installs {
		if in.n == n && in.later != nil {
			k++
		}
	}
	return k
}

// answerInstalls applies and answers the installs due at now, in the
// order they were sent; it reports whether it answered any.
func (s *Sim) answerInstalls(now time.Time) bool {
	var due []asyncInstall
	rest := s.installs[:0]
	for _, in := range s.installs {
		if !in.n.HoldInstalls && !in.at.After(now) {
			due = append(due, in)
		} else {
			rest = append(rest, in)
		}
	}
	s.installs = rest
	for _, in := range due {
		if in.later != nil {
			in.n.laterDone(in.later(in.n.DP))
			continue
		}
		id, err := in.n.DP.AddChild(in.req)
		in.done(id, err)
	}
	return len(due) > 0
}

// Step delivers what is due and fires due timers; it reports false when
// nothing is left to do before until.
func (s *Sim) Step(until time.Time) bool {
	now := s.Clock.Now()
	for _, f := range s.flows {
		f.step(now)
	}
	answered := s.answerInstalls(now)
	var due []inflight
	rest := s.queue[:0]
	for _, f := range s.queue {
		if !f.at.After(now) {
			due = append(due, f)
		} else {
			rest = append(rest, f)
		}
	}
	s.queue = rest
	sort.Slice(due, func(i, j int) bool { return due[i].seq < due[j].seq })
	if s.Reorder {
		slices.Reverse(due)
	}
	for _, f := range due {
		to := s.Node(f.d.Remote.Addr())
		if to == nil {
			continue
		}
		d := manager.Datagram{Local: f.d.Remote, Remote: f.d.Local, Data: append([]byte(nil), f.d.Data...)}
		to.route(d).Receive(d)
	}
	fired := false
	for _, n := range s.Nodes {
		if n.runCmds() {
			fired = true
		}
		for _, w := range n.workers() {
			if d := w.Deadline(); !d.IsZero() && !d.After(now) {
				w.Tick(now)
				fired = true
			}
		}
		if n.runCmds() {
			fired = true
		}
	}
	if len(due) > 0 || fired || answered {
		return true
	}
	next := time.Time{}
	for _, f := range s.queue {
		if next.IsZero() || f.at.Before(next) {
			next = f.at
		}
	}
	for _, n := range s.Nodes {
		for _, w := range n.workers() {
			if d := w.Deadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
	}
	for _, f := range s.flows {
		if d := f.nextEvent(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	for _, in := range s.installs {
		if !in.n.HoldInstalls && (next.IsZero() || in.at.Before(next)) {
			next = in.at
		}
	}
	if next.IsZero() || next.After(until) {
		s.Clock.Set(until)
		return false
	}
	s.Clock.Set(next)
	return true
}

// RunFor runs the simulation for d of fake time.
func (s *Sim) RunFor(d time.Duration) {
	until := s.Clock.Now().Add(d)
	for i := 0; s.Step(until); i++ {
		if i > 1_000_000 {
			s.T.Fatal("simulation does not settle")
		}
	}
}

// RunUntil runs until cond holds or d of fake time passed; it reports
// whether cond held.
func (s *Sim) RunUntil(d time.Duration, cond func() bool) bool {
	until := s.Clock.Now().Add(d)
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if !s.Step(until) {
			return cond()
		}
		if i > 1_000_000 {
			s.T.Fatal("simulation does not settle")
		}
	}
}

// nodeEnv is the worker.Env of a node.
type nodeEnv Node

var _ worker.Env = (*nodeEnv)(nil)

func (e *nodeEnv) Now() time.Time  { return e.sim.Clock.Now() }
func (e *nodeEnv) Rand() io.Reader { return e.rnd }
func (e *nodeEnv) DataPlane() task.DataPlane {
	if e.InstallDelay > 0 {
		return slowDataPlane{e.DP, e.Node()}
	}
	return e.DP
}
func (e *nodeEnv) Config() *config.Config { return e.Cfg }
func (e *nodeEnv) Settings() manager.Settings {
	return e.Set
}
func (e *nodeEnv) NewReqID() uint32        { e.reqid++; return e.reqid }
func (e *nodeEnv) NewID() uint32           { e.ids++; return e.ids }
func (e *nodeEnv) Stats() *stats.Counters  { return e.Node().Counters }
func (e *nodeEnv) Log() *slog.Logger       { return e.log }
func (e *nodeEnv) Send(d manager.Datagram) { e.sim.send(e.Node(), d) }
func (e *nodeEnv) Node() *Node             { return (*Node)(e) }
func (e *nodeEnv) LocalAddrFor(netip.Addr) (netip.Addr, error) {
	return e.Addr, nil
}

func (e *nodeEnv) KeyExchange(g suite.GroupID) (*suite.KeyExchange, error) {
	if e.Deterministic {
		var priv []byte
		switch g {
		case suite.GroupCurve25519:
			priv = make([]byte, 32)
		case suite.GroupMODP2048:
			priv = make([]byte, 32)
		}
		if priv != nil {
			io.ReadFull(e.rnd, priv)
			priv[0] |= 0x40
			if k, err := suite.NewKeyExchangeFromPrivate(g, priv); err == nil {
				return k, nil
			}
		}
	}
	return suite.NewKeyExchange(g)
}

func (e *nodeEnv) Trap(conn, child string) (task.Trap, bool) {
	t, ok := e.Traps[conn+"/"+child]
	return t, ok
}

func (e *nodeEnv) Changed(ike *sa.IKESA) {
	if e.NoPersist {
		return
	}
	b, err := json.Marshal(ike)
	if err != nil {
		e.sim.T.Errorf("%s: persist: %v", e.Name, err)
		return
	}
	e.Persist[ike.OurSPI()] = b
	// iked persists the binary state: it must read back what was written,
	// whatever state the tests bring the IKE SA to.
	bin, _ := ike.MarshalBinary()
	var back sa.IKESA
	if err := back.UnmarshalBinary(bin); err != nil {
		e.sim.T.Errorf("%s: binary state: %v", e.Name, err)
	} else if again, _ := back.MarshalBinary(); !bytes.Equal(bin, again) {
		e.sim.T.Errorf("%s: binary state of IKE SA %s not read back as written", e.Name, ike.SPIs())
	}
}

func (e *nodeEnv) Gone(ike *sa.IKESA) { delete(e.Persist, ike.OurSPI()) }

// InstallTrap installs a trap policy in the fake data plane.
func (e *nodeEnv) InstallTrap(conn, child string) { e.Node().InstallTrap(conn, child) }
func (e *nodeEnv) Anchoring() *worker.Anchoring   { return e.Node().Anchors }
func (e *nodeEnv) HalfOpen() *worker.PeerCounts   { return nil }
func (e *nodeEnv) Peers() *worker.PeerCounts      { return e.SharedPeers }
func (e *nodeEnv) Others(func(*worker.Worker))    {}

var _ worker.TrapFinder = (*nodeEnv)(nil)

// TrapBetween reports whether one of the node's traps lies between local
// and remote (worker.TrapFinder).
func (e *nodeEnv) TrapBetween(local, remote netip.Addr) bool {
	for k := range e.Traps {
		conn := e.Cfg.Connections[strings.SplitN(k, "/", 2)[0]]
		if conn == nil {
			continue
		}
		if l, r, err := worker.Endpoints(e, conn); err == nil && l == local && r == remote {
			return true
		}
	}
	return false
}

// workerEnv is the worker.Env of one of a node's workers: the node's,
// with the commands to the other workers.
type workerEnv struct {
	*nodeEnv
	id int
}

var _ worker.Poster = (*workerEnv)(nil)

// Others queues f for every other worker of the node.
func (e *workerEnv) Others(f func(*worker.Worker)) {
	for i := range e.Workers {
		if i != e.id {
			e.cmds = append(e.cmds, workerCmd{i, f})
		}
	}
}

// On queues f for worker id of the node.
func (e *workerEnv) On(id int, f func(*worker.Worker)) { e.cmds = append(e.cmds, workerCmd{id, f}) }

// InstallTrap installs the trap policy of a child.
func (n *Node) InstallTrap(connName, child string) task.Trap {
	if t, ok := n.Traps[connName+"/"+child]; ok {
		return t
	}
	conn := n.Cfg.Connections[connName]
	cc := conn.Children[child]
	local, remote, err := worker.Endpoints((*nodeEnv)(n), conn)
	if err != nil {
		n.sim.T.Fatalf("%s: trap %s/%s: %v", n.Name, connName, child, err)
	}
	n.reqid++
	t := task.Trap{ReqID: n.reqid, LocalTS: ts.FromConfig(cc.LocalSelectors, local), RemoteTS: ts.FromConfig(cc.RemoteSelectors, remote)}
	if n.Anchors != nil {
		// As iked's: the trap is on its endpoints' logical SPU.
		t.Logical = int(n.Anchors.Fn.Logical(local, remote))
	}
	id, err := n.DP.AddPolicy(&api.Policy{ReqID: t.ReqID, Action: api.Protect, Local: local, Remote: remote,
		LocalTS: slices.Clone(t.LocalTS), RemoteTS: slices.Clone(t.RemoteTS), Name: task.TrapName(connName, child)})
	if err != nil {
		n.sim.T.Fatalf("%s: trap policy: %v", n.Name, err)
	}
	t.PolicyID = id
	n.Traps[connName+"/"+child] = t
	return t
}

// Restart replaces the node's worker by a new one that restores the IKE
// SAs the old one persisted, as iked does after a crash; the data plane
// keeps its SAs.
func (n *Node) Restart() error {
	n.Worker = worker.New(0, &workerEnv{(*nodeEnv)(n), 0})
	for _, b := range n.Persist {
		var ike sa.IKESA
		if err := json.Unmarshal(b, &ike); err != nil {
			return err
		}
		if err := ike.RestoreCiphers(); err != nil {
			return err
		}
		if err := n.Worker.Restore(&ike); err != nil {
			return err
		}
	}
	return nil
}

// Env returns the node's worker environment, for a second worker of the
// node (migrations).
func (n *Node) Env() worker.Env { return (*nodeEnv)(n) }

// Flow is a stream of numbered packets between two nodes' data planes:
// each is sent through the sender's active outbound SA (the newest of the
// reqid of its newest protect policy, or of the newest whose name has Child)
// and arrives Delay later, when the receiver must hold an inbound SA with
// that SPI and the same key. It measures what a make-before-break rekey
// promises: no packet lost while SAs change on both sides.
type Flow struct {
	From, To *Node
	// Child names the child whose policy to send through ("" if there is
	// one policy).
	Child    string
	Interval time.Duration
	Delay    time.Duration
	Until    time.Time
	// Path, when set, says whether the network delivers a packet sent
	// through an outbound SA (a NAT that lost the mapping does not).
	Path func(out api.SA) bool

	Sent, Received uint64
	// Lost lists when lost packets were sent and why.
	Lost []LostPacket

	next     time.Time
	inflight []probe
}

// LostPacket is a packet of a Flow that did not arrive.
type LostPacket struct {
	Sent time.Time
	SPI  uint32
	Why  string
}

type probe struct {
	sent, at time.Time
	spi      uint32
	key      []byte
}

// AddFlow starts a flow from one node to another, for d of fake time.
func (s *Sim) AddFlow(from, to *Node, child string, interval, delay, d time.Duration) *Flow {
	f := &Flow{From: from, To: to, Child: child, Interval: interval, Delay: delay, Until: s.Clock.Now().Add(d), next: s.Clock.Now()}
	s.flows = append(s.flows, f)
	return f
}

// reqid is the reqid of the policy the flow's packets take: of those with
// its selectors (its child's), the newest, which spud's steering names.
func (f *Flow) reqid() (uint32, bool) {
	f.From.DP.mu.Lock()
	defer f.From.DP.mu.Unlock()
	var newest api.Policy
	for _, p := range f.From.DP.Policies {
		if (f.Child == "" || strings.Contains(p.Name, "/"+f.Child+"/")) && p.ID > newest.ID {
			newest = p
		}
	}
	return newest.ReqID, newest.ID != 0
}

// nextEvent is when the flow next sends or a packet arrives (zero: done).
func (f *Flow) nextEvent() time.Time {
	var t time.Time
	if f.next.Before(f.Until) {
		t = f.next
	}
	for _, p := range f.inflight {
		if t.IsZero() || p.at.Before(t) {
			t = p.at
		}
	}
	return t
}

func (f *Flow) step(now time.Time) {
	for !f.next.After(now) && f.next.Before(f.Until) {
		f.Sent++
		rid, ok := f.reqid()
		var out api.SA
		if ok {
			out, ok = f.From.DP.ActiveOut(rid)
		}
		switch {
		case !ok:
			f.Lost = append(f.Lost, LostPacket{Sent: f.next, Why: "no outbound sa at the sender"})
		case f.Path != nil && !f.Path(out):
			f.Lost = append(f.Lost, LostPacket{Sent: f.next, SPI: out.SPI, Why: "not delivered by the network"})
		default:
			f.inflight = append(f.inflight, probe{sent: f.next, at: f.next.Add(f.Delay), spi: out.SPI, key: out.EncKey})
		}
		f.next = f.next.Add(f.Interval)
	}
	kept := f.inflight[:0]
	for _, p := range f.inflight {
		if p.at.After(now) {
			kept = append(kept, p)
			continue
		}
		in, ok := f.To.DP.Find(p.spi, api.In)
		switch {
		case !ok:
			f.Lost = append(f.Lost, LostPacket{Sent: p.sent, SPI: p.spi, Why: "no inbound sa at the receiver"})
		case !bytes.Equal(in.EncKey, p.key):
			f.Lost = append(f.Lost, LostPacket{Sent: p.sent, SPI: p.spi, Why: "keys differ"})
		default:
			f.Received++
			f.To.DP.CountIn(p.spi, 1)
		}
	}
	f.inflight = kept
}

// String summarises the flow.
func (f *Flow) String() string {
	s := fmt.Sprintf("%s -> %s: sent %d, received %d, lost %d", f.From.Name, f.To.Name, f.Sent, f.Received, len(f.Lost))
	for i, l := range f.Lost {
		if i == 5 {
			s += " ..."
			break
		}
		s += fmt.Sprintf(" [%v spi %08x: %s]", l.Sent.Sub(Epoch), l.SPI, l.Why)
	}
	return s
}

// Seed replaces the node's randomness (nonces, SPIs, keys), so that tests
// can vary who wins a nonce comparison.
func (n *Node) Seed(seed byte) { n.rnd = NewRand(seed) }
