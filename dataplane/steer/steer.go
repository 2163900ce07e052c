package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/spugate/spugate/bpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Limits of the maps (bpf/include/spugate.h and bpf/steer.c).
const (
	MaxInterfaces = 16    // interfaces with AF_XDP sockets (SPUGATE_MAX_IFACES)
	MaxQueues     = 64    // rx queues per interface (SPUGATE_MAX_QUEUES)
	MaxLocalAddrs = 65536 // local tunnel endpoints (addresses of this gateway)
)

// Sizes of the SPD maps, which Load sets from Options.MaxPolicies: the
// LPM tries are BPF_F_NO_PREALLOC (the kernel allows no other kind), so a
// size costs kernel memory only as entries are added, and a concentrator's
// default costs a small gateway nothing.
const (
	// DefaultMaxPolicies is the SPD entries per family of a Program whose
	// Options do not say: a million tunnels' worth.
	DefaultMaxPolicies = 1 << 20
	// MaxMaxPolicies bounds Options.MaxPolicies so that the source tries'
	// size (SrcEntriesPerPolicy times it) fits max_entries (32 bits).
	MaxMaxPolicies = 1 << 28
	// SrcEntriesPerPolicy sizes the source tries: a policy has one source
	// entry in its own destination's group and one in each narrower group
	// its destination covers, so a few wide policies among narrow ones
	// take more than one each.
	SrcEntriesPerPolicy = 4
)

// SPDSizes are the sizes Load gave the SPD maps, per family.
type SPDSizes struct {
	Policies int // SPD entries (SetPolicy's) of each family: the destination tries' size
	Sources  int // the source tries' size
}

// Config is the anchor configuration of the steering program.
type Config struct {
	Anchor anchor.Function
	// FailClosed drops SPD cleartext that finds no AF_XDP socket on its
	// queue (spud is not running), instead of passing it to the kernel,
	// which would route it in the clear. Off by default, as issue 4 asks.
	FailClosed bool
}

const configFailClosed = 0x1 // SPUGATE_CONFIG_FAIL_CLOSED

// Program is the loaded steering program and its maps. Its methods may be
// called from several goroutines.
type Program struct {
	mu            sync.Mutex
	maps          bpf.SteerMaps
	prog          *ebpf.Program
	carrier       Carrier
	why           string // why this carrier, when a better one was passed over
	feats         bpf.Features
	id            ebpf.ProgramID
	l             int                 // configured L, 0 before SetConfig
	spuMap        []uint16            // entries last written to spu_map
	attached      map[int]Mode        // ifindex -> mode, attached by this Program
	nativeRefused map[int]error       // ifindex -> why auto got generic
	slots         map[int]uint32      // ifindex -> XSKMAP slot
	xsks          map[int]map[int]int // ifindex -> queue -> fd, registered
	spd           spdTable
	netns         netns.NsHandle // the namespace of the interfaces, once bound
	fn            atomic.Pointer[anchor.Function]
	local         atomic.Pointer[map[[16]byte]struct{}] // local_addrs, for Classify
	spdGen        atomic.Uint64                         // bumped on every SPD change, for Classifiers' caches
	sizes         SPDSizes
}

// Options shape Load.
type Options struct {
	// Carrier is the steering program to load; CarrierAuto (the zero
	// value) takes the best one the kernel allows.
	Carrier Carrier
	// MaxPolicies is the SPD entries (policies as SetPolicy takes them:
	// one interface, one local and one remote prefix) each family holds:
	// SetPolicy refuses more with a *TableFullError. Zero means
	// DefaultMaxPolicies; at most MaxMaxPolicies.
	MaxPolicies int
}

