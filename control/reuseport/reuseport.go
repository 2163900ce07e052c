// Package reuseport gives each IKE worker (one per SPU) its own UDP socket
// in a SO_REUSEPORT group, and steers every datagram to the worker on its
// IKE SA's logical SPU with the BPF selector of bpf/reuseport.c, which runs
// dataplane/anchor's IKELogical in the kernel: an IKE_SA_INIT request by
// the keyed hash of the endpoints and the initiator's SPI (so the IKE SAs
// of one peer address spread over every worker), every later message by
// the logical SPU in the top bits of the SPI this side chose (the
// responder SPI if the I flag is set, else the initiator SPI), and what
// carries no IKE header (too short, zero SPIs, on the NAT-T port no
// non-ESP marker) by the anchor function of its outer addresses, the
// tunnel's anchor; then through the same logical -> physical map as the
// XDP steering program.
//
// A Steerer holds the configuration shared by all groups (hash key, L,
// the SPU map, counters). Each Group is one SO_REUSEPORT group (one local
// address and port, e.g. 198.18.0.1:500 or [2001:db8::1]:4500) with its own
// program instance and REUSEPORT_SOCKARRAY indexed by physical SPU: the
// kernel only lets the selector pick a socket of the group being looked
// up, so each group needs its own array, and a program names its array.
// A group opened on the Steerer's NAT-T port (SetNATTPort, 4500 unless
// set) says so in its own rp_group map: only there does the IKE header
// follow the 4-byte non-ESP marker (RFC 3948).
//
// The selector's config and spu_map are this process's own maps, not the
// XDP program's: iked and spud are separate daemons that restart
// independently, and sharing maps would tie their lifetimes through bpffs
// pins. iked sets them from the same deployment key and the same map spud
// uses. (Sharing by map replacement would be a small change: the Steerer
// already loads every group with MapReplacements.)
//
// When the selector cannot choose (not configured, or no socket for the
// SPU) it leaves the choice to the kernel's hash, counted: IKE is never
// dropped here, at worst it lands on the wrong worker, which must then
// hand it over. The counters also say which rule anchored each datagram
// (ByResponderSPI, ByInitiatorSPI, FirstContact, ByAddresses).
//
// On a kernel that refuses the selector (probed: program type
// SK_REUSEPORT, bpf_sk_select_reuseport, bpf_skb_load_bytes_relative,
// REUSEPORT_SOCKARRAY), NewSteerer still returns a Steerer, without a
// program (Unsteered says why): the groups are plain SO_REUSEPORT groups,
// the kernel's hash picks a worker for every datagram, and the workers
// hand each on to its anchor's worker. IKE works; it costs a hand-off per
// datagram on a worker that is not the anchor's.
//
// Kernel facts this relies on, checked by the privileged test on 6.18:
// sk_reuseport_md carries no addresses, but bpf_skb_load_bytes_relative
// with BPF_HDR_START_NET reads the IP header in an SK_REUSEPORT program;
// bpf_skb_load_bytes reads from the UDP header, and md->len counts from
// there (UDP header and payload); SK_PASS without a selection falls back
// to the kernel's hash.
package reuseport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/spugate/spugate/bpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"golang.org/x/sys/unix"
)

// MaxWorkers bounds physical SPU numbers: a group's socket array has this
// many slots (SPUGATE_MAX_WORKERS).
const MaxWorkers = 1024

// Counter names one of the selector's per-CPU counters (enum
// spugate_rp_counter).
type Counter uint32

// Counters, in the order of enum spugate_rp_counter in
// bpf/include/spugate.h, whose values index the counters map
// (mirror_test.go checks the two agree).
const (
	Selected     Counter = iota // the anchor's worker socket got the datagram
	NoWorker                    // no socket for that SPU: the kernel chose
	SelectFailed                // bpf_sk_select_reuseport refused: the kernel chose
	Unconfigured                // no configuration yet: the kernel chose
	BadPacket                   // addresses unreadable: the kernel chose

	// Which rule of anchor.IKELogical found the logical SPU (the first
	// five say what became of the datagram, these how it was anchored).
	ByResponderSPI // the responder SPI, ours: from the IKE SA's initiator
	ByInitiatorSPI // the initiator SPI, ours: from the IKE SA's responder
	FirstContact   // IKE_SA_INIT request: the endpoints and the initiator's SPI
	ByAddresses    // no IKE header: the endpoints alone

	NumCounters // SPUGATE_RP_MAX: how many there are
)