// carrierNeeds is the kernel feature without which a carrier's program
// cannot load.
func carrierNeeds(c Carrier) (bpf.Feature, string) {
	switch c {
	case CarrierMeta:
		return bpf.FeatureXDPAdjustMeta, "XDP metadata (bpf_xdp_adjust_meta)"
	case CarrierShim:
		return bpf.FeatureXDPAdjustHead, "frame head room (bpf_xdp_adjust_head)"
	}
	return bpf.NumFeatures, ""
}

// Requirements are the kernel features the steering program needs whatever
// its carrier.
var Requirements = []bpf.Feature{bpf.FeatureXDP, bpf.FeatureRedirectMap, bpf.FeatureXSKMap, bpf.FeatureLPMTrie, bpf.FeaturePerCPUArray}

// probeKernel asks the kernel about every feature the steering programs
// use (bpf.Probe).
func probeKernel() bpf.Features {
	return bpf.Probe(append(slices.Clone(Requirements), bpf.FeatureXDPAdjustMeta, bpf.FeatureXDPAdjustHead)...)
}

// Load loads a steering program and creates its maps. It needs CAP_BPF and
// CAP_NET_ADMIN (root); nothing is attached yet.
//
// With CarrierAuto it probes the kernel and loads the program of the best
// carrier the kernel allows, falling back (meta, then shim, then none)
// where a probe says no or the verifier refuses a program; Carrier and
// CarrierReason say what it got and why. A carrier asked for by name is
// loaded or refused, never replaced. Errors are one line (the verifier's
// last words); the verifier's whole log is in the *ebpf.VerifierError the
// error wraps, for a debug log (%+v).
//
// The SPD maps are sized from o.MaxPolicies (SPDSizes); the kernel's
// memory for their entries is taken as policies are set, not here.
func Load(o Options) (*Program, error) {
	n := o.MaxPolicies
	if n == 0 {
		n = DefaultMaxPolicies
	}
	if n < 1 || n > MaxMaxPolicies {
		return nil, fmt.Errorf("steer: %d policies per family out of range 1..%d", o.MaxPolicies, MaxMaxPolicies)
	}
	sizes := SPDSizes{Policies: n, Sources: n * SrcEntriesPerPolicy}
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; a no-op after.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("steer: lift the locked-memory limit for BPF maps: %w", err)
	}
	feats := probeKernel()
	for _, f := range Requirements {
		if err := feats.Err(f); err != nil {
			return nil, fmt.Errorf("steer: this kernel lacks %s, which the steering program needs: %w", f, err)
		}
	}
	spec, err := bpf.LoadSteer()
	if err != nil {
		return nil, fmt.Errorf("steer: read the steering programs: %w", err)
	}
	if err := sizeSPD(spec, sizes); err != nil {
		return nil, err
	}
	candidates := Carriers
	if o.Carrier != CarrierAuto {
		if !slices.Contains(Carriers, o.Carrier) {
			return nil, fmt.Errorf("steer: unknown carrier %s", o.Carrier)
		}
		candidates = []Carrier{o.Carrier}
	}
	var passed []string
	for _, c := range candidates {
		if f, what := carrierNeeds(c); f < bpf.NumFeatures {
			if err := feats.Err(f); err != nil {
				if o.Carrier != CarrierAuto {
					return nil, fmt.Errorf("steer: carrier %s: %s refused by this kernel: %w", c, what, err)
				}
				passed = append(passed, what+" refused by this kernel")
				continue
			}
		}
		p, err := load(spec, c)
		if err != nil {
			if o.Carrier != CarrierAuto || c == candidates[len(candidates)-1] {
				return nil, fmt.Errorf("steer: load XDP program %s: %w", c.programName(), err)
			}
			passed = append(passed, fmt.Sprintf("program %s refused: %v", c.programName(), err))
			continue
		}
		p.why, p.feats = strings.Join(passed, "; "), feats
		p.sizes = sizes
		p.spd.max = sizes.Policies
		return p, nil
	}
	return nil, fmt.Errorf("steer: no steering carrier loads: %s", strings.Join(passed, "; "))
}

// sizeSPD sets the SPD maps' max_entries in spec. Every map it sizes must
// be BPF_F_NO_PREALLOC, so that a million-entry size is no million
// entries' memory.
func sizeSPD(spec *ebpf.CollectionSpec, sz SPDSizes) error {
	for name, n := range map[string]int{
		bpf.SteerMapSpd4Dst: sz.Policies, bpf.SteerMapSpd6Dst: sz.Policies,
		bpf.SteerMapSpd4Src: sz.Sources, bpf.SteerMapSpd6Src: sz.Sources,
	} {
		m := spec.Maps[name]
		if m == nil {
			return fmt.Errorf("steer: the steering programs have no map %s", name)
		}
		if m.Flags&unix.BPF_F_NO_PREALLOC == 0 {
			return fmt.Errorf("steer: map %s is preallocated: sizing it for %d entries would take their memory up front", name, n)
		}
		m.MaxEntries = uint32(n)
	}
	return nil
}

// SPDSizes are the sizes of the SPD maps.
func (p *Program) SPDSizes() SPDSizes { return p.sizes }

// load creates the maps and the one program of carrier c.
func load(spec *ebpf.CollectionSpec, c Carrier) (*Program, error) {
	spec = spec.Copy()
	name := c.programName()
	for n := range spec.Programs {
		if n != name {
			delete(spec.Programs, n)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	p := &Program{
		carrier:       c,
		attached:      make(map[int]Mode),
		nativeRefused: make(map[int]error),
		slots:         make(map[int]uint32),
		xsks:          make(map[int]map[int]int),
		spd:           newSPDTable(),
		netns:         netns.None(),
	}
	if err := coll.Assign(&p.maps); err != nil {
		return nil, err
	}
	p.prog = coll.DetachProgram(name)
	info, err := p.prog.Info()
	if err != nil {
		p.closeObjects()
		return nil, fmt.Errorf("program info: %w", err)
	}
	p.id, _ = info.ID()
	return p, nil
}

func (p *Program) closeObjects() error {
	var errs []error
	if p.prog != nil {
		errs = append(errs, p.prog.Close())
	}
	errs = append(errs, p.maps.Close())
	return errors.Join(errs...)
}

// Features are the kernel's answers Load chose the carrier by.
func (p *Program) Features() bpf.Features { return p.feats }

// Carrier is the carrier of the loaded program.
func (p *Program) Carrier() Carrier { return p.carrier }

// CarrierReason says why Load passed over better carriers, in one line
// ("XDP metadata (bpf_xdp_adjust_meta) refused by this kernel"); empty when
// the carrier is the best or was asked for.
func (p *Program) CarrierReason() string { return p.why }

// Close detaches the program from every interface this Program attached it
// to and releases the maps. A crashed spud does not get here: its program
// stays attached, and the next spud's Attach replaces it.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for ifindex := range p.attached {
		if err := p.inNetns(func() error { return p.detach(ifindex) }); err != nil {
			errs = append(errs, err)
		}
	}
	p.attached = nil
	if p.netns.IsOpen() {
		p.netns.Close()
	}
	if err := p.closeObjects(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Program returns the XDP program, for BPF_PROG_TEST_RUN and inspection.
func (p *Program) Program() *ebpf.Program { return p.prog }

// ID returns the kernel's id of the program.
func (p *Program) ID() ebpf.ProgramID { return p.id }

// SetConfig sets the hash key, L and flags, with the SPU map for that L
// (written first, so that no packet sees the new L without its map). The
// config is one array value written with one syscall; a packet racing a
// change of key or L may see a mix of old and new, which only matters at
// deployment time, when both change and every tunnel moves anyway.
func (p *Program) SetConfig(c Config, m *anchor.Map) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := c.Anchor.L()
	if l < 1 || l > anchor.MaxLogicalSPUs {
		return fmt.Errorf("steer: config: %d logical SPUs out of range 1..%d", l, anchor.MaxLogicalSPUs)
	}
	if m == nil || m.Len() != l {
		return fmt.Errorf("steer: config: L=%d needs an SPU map of %d entries", l, l)
	}
	if err := p.writeSPUMap(m); err != nil {
		return err
	}
	hk := c.Anchor.HashKey()
	k0, k1 := hk.Words()
	v := bpf.SteerSpugateConfig{SiphashK0: k0, SiphashK1: k1, LogicalSpus: uint32(l)}
	if c.FailClosed {
		v.Flags |= configFailClosed
	}
	if err := p.maps.Config.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("steer: write config: %w", err)
	}
	p.l = l
	fn := c.Anchor
	p.fn.Store(&fn)
	return nil
}