var counterNames = [NumCounters]string{"selected", "no_worker", "select_failed", "unconfigured", "bad_packet",
	"by_responder_spi", "by_initiator_spi", "first_contact", "by_addresses"}

// RuleCounter returns the counter of anchor.IKELogical's rule by (one of
// anchor.ByResponderSPI ... anchor.ByAddresses), or NumCounters for
// another value.
func RuleCounter(by int) Counter {
	switch by {
	case anchor.ByResponderSPI:
		return ByResponderSPI
	case anchor.ByInitiatorSPI:
		return ByInitiatorSPI
	case anchor.ByFirstContact:
		return FirstContact
	case anchor.ByAddresses:
		return ByAddresses
	}
	return NumCounters
}

// String returns the counter's name in iked's status (the C name without
// SPUGATE_RP_, in lower case), or counter(n) outside the enum.
func (c Counter) String() string {
	if c < NumCounters {
		return counterNames[c]
	}
	return fmt.Sprintf("counter(%d)", uint32(c))
}

// Counters are the counter values summed over CPUs and groups.
type Counters [NumCounters]uint64

// Sub returns c - old.
func (c *Counters) Sub(old *Counters) Counters {
	var d Counters
	for i := range c {
		d[i] = c[i] - old[i]
	}
	return d
}

// Steerer holds the anchor configuration and counters shared by groups.
type Steerer struct {
	mu        sync.Mutex
	spec      *ebpf.CollectionSpec
	config    *ebpf.Map
	spuMap    *ebpf.Map
	counters  *ebpf.Map
	l         int
	nattPort  uint16
	closed    bool
	unsteered string // why there is no program, or ""
}

// groupNATT is SPUGATE_RP_GROUP_NATT, the flag of a group's rp_group
// entry that says it is the NAT-T port's (mirror_test.go checks it).
const groupNATT = 0x1

// DefaultNATTPort is the NAT-T port groups are opened on unless
// SetNATTPort says otherwise (RFC 3948).
const DefaultNATTPort = 4500

// Requirements are the kernel features of the selector program.
var Requirements = []bpf.Feature{bpf.FeatureSKReuseport, bpf.FeatureSelectReuseport, bpf.FeatureLoadBytesRelative, bpf.FeatureReuseportSockArray}

// NewSteerer creates the shared maps. It needs root (CAP_BPF). A kernel
// that refuses what the program needs gets a Steerer without one
// (Unsteered).
func NewSteerer() (*Steerer, error) {
	// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; a no-op after.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("reuseport: lift the locked-memory limit for BPF maps: %w", err)
	}
	feats := bpf.Probe(Requirements...)
	for _, f := range Requirements {
		if err := feats.Err(f); err != nil {
			return newUnsteered(fmt.Sprintf("%s refused by this kernel: %v", f, err)), nil
		}
	}
	spec, err := bpf.LoadReuseport()
	if err != nil {
		return nil, fmt.Errorf("reuseport: %w", err)
	}
	s := &Steerer{spec: spec, nattPort: DefaultNATTPort}
	for _, m := range []struct {
		name string
		dst  **ebpf.Map
	}{{bpf.ReuseportMapConfig, &s.config}, {bpf.ReuseportMapSpuMap, &s.spuMap}, {bpf.ReuseportMapRpCounters, &s.counters}} {
		if *m.dst, err = ebpf.NewMap(spec.Maps[m.name]); err != nil {
			s.Close()
			return nil, fmt.Errorf("reuseport: create map %s: %w", m.name, err)
		}
	}
	return s, nil
}

// newUnsteered is a Steerer whose groups have no program: the kernel's
// hash chooses the worker.
func newUnsteered(why string) *Steerer {
	return &Steerer{unsteered: why, nattPort: DefaultNATTPort}
}

// SetNATTPort sets the NAT-T port (iked's port_nat_t): a group opened on
// it afterwards looks for IKE behind the non-ESP marker, a group on any
// other port right after the UDP header. Groups already open keep what
// they were told.
func (s *Steerer) SetNATTPort(port uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nattPort = port
}

// Unsteered says why the groups have no selector program (the kernel's
// hash picks the worker), or is empty when they have one.
func (s *Steerer) Unsteered() string { return s.unsteered }

// Close releases the shared maps; groups keep their own references.
func (s *Steerer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, m := range []*ebpf.Map{s.config, s.spuMap, s.counters} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// SetConfig sets the anchor function and the SPU map for its L (the map
// first, so no datagram sees the new L without its map).
func (s *Steerer) SetConfig(f anchor.Function, m *anchor.Map) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := f.L()
	if l < 1 || l > anchor.MaxLogicalSPUs || m == nil || m.Len() != l {
		return fmt.Errorf("reuseport: config: L=%d needs an SPU map of L entries", l)
	}
	if s.unsteered != "" {
		s.l = l
		return nil
	}
	if err := s.writeMap(m); err != nil {
		return err
	}
	hk := f.HashKey()
	k0, k1 := hk.Words()
	v := bpf.ReuseportSpugateConfig{SiphashK0: k0, SiphashK1: k1, LogicalSpus: uint32(l)}
	if err := s.config.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("reuseport: write config: %w", err)
	}
	s.l = l
	return nil
}

// SetSPUMap writes a rebuilt SPU map for the configured L. Entry by entry,
// like the XDP program's: a datagram sees its logical SPU's old or new
// physical SPU.
func (s *Steerer) SetSPUMap(m *anchor.Map) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l == 0 || m.Len() != s.l {
		return fmt.Errorf("reuseport: SPU map of %d entries, config says L=%d", m.Len(), s.l)
	}
	if s.unsteered != "" {
		return nil
	}
	return s.writeMap(m)
}

func (s *Steerer) writeMap(m *anchor.Map) error {
	for i, p := range m.Entries() {
		if err := s.spuMap.Put(uint32(i), uint32(p)); err != nil {
			return fmt.Errorf("reuseport: write spu_map[%d]: %w", i, err)
		}
	}
	return nil
}

// Counters reads the counters, summed over CPUs (and groups, which share
// them).
func (s *Steerer) Counters() (Counters, error) {
	var c Counters
	if s.unsteered != "" {
		return c, nil
	}
	var per []uint64
	for i := range c {
		if err := s.counters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("reuseport: read counter %s: %w", Counter(i), err)
		}
		for _, v := range per {
			c[i] += v
		}
	}
	return c, nil
}

// Group is one SO_REUSEPORT group of worker sockets.
type Group struct {
	mu      sync.Mutex
	addr    netip.AddrPort
	network string
	natt    bool // the NAT-T port: IKE follows a non-ESP marker
	objs    bpf.ReuseportObjects
	conns   map[uint16]*net.UDPConn
}