// SetSPUMap writes a rebuilt logical -> physical map (anchor.Map.Rebuild)
// for the configured L, only the entries that changed. Each entry is one
// 4-byte array value, which a packet reads whole: while the map is being
// written a packet sees, for its logical SPU, either the old or the new
// physical SPU, never a torn value, but two packets of different logical
// SPUs may see one old and one new. Meta.PhysicalSPU is therefore a hint;
// the hand-off between SPUs during a migration must rely on spud's own map.
func (p *Program) SetSPUMap(m *anchor.Map) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == 0 {
		return fmt.Errorf("steer: SPU map before config: call SetConfig first")
	}
	if m.Len() != p.l {
		return fmt.Errorf("steer: SPU map of %d logical SPUs, config says %d", m.Len(), p.l)
	}
	return p.writeSPUMap(m)
}

// writeSPUMap writes the entries of m that differ from the last written.
// Called with p.mu held.
func (p *Program) writeSPUMap(m *anchor.Map) error {
	entries := m.Entries()
	for i, phys := range entries {
		if i < len(p.spuMap) && p.spuMap[i] == phys {
			continue
		}
		if err := p.maps.SpuMap.Put(uint32(i), uint32(phys)); err != nil {
			p.spuMap = nil // unknown state: rewrite all next time
			return fmt.Errorf("steer: write spu_map[%d]: %w", i, err)
		}
	}
	p.spuMap = entries
	return nil
}

func addrKey(a netip.Addr) ([16]byte, error) {
	if !a.IsValid() {
		return [16]byte{}, fmt.Errorf("steer: invalid local address")
	}
	return a.Unmap().WithZone("").As16(), nil
}

// AddLocalAddr marks a as a local tunnel endpoint: ESP and UDP-ESP to it
// are steered, ESP to other addresses is transit traffic.
func (p *Program) AddLocalAddr(a netip.Addr) error {
	k, err := addrKey(a)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.maps.LocalAddrs.Put(k, uint8(1)); err != nil {
		return fmt.Errorf("steer: add local address %v: %w", a, err)
	}
	p.setLocal(k, true)
	return nil
}

// setLocal keeps the Go copy of local_addrs that Classifiers read without a
// syscall: copied on write, as local endpoints change rarely (one per
// gateway address, not per tunnel). Called with p.mu held.
func (p *Program) setLocal(k [16]byte, on bool) {
	next := map[[16]byte]struct{}{}
	if cur := p.local.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	if on {
		next[k] = struct{}{}
	} else {
		delete(next, k)
	}
	p.local.Store(&next)
}

// DeleteLocalAddr removes a local tunnel endpoint.
func (p *Program) DeleteLocalAddr(a netip.Addr) error {
	k, err := addrKey(a)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.maps.LocalAddrs.Delete(k); err != nil {
		return fmt.Errorf("steer: delete local address %v: %w", a, err)
	}
	p.setLocal(k, false)
	return nil
}

// LocalAddrs lists the local tunnel endpoints in the map.
func (p *Program) LocalAddrs() ([]netip.Addr, error) {
	var out []netip.Addr
	var k [16]byte
	var v uint8
	it := p.maps.LocalAddrs.Iterate()
	for it.Next(&k, &v) {
		out = append(out, netip.AddrFrom16(k).Unmap())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("steer: list local addresses: %w", err)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// SetPolicy adds an SPD entry, or puts pol in the entry of its interface
// and selectors: in place of the policy of its ID, or in front of
// another policy, which stays behind it (RemovePolicy).
func (p *Program) SetPolicy(pol Policy) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// After the maps changed, even when only some of them did: a
	// Classifier that sees the new generation drops what it cached.
	defer p.spdGen.Add(1)
	return p.spd.set(mapWriter{p}, pol)
}

// RemovePolicy takes policy pol.ID off the SPD entry of pol's selectors
// (interface and prefixes): the entry goes with the last policy set on it
// and otherwise names the newest one left. A policy set on the selectors
// of another keeps the other behind it, so that removing either leaves
// the other's cleartext protected. Removing a policy that is not there is
// no error.
func (p *Program) RemovePolicy(pol Policy) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.spdGen.Add(1)
	return p.spd.remove(mapWriter{p}, pol)
}

// DeletePolicy removes the SPD entry of these selectors on ifindex, with
// every policy set on it.
func (p *Program) DeletePolicy(ifindex int, local, remote netip.Prefix) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.spdGen.Add(1)
	return p.spd.delete(mapWriter{p}, ifindex, local, remote)
}

// Policies returns the SPD entries set.
func (p *Program) Policies() []Policy {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spd.list()
}

// mapWriter puts SPD entries into the LPM maps.
type mapWriter struct{ p *Program }

func lpmKey(prefixBits int, id uint32, a netip.Addr) []byte {
	raw := a.AsSlice()
	k := make([]byte, 8, 8+len(raw))
	binary.LittleEndian.PutUint32(k[0:4], uint32(32+prefixBits))
	binary.LittleEndian.PutUint32(k[4:8], id)
	return append(k, raw...)
}

func (w mapWriter) dstMap(a netip.Addr) *ebpf.Map {
	if a.Is4() {
		return w.p.maps.Spd4Dst
	}
	return w.p.maps.Spd6Dst
}

func (w mapWriter) srcMap(a netip.Addr) *ebpf.Map {
	if a.Is4() {
		return w.p.maps.Spd4Src
	}
	return w.p.maps.Spd6Src
}

func (w mapWriter) putDst(k groupKey, group uint32) error {
	m := w.dstMap(k.dst.Addr())
	return w.full(m, k.dst.Addr(), m.Put(lpmKey(k.dst.Bits(), uint32(k.ifindex), k.dst.Addr()), group))
}

// full turns a map update's "no room" (ENOSPC from an LPM trie; E2BIG,
// which hash maps say) into a *TableFullError naming m, whose Policies
// spdTable.set fills in.
func (w mapWriter) full(m *ebpf.Map, a netip.Addr, err error) error {
	if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.E2BIG) {
		return err
	}
	name := bpf.SteerMapSpd4Src
	switch m {
	case w.p.maps.Spd4Dst:
		name = bpf.SteerMapSpd4Dst
	case w.p.maps.Spd6Dst:
		name = bpf.SteerMapSpd6Dst
	case w.p.maps.Spd6Src:
		name = bpf.SteerMapSpd6Src
	}
	return &TableFullError{Map: name, IPv6: !a.Is4(), Size: int(m.MaxEntries())}
}