// Listen opens one UDP socket per physical SPU in spus on addr, all in one
// SO_REUSEPORT group steered by the selector. addr must be a specific
// address (IPv6 sockets are IPv6-only) with a non-zero port.
func (s *Steerer) Listen(addr netip.AddrPort, spus []uint16) (*Group, error) {
	if !addr.IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() || addr.Addr().Zone() != "" {
		return nil, fmt.Errorf("reuseport: listen on %v: need a specific address and port", addr)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("reuseport: selector closed")
	}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		bpf.ReuseportMapConfig:     s.config,
		bpf.ReuseportMapSpuMap:     s.spuMap,
		bpf.ReuseportMapRpCounters: s.counters,
	}}
	g := &Group{addr: addr, conns: make(map[uint16]*net.UDPConn), network: "udp6", natt: addr.Port() == s.nattPort}
	var err error
	if s.unsteered == "" {
		err = s.spec.Copy().LoadAndAssign(&g.objs, opts)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("reuseport: load selector for %v: %w", addr, err)
	}
	if g.objs.RpGroup != nil && g.natt {
		// Before the first socket attaches the program, so no datagram
		// of this group is read without the marker.
		if err := g.objs.RpGroup.Put(uint32(0), uint32(groupNATT)); err != nil {
			g.objs.Close()
			return nil, fmt.Errorf("reuseport: mark %v as the NAT-T group: %w", addr, err)
		}
	}
	if addr.Addr().Unmap().Is4() {
		g.network = "udp4"
		g.addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	}
	set := slices.Clone(spus)
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) == 0 {
		g.objs.Close()
		return nil, fmt.Errorf("reuseport: listen on %v: no SPUs", addr)
	}
	for i, spu := range set {
		if _, err := g.addWorker(spu, i == 0); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// Addr returns the group's local address.
func (g *Group) Addr() netip.AddrPort { return g.addr }

// NATT reports whether the group is on the NAT-T port, where its selector
// reads IKE after the non-ESP marker (the natt of anchor.IKELogical).
func (g *Group) NATT() bool { return g.natt }

// Conn returns the socket of the worker of physical SPU spu, or nil.
func (g *Group) Conn(spu uint16) *net.UDPConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conns[spu]
}

// SPUs returns the physical SPUs with a socket, ascending.
func (g *Group) SPUs() []uint16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]uint16, 0, len(g.conns))
	for s := range g.conns {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// AddWorker opens the socket of a new SPU's worker in the group.
func (g *Group) AddWorker(spu uint16) (*net.UDPConn, error) {
	return g.addWorker(spu, false)
}

func (g *Group) addWorker(spu uint16, first bool) (*net.UDPConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if spu >= MaxWorkers {
		return nil, fmt.Errorf("reuseport: %v: SPU %d beyond the %d worker slots", g.addr, spu, MaxWorkers)
	}
	if _, ok := g.conns[spu]; ok {
		return nil, fmt.Errorf("reuseport: %v: SPU %d already has a socket", g.addr, spu)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), g.network, g.addr.String())
	if err != nil {
		return nil, fmt.Errorf("reuseport: worker socket for SPU %d on %v: %w", spu, g.addr, err)
	}
	conn := pc.(*net.UDPConn)
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reuseport: worker socket for SPU %d on %v: %w", spu, g.addr, err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if g.objs.SpugateReuseport == nil {
			return // unsteered: the kernel's hash
		}
		// The program belongs to the group: attaching it through the
		// first socket steers every socket that joins later.
		if first {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, g.objs.SpugateReuseport.FD()); serr != nil {
				serr = fmt.Errorf("attach selector: %w", serr)
				return
			}
		}
		if serr = g.objs.Workers.Put(uint32(spu), uint64(fd)); serr != nil {
			serr = fmt.Errorf("put in socket array: %w", serr)
		}
	}); err != nil {
		serr = err
	}
	if serr != nil {
		conn.Close()
		return nil, fmt.Errorf("reuseport: worker socket for SPU %d on %v: %w", spu, g.addr, serr)
	}
	g.conns[spu] = conn
	return conn, nil
}

// RemoveWorker closes the socket of an SPU's worker; its slot empties and
// datagrams anchored there fall back to the kernel's choice (NoWorker)
// until the SPU map moves them.
func (g *Group) RemoveWorker(spu uint16) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	conn, ok := g.conns[spu]
	if !ok {
		return fmt.Errorf("reuseport: %v: no socket for SPU %d", g.addr, spu)
	}
	delete(g.conns, spu)
	// Closing the socket takes it out of the array as well.
	var err error
	if g.objs.Workers != nil {
		err = g.objs.Workers.Delete(uint32(spu))
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	return errors.Join(err, conn.Close())
}

// Close closes every worker socket and the group's program.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for spu, c := range g.conns {
		errs = append(errs, c.Close())
		delete(g.conns, spu)
	}
	errs = append(errs, g.objs.Close())
	return errors.Join(errs...)
}