func (w mapWriter) delDst(k groupKey) error {
	err := w.dstMap(k.dst.Addr()).Delete(lpmKey(k.dst.Bits(), uint32(k.ifindex), k.dst.Addr()))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

func (w mapWriter) putSrc(k srcKey, v spdValue) error {
	val := bpf.SteerSpugatePolicy{PolicyId: v.id, LogicalSpu: v.logical, Flags: v.flags}
	m := w.srcMap(k.src.Addr())
	return w.full(m, k.src.Addr(), m.Put(lpmKey(k.src.Bits(), k.group, k.src.Addr()), &val))
}

func (w mapWriter) delSrc(k srcKey) error {
	err := w.srcMap(k.src.Addr()).Delete(lpmKey(k.src.Bits(), k.group, k.src.Addr()))
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// slot returns the XSKMAP slot of ifindex, allocating one if needed.
// Called with p.mu held.
func (p *Program) slot(ifindex int) (uint32, error) {
	if s, ok := p.slots[ifindex]; ok {
		return s, nil
	}
	used := make([]bool, MaxInterfaces)
	for _, s := range p.slots {
		used[s] = true
	}
	s := slices.Index(used, false)
	if s < 0 {
		return 0, fmt.Errorf("steer: ifindex %d: all %d interface slots in use", ifindex, MaxInterfaces)
	}
	if err := p.maps.Ifslots.Put(uint32(ifindex), uint32(s)); err != nil {
		return 0, fmt.Errorf("steer: ifindex %d: write interface slot: %w", ifindex, err)
	}
	p.slots[ifindex] = uint32(s)
	return uint32(s), nil
}

// releaseSlot frees the slot of an interface that has neither sockets nor
// an attachment. Called with p.mu held.
func (p *Program) releaseSlot(ifindex int) {
	if _, on := p.attached[ifindex]; on || len(p.xsks[ifindex]) > 0 {
		return
	}
	if _, ok := p.slots[ifindex]; !ok {
		return
	}
	if err := p.maps.Ifslots.Delete(uint32(ifindex)); err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
		delete(p.slots, ifindex)
	}
}

// RegisterXSK puts the AF_XDP socket fd, bound to (ifindex, queue), in the
// XSKMAP, so that steered frames of that queue reach it. Frames of a queue
// with no socket go to the kernel, counted PassNoXSK.
func (p *Program) RegisterXSK(ifindex, queue, fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("steer: ifindex %d: queue %d out of range 0..%d", ifindex, queue, MaxQueues-1)
	}
	if err := p.bindNetns(); err != nil {
		return fmt.Errorf("steer: register AF_XDP socket for ifindex %d: %w", ifindex, err)
	}
	s, err := p.slot(ifindex)
	if err != nil {
		return err
	}
	if err := p.maps.Xsks.Put(s*MaxQueues+uint32(queue), uint32(fd)); err != nil {
		p.releaseSlot(ifindex)
		return fmt.Errorf("steer: register AF_XDP socket for ifindex %d queue %d: %w", ifindex, queue, err)
	}
	if p.xsks[ifindex] == nil {
		p.xsks[ifindex] = make(map[int]int)
	}
	p.xsks[ifindex][queue] = fd
	return nil
}

// UnregisterXSK removes the socket of (ifindex, queue) from the XSKMAP.
// Closing the socket removes it too; this is for a socket that lives on.
func (p *Program) UnregisterXSK(ifindex, queue int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.slots[ifindex]
	if !ok || queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("steer: no AF_XDP socket registered for ifindex %d queue %d", ifindex, queue)
	}
	err := p.maps.Xsks.Delete(s*MaxQueues + uint32(queue))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("steer: unregister AF_XDP socket for ifindex %d queue %d: %w", ifindex, queue, err)
	}
	delete(p.xsks[ifindex], queue)
	if len(p.xsks[ifindex]) == 0 {
		delete(p.xsks, ifindex)
	}
	p.releaseSlot(ifindex)
	return nil
}

// Counters reads the counters, summed over CPUs.
func (p *Program) Counters() (Counters, error) {
	var c Counters
	var per []uint64
	for i := range c {
		if err := p.maps.Counters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("steer: read counter %s: %w", Counter(i), err)
		}
		for _, v := range per {
			c[i] += v
		}
	}
	return c, nil
}
